"""Which global names a top-level statement binds and reads, found with ``ast``.

A statement reads a name *eagerly* when it is looked up while the statement runs
(module-level expressions, decorators, default values, annotations, base classes,
class bodies, comprehensions) and *lazily* when the lookup sits in a function body
that runs later (functions, methods, lambdas). The difference picks which
definition a name resolves to when a notebook defines it more than once: an eager
read sees the latest definition above it, a lazy read the last one in the notebook.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

__all__ = ["Names", "analyse", "has_top_level_await", "mutated_name"]

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
MUTATING_METHODS = frozenset(
    {"append", "extend", "insert", "update", "add", "setdefault", "discard", "remove", "clear", "sort", "reverse",
     "pop", "popitem"}
)


@dataclass(frozen=True)
class Names:
    defs: frozenset[str]
    eager: frozenset[str]
    lazy: frozenset[str]


class _Scan(ast.NodeVisitor):
    """One scope: names it binds and loads itself, plus what nested scopes read from outside."""

    def __init__(self) -> None:
        self.binds: set[str] = set()
        self.loads: set[str] = set()
        self.declared_global: set[str] = set()
        self.nested_eager: set[str] = set()
        self.nested_lazy: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.loads.add(node.id)
        elif isinstance(node.ctx, ast.Store):
            self.binds.add(node.id)

    def _signature(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        args = node.args
        for default in [*args.defaults, *[d for d in args.kw_defaults if d is not None]]:
            self.visit(default)
        if not isinstance(node, ast.Lambda):
            for dec in node.decorator_list:
                self.visit(dec)
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if arg is not None and arg.annotation is not None:
                    self.visit(arg.annotation)
            if node.returns is not None:
                self.visit(node.returns)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            self.loads.add(node.target.id)  # `x += 1` reads x before binding it
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.binds.add(node.name)
        self._signature(node)
        self.nested_lazy |= function_free(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.binds.add(node.name)
        self._signature(node)
        self.nested_lazy |= function_free(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._signature(node)
        self.nested_lazy |= function_free(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.binds.add(node.name)
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        body = _Scan()
        for stmt in node.body:
            body.visit(stmt)
        # the class body runs now; names it binds are not visible to its methods
        self.nested_eager |= (body.loads - body.binds) | body.nested_eager
        self.nested_lazy |= body.nested_lazy

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp) -> None:
        first, *rest = node.generators
        self.visit(first.iter)  # evaluated in the enclosing scope
        inner = _Scan()
        inner.visit(first.target)
        for cond in first.ifs:
            inner.visit(cond)
        for gen in rest:
            inner.visit(gen.target)
            inner.visit(gen.iter)
            for cond in gen.ifs:
                inner.visit(cond)
        if isinstance(node, ast.DictComp):
            inner.visit(node.key)
            inner.visit(node.value)
        else:
            inner.visit(node.elt)
        self.nested_eager |= (inner.loads - inner.binds) | inner.nested_eager
        self.nested_lazy |= inner.nested_lazy

    visit_ListComp = _comprehension
    visit_SetComp = _comprehension
    visit_DictComp = _comprehension
    visit_GeneratorExp = _comprehension

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.binds.add(alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self.binds.add(alias.asname or alias.name)

    def visit_Global(self, node: ast.Global) -> None:
        self.declared_global.update(node.names)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.declared_global.update(node.names)  # not local here; resolved further out

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.binds.add(node.name)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            self.binds.add(node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.binds.add(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self.binds.add(node.rest)
        self.generic_visit(node)


def function_free(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
    """Names a function body reads from outside itself (globals or enclosing functions' locals)."""
    scan = _Scan()
    args = node.args
    params = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg] if a}
    body = [node.body] if isinstance(node, ast.Lambda) else node.body
    for stmt in body:
        scan.visit(stmt)
    local = (params | scan.binds) - scan.declared_global
    return (scan.loads | scan.nested_eager | scan.nested_lazy | scan.declared_global) - local


def analyse(stmt: ast.stmt) -> Names:
    """The names ``stmt`` binds at module level and the global names it reads (eagerly, lazily)."""
    scan = _Scan()
    scan.visit(stmt)
    return Names(
        defs=frozenset(scan.binds),
        eager=frozenset(scan.loads | scan.nested_eager),
        lazy=frozenset(scan.nested_lazy),
    )


def expression_names(expr: ast.expr) -> Names:
    """Like :func:`analyse` for a lone expression (a magic's option value)."""
    return analyse(ast.Expr(value=expr))


def has_top_level_await(stmt: ast.stmt) -> bool:
    """True if ``stmt`` awaits outside any function (fine in a notebook, a SyntaxError in a module)."""
    todo: list[ast.AST] = [stmt]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Await, ast.AsyncFor, ast.AsyncWith)):
            return True
        if isinstance(node, _FUNCTIONS):
            continue
        if isinstance(node, _COMPREHENSIONS) and any(g.is_async for g in node.generators):
            return True
        todo.extend(ast.iter_child_nodes(node))
    return False


def mutated_name(stmt: ast.stmt) -> str | None:
    """The global a statement changes in place without rebinding it (``X[k] = v``, ``X.a = v``,
    ``X += …`` on a container, ``X.append(…)``), so a needed ``X`` takes the statement along."""
    targets: list[ast.expr] = []
    if isinstance(stmt, ast.Assign):
        targets = list(stmt.targets)
    elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
        targets = [stmt.target]
    elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        func = stmt.value.func
        if isinstance(func, ast.Attribute) and func.attr in MUTATING_METHODS:
            base = _base_name(func.value)
            return base
        return None
    for target in targets:
        if isinstance(target, (ast.Subscript, ast.Attribute)):
            base = _base_name(target)
            if base is not None:
                return base
        if isinstance(stmt, ast.AugAssign) and isinstance(target, ast.Name):
            return None  # a rebinding, already a definition
    return None


def _base_name(expr: ast.expr) -> str | None:
    while isinstance(expr, (ast.Attribute, ast.Subscript)):
        expr = expr.value
    return expr.id if isinstance(expr, ast.Name) else None
