"""What the official JSON wire (``vastai/serverless/remote/serialization.py``) cannot carry.

The official format passes int/str/float/None through, encodes bytes, lists, tuples
and dicts, and sends any other object as its class plus ``__dict__``. So:

* ``bool``, ``set``/``frozenset`` and NumPy arrays or scalars raise ``TypeError`` when
  they are serialized (on the worker that is a 500, which the client retries forever);
* a torch tensor has an empty ``__dict__`` and arrives as an empty tensor, silently;
* an exception keeps only its ``__dict__``, so ``ValueError("x")`` arrives as ``ValueError()``.

These checks read the notebook's code statically: signatures (annotations and
defaults), benchmark datasets and generators, ``return`` expressions, and ``raise``
statements in the code a remote function reaches.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from ._model import Aliases, Kind, Unit
from ._plan import Plan

__all__ = ["WireWarning", "wire_warnings"]

_WHAT = {
    "bool": "a bool",
    "set": "a set",
    "numpy": "a NumPy array",
    "torch": "a torch tensor",
}
_ADVICE = {
    "bool": "the official JSON wire cannot carry bools (TypeError on Vast). Pass an int instead.",
    "set": "the official JSON wire cannot carry sets (TypeError on Vast). Pass a list instead.",
    "numpy": "the official JSON wire cannot carry NumPy arrays or scalars (TypeError on Vast). "
             "Pass a list (.tolist()) or bytes (.tobytes()) instead.",
    "torch": "the official JSON wire sends an object's __dict__ only, so a tensor arrives empty, without its "
             "data. Pass a list (.tolist()) or bytes instead.",
}
_SET_TYPES = {"set", "frozenset", "typing.Set", "typing.FrozenSet", "typing.AbstractSet", "typing.MutableSet",
              "collections.abc.Set", "collections.abc.MutableSet"}
_BOOL_CALLS = {"bool", "isinstance", "issubclass", "callable", "hasattr", "any", "all"}


@dataclass(frozen=True)
class WireWarning:
    """Something a remote function sends or receives that the official JSON wire cannot carry."""

    function: str
    parameter: str | None  # a parameter name, "return", or None (exceptions)
    kind: str  # "bool", "set", "numpy", "torch" or "exception"
    where: str  # "default", "annotation", "benchmark_dataset", "benchmark_generator", "return" or "raise"
    message: str

    def __str__(self) -> str:
        return self.message


class _Checker:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.aliases: Aliases = plan.aliases
        self.out: list[WireWarning] = []

    # ------------------------------------------------------------------ classification
    def value_kind(self, expr: ast.expr, *, returned: bool = False, depth: int = 0) -> tuple[str, ast.expr] | None:
        """(kind, offending node) when the value ``expr`` builds cannot travel."""
        if isinstance(expr, ast.Constant) and isinstance(expr.value, bool):
            return "bool", expr
        if isinstance(expr, (ast.Set, ast.SetComp)):
            return "set", expr
        if returned and (isinstance(expr, ast.Compare) or (isinstance(expr, ast.UnaryOp)
                                                           and isinstance(expr.op, ast.Not))):
            return "bool", expr
        if isinstance(expr, ast.Call):
            origin = self.aliases.origin(expr.func)
            if origin in ("set", "frozenset"):
                return "set", expr
            if returned and origin in _BOOL_CALLS:
                return "bool", expr
            if origin and (origin == "numpy" or origin.startswith("numpy.")):
                return "numpy", expr
            if origin and origin.startswith("torch.") and origin.split(".")[1] not in ("nn", "cuda", "device"):
                return "torch", expr
            return None
        children: list[ast.expr] = []
        if isinstance(expr, (ast.List, ast.Tuple)):
            children = list(expr.elts)
        elif isinstance(expr, ast.Dict):
            children = [*(k for k in expr.keys if k is not None), *expr.values]
        elif isinstance(expr, ast.Name) and depth == 0:
            value = self.constant(expr.id)
            if value is not None:
                found = self.value_kind(value, depth=1)
                return (found[0], expr) if found else None
        for child in children:
            found = self.value_kind(child, returned=returned, depth=depth)
            if found:
                return found
        return None

    def annotation_kind(self, expr: ast.expr) -> tuple[str, ast.expr] | None:
        """(kind, node) for an annotation naming a type the wire cannot carry; node is ``expr`` itself when
        the annotation *is* that type (``bool``, ``Set[str]``, ``"torch.Tensor"``) rather than holding it."""
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            try:
                inner = ast.parse(expr.value, mode="eval").body
            except SyntaxError:
                return None
            found = self.annotation_kind(inner)
            return (found[0], expr if found[1] is inner else found[1]) if found else None
        if isinstance(expr, ast.Subscript):
            found = self.annotation_kind(expr.value)
            if found:
                return found[0], expr
            return self.annotation_kind(expr.slice)
        if isinstance(expr, (ast.Name, ast.Attribute)):
            origin = self.aliases.origin(expr) or ""
            if origin == "bool":
                return "bool", expr
            if origin in _SET_TYPES:
                return "set", expr
            if origin.startswith("numpy."):
                return "numpy", expr
            if origin.startswith("torch.") and (origin.endswith("Tensor") or origin.endswith("Parameter")):
                return "torch", expr
            return None
        for child in ast.iter_child_nodes(expr):
            if isinstance(child, ast.expr):
                found = self.annotation_kind(child)
                if found:
                    return found
        return None

    def constant(self, name: str) -> ast.expr | None:
        """The value of the last exported ``name = <expr>`` (one level, for names used as data)."""
        for unit in reversed(self.plan.units):
            node = unit.stmt.node
            if (
                unit.kind is Kind.CODE and isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == name
            ):
                return node.value
        return None

    def function_def(self, name: str) -> Unit | None:
        for unit in reversed(self.plan.units):
            if isinstance(unit.stmt.node, (ast.FunctionDef, ast.AsyncFunctionDef)) and unit.stmt.node.name == name:
                return unit
        return None

    # ------------------------------------------------------------------ reporting
    def report(self, fn: str, parameter: str | None, kind: str, where: str, subject: str) -> None:
        self.out.append(WireWarning(fn, parameter, kind, where, f"{subject}; {_ADVICE[kind]}"))

    @staticmethod
    def verb(found: tuple[str, ast.expr], whole: ast.expr) -> str:
        return "is" if found[1] is whole else "holds"

    def check_function(self, unit: Unit) -> None:
        assert unit.remote is not None
        node = unit.remote.node
        fn = node.name
        st = unit.stmt
        args = node.args
        positional = [*args.posonlyargs, *args.args]
        defaults: dict[str, ast.expr] = dict(zip([a.arg for a in positional[len(positional) - len(args.defaults):]],
                                                 args.defaults))
        defaults.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None})
        every = [*positional, *([args.vararg] if args.vararg else []), *args.kwonlyargs,
                 *([args.kwarg] if args.kwarg else [])]
        for arg in every:
            if arg.annotation is not None:
                found = self.annotation_kind(arg.annotation)
                if found:
                    text = st.segment(arg.annotation)
                    self.report(fn, arg.arg, found[0], "annotation",
                                f"{fn}({arg.arg}): annotation {text} {self.verb(found, arg.annotation)} "
                                f"{_WHAT[found[0]]}")
            default = defaults.get(arg.arg)
            if default is not None:
                found = self.value_kind(default)
                if found:
                    self.report(fn, arg.arg, found[0], "default",
                                f"{fn}({arg.arg}): default {st.segment(default)} {self.verb(found, default)} "
                                f"{_WHAT[found[0]]}")
        if node.returns is not None:
            found = self.annotation_kind(node.returns)
            if found:
                self.report(fn, "return", found[0], "annotation",
                            f"{fn}(return): annotation {st.segment(node.returns)} {self.verb(found, node.returns)} "
                            f"{_WHAT[found[0]]}")
        self.check_benchmark(unit)
        for ret in _own(node, ast.Return):
            if ret.value is not None:
                found = self.value_kind(ret.value, returned=True)
                if found:
                    self.report(fn, "return", found[0], "return",
                                f"{fn}(return): `return {st.segment(ret.value)}` (cell {st.cell}, line "
                                f"{st.cell_line(ret)}) {'gives' if found[1] is ret.value else 'holds'} "
                                f"{_WHAT[found[0]]}")
        self.check_raises(unit)

    def check_benchmark(self, unit: Unit) -> None:
        assert unit.remote is not None
        fn = unit.remote.name
        dataset = unit.remote.options.get("benchmark_dataset")
        if dataset is not None and dataset.node is not None:
            node = dataset.node
            resolved = False
            if isinstance(node, ast.Name):
                node = self.constant(node.id) or node
                resolved = True
            if isinstance(node, (ast.List, ast.Tuple)):
                for i, item in enumerate(node.elts):
                    if not isinstance(item, ast.Dict):
                        continue
                    for key, value in zip(item.keys, item.values):
                        param = str(key.value) if isinstance(key, ast.Constant) else "?"
                        found = self.value_kind(value)
                        if found:
                            text = ast.unparse(value) if resolved else dataset.segment(value, unit.stmt)
                            self.report(fn, param, found[0], "benchmark_dataset",
                                        f"{fn}({param}): benchmark_dataset[{i}] value {text} "
                                        f"{self.verb(found, value)} {_WHAT[found[0]]}")
        generator = unit.remote.options.get("benchmark_generator")
        if generator is not None and isinstance(generator.node, ast.Name):
            gen = self.function_def(generator.node.id)
            if gen is not None:
                assert isinstance(gen.stmt.node, (ast.FunctionDef, ast.AsyncFunctionDef))
                for ret in _own(gen.stmt.node, ast.Return):
                    if not isinstance(ret.value, ast.Dict):
                        continue
                    for key, value in zip(ret.value.keys, ret.value.values):
                        param = str(key.value) if isinstance(key, ast.Constant) else "?"
                        found = self.value_kind(value)
                        if found:
                            self.report(fn, param, found[0], "benchmark_generator",
                                        f"{fn}({param}): benchmark_generator {generator.node.id}() gives "
                                        f"{gen.stmt.segment(value)}, which {self.verb(found, value)} "
                                        f"{_WHAT[found[0]]}")

    def check_raises(self, unit: Unit) -> None:
        assert unit.remote is not None
        fn = unit.remote.name
        seen: set[tuple[int, int]] = set()
        for dep in self.plan.closures.get(fn, [unit]):
            node = dep.stmt.node
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            for raise_ in _raises(node):
                exc = raise_.exc
                if not isinstance(exc, ast.Call) or not (exc.args or exc.keywords):
                    continue
                key = (dep.order, raise_.lineno)
                if key in seen:
                    continue
                seen.add(key)
                cls = ast.unparse(exc.func)
                if self.explains_itself(cls):
                    continue
                via = "" if dep is unit else f" (via {node.name})"
                where = f"cell {dep.stmt.cell}, line {dep.stmt.cell_line(raise_)}"
                self.out.append(WireWarning(
                    fn, None, "exception", "raise",
                    f"{fn}{via}: raise {dep.stmt.segment(exc)} ({where}): the official JSON wire keeps only an "
                    f"exception's __dict__, so it arrives as {cls}() without its message. Keep the message in an "
                    "attribute (self.detail = ...) or return it as a value.",
                ))

    def explains_itself(self, cls: str) -> bool:
        """A notebook exception class with its own ``__str__`` rebuilds its message from attributes."""
        for unit in self.plan.units:
            node = unit.stmt.node
            if isinstance(node, ast.ClassDef) and node.name == cls:
                return any(isinstance(b, ast.FunctionDef) and b.name == "__str__" for b in node.body)
        return False


def _own(node: ast.FunctionDef | ast.AsyncFunctionDef, kind: type) -> list:
    """Nodes of ``kind`` in a function's own body (not in nested functions or classes)."""
    out = []
    todo: list[ast.AST] = list(node.body)
    while todo:
        n = todo.pop(0)
        if isinstance(n, kind):
            out.append(n)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        todo.extend(ast.iter_child_nodes(n))
    return out


def _raises(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> list[ast.Raise]:
    out: list[ast.Raise] = []
    for n in ast.walk(node):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name in ("__aenter__", "__aexit__"):
            continue
        if isinstance(n, ast.Raise):
            out.append(n)
    # drop raises inside __aenter__/__aexit__ (they stop the worker, they do not travel)
    skip = {id(r) for n in ast.walk(node) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.name in ("__aenter__", "__aexit__") for r in ast.walk(n) if isinstance(r, ast.Raise)}
    return sorted((r for r in out if id(r) not in skip), key=lambda r: r.lineno)


def wire_warnings(plan: Plan) -> list[WireWarning]:
    checker = _Checker(plan)
    for unit in plan.remotes:
        checker.check_function(unit)
    return checker.out
