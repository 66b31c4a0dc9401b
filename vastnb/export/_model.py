"""What each top-level statement of a notebook is: vastnb declarations, notebook code, or exploration."""

from __future__ import annotations

import ast
import dataclasses
import enum
from dataclasses import dataclass, field

from ..magics.grammar import python_without_comment
from ._notebook import DEFINING_MAGICS, ExportError, ParsedCell, Statement, parse_deployment_line, parse_remote_line
from ._scope import Names, analyse, expression_names, has_top_level_await, mutated_name

__all__ = ["exported_cell", "Aliases", "ContextDecl", "DeploymentDecl", "ImageStmt", "Kind", "Option", "RemoteDecl", "Unit", "classify"]

# Deployment(name, tag, version_label, backend, ttl, *, api_key, workers_per_gpu, health_check_timeout)
_DEPLOYMENT_POSITIONAL = ("name", "tag", "version_label", "backend", "ttl")
_DEPLOYMENT_KEPT = ("name", "tag", "version_label", "ttl")
CLIENT_REMOTE_OPTIONS = ("benchmark_dataset", "benchmark_generator", "benchmark_runs", "workload_calculator")
SERVE_ONLY_OPTIONS = {"allow_parallel_requests": "False", "max_queue_time": "30.0"}  # with the SDK's defaults
BENCHMARK_OPTIONS = ("benchmark_dataset", "benchmark_generator", "benchmark_runs")
OFFICIAL_IMAGE_METHODS = ("require", "pip_install", "apt_get", "env", "run_script", "run_cmd", "copy", "venv",
                          "use_system_python", "publish_port")


class Kind(enum.Enum):
    CODE = "code"
    IMPORT = "import"
    FUTURE = "future"
    VASTNB_IMPORT = "vastnb import"
    DEPLOYMENT = "deployment"
    IMAGE = "image"
    AUTOSCALING = "autoscaling"
    DROP = "drop"  # vastnb calls (ensure_ready, status, …) and IPython-only statements
    REMOTE = "remote"
    CONTEXT = "context"


@dataclass
class Option:
    key: str
    source: str
    node: ast.expr | None  # None when the source does not parse
    standalone: bool = False  # node was parsed from ``source`` (a magic's option), not from the cell

    def segment(self, node: ast.expr, stmt: Statement) -> str:
        """Source text of ``node`` (a part of this option's value)."""
        if self.standalone:
            return ast.get_source_segment(self.source, node) or ast.unparse(node)
        return stmt.segment(node)


@dataclass
class RemoteDecl:
    name: str
    node: ast.AsyncFunctionDef | ast.FunctionDef
    options: dict[str, Option]
    other_decorators: list[str]
    option_names: Names  # names the option expressions read (magic style; plain style has them in the unit)


@dataclass
class ContextDecl:
    name: str
    node: ast.ClassDef
    args: str  # what goes between the parentheses of @app.context(...)
    other_decorators: list[str]
    arg_names: Names


@dataclass
class ImageStmt:
    target: str | None  # the variable it assigns
    create: ast.Call | None  # app.image(...), when the statement makes the image
    base: str | None  # the image variable it continues, when it does not
    methods: list[tuple[str, ast.Call]]


@dataclass
class DeploymentDecl:
    var: str
    kept: dict[str, str]  # official keyword -> source
    dropped: dict[str, str]  # vastnb-only keyword -> source
    name_node: ast.expr | None


@dataclass(eq=False)
class Unit:
    order: int
    stmt: Statement
    kind: Kind
    names: Names
    mutates: str | None = None
    forced: bool = False
    top_await: bool = False
    remote: RemoteDecl | None = None
    context: ContextDecl | None = None
    deployment: DeploymentDecl | None = None
    image: ImageStmt | None = None

    @property
    def where(self) -> str:
        return f"cell {self.stmt.cell}, line {self.stmt.line}"


@dataclass
class Aliases:
    """Names the notebook binds to vastnb things and to other modules."""

    vastnb_modules: set[str] = field(default_factory=set)  # -> the vastnb package
    query_modules: set[str] = field(default_factory=set)  # -> vastnb.query
    deployment_names: set[str] = field(default_factory=set)  # -> vastnb.Deployment
    query_names: dict[str, str] = field(default_factory=dict)  # alias -> name in vastnb.query
    vastnb_names: dict[str, str] = field(default_factory=dict)  # alias -> other name imported from vastnb
    modules: dict[str, str] = field(default_factory=dict)  # alias -> dotted origin ("np" -> "numpy")

    def add(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    self.modules[alias.asname] = alias.name
                    bound, target = alias.asname, alias.name
                else:
                    bound = alias.name.split(".")[0]
                    self.modules[bound] = bound
                    target = bound
                if target == "vastnb":
                    self.vastnb_modules.add(bound)
                elif target == "vastnb.query":
                    self.query_modules.add(bound)
            return
        module = node.module or ""
        if node.level:
            return
        for alias in node.names:
            bound = alias.asname or alias.name
            if alias.name == "*":
                continue
            self.modules[bound] = f"{module}.{alias.name}"
            if module == "vastnb" and alias.name == "query":
                self.query_modules.add(bound)
            elif module == "vastnb" and alias.name == "Deployment":
                self.deployment_names.add(bound)
            elif module == "vastnb.query":
                self.query_names[bound] = alias.name
            elif module == "vastnb" or module.startswith("vastnb."):
                self.vastnb_names[bound] = f"{module}.{alias.name}"

    def origin(self, expr: ast.expr) -> str | None:
        """The dotted origin of a name or attribute chain (``np.ndarray`` -> ``numpy.ndarray``)."""
        parts: list[str] = []
        while isinstance(expr, ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
        if not isinstance(expr, ast.Name):
            return None
        root = self.modules.get(expr.id, expr.id)
        return ".".join([root, *reversed(parts)])

    def is_deployment_class(self, func: ast.expr) -> bool:
        if isinstance(func, ast.Name):
            return func.id in self.deployment_names
        return (
            isinstance(func, ast.Attribute) and func.attr == "Deployment"
            and isinstance(func.value, ast.Name) and func.value.id in self.vastnb_modules
        )

    def vastnb_bound(self) -> set[str]:
        return (
            self.vastnb_modules | self.query_modules | self.deployment_names
            | set(self.query_names) | set(self.vastnb_names)
        )


def exported_cell(pc: ParsedCell) -> bool:
    """Cells whose statements the export looks at: not tagged vast-skip, not %%vast_run or other cell magics."""
    return not pc.skipped and pc.magic in (None, *DEFINING_MAGICS)


def _is_vastnb_import(node: ast.stmt) -> bool:
    if isinstance(node, ast.Import):
        return all(a.name == "vastnb" or a.name.startswith("vastnb.") for a in node.names)
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and (node.module == "vastnb" or (node.module or "").startswith("vastnb."))
    return False


def _chain(expr: ast.expr) -> tuple[ast.expr, list[tuple[str, ast.Call]]]:
    """``a.b(1).c(2)`` -> (``a``, [("b", call), ("c", call)])."""
    calls: list[tuple[str, ast.Call]] = []
    while isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute):
        calls.append((expr.func.attr, expr))
        expr = expr.func.value
    return expr, list(reversed(calls))


def _line_magic(node: ast.stmt) -> tuple[str, str] | None:
    """``get_ipython().run_line_magic('name', 'line')`` -> (name, line)."""
    value = node.value if isinstance(node, ast.Expr) else None
    if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)):
        return None
    if value.func.attr != "run_line_magic" or len(value.args) < 2:
        return None
    call = value.func.value
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "get_ipython"):
        return None
    name, line = value.args[0], value.args[1]
    if isinstance(name, ast.Constant) and isinstance(line, ast.Constant):
        return str(name.value), str(line.value)
    return None


def _decorator_target(dec: ast.expr, app_vars: set[str], method: str) -> ast.Call | ast.expr | None:
    """The decorator when it is ``@app.<method>`` or ``@app.<method>(...)``."""
    func = dec.func if isinstance(dec, ast.Call) else dec
    if (
        isinstance(func, ast.Attribute) and func.attr == method
        and isinstance(func.value, ast.Name) and func.value.id in app_vars
    ):
        return dec
    return None


def _parse_expr(source: str) -> ast.expr | None:
    try:
        return ast.parse(source.strip(), mode="eval").body
    except SyntaxError:
        return None


def _call_args_source(stmt: Statement, call: ast.Call) -> str:
    parts = [("*" if isinstance(a, ast.Starred) else "") + stmt.segment(a.value if isinstance(a, ast.Starred) else a)
             for a in call.args]
    for kw in call.keywords:
        parts.append(f"{kw.arg}={stmt.segment(kw.value)}" if kw.arg else f"**{stmt.segment(kw.value)}")
    return ", ".join(parts)


_EMPTY = Names(frozenset(), frozenset(), frozenset())


def classify(cells: list[ParsedCell], aliases: Aliases, warnings: list[str]) -> list[Unit]:
    """Turn every statement of every cell that is not skipped into a :class:`Unit`."""
    # pass 1: imports (aliases) and deployment variables, wherever they are
    exported = [pc for pc in cells if exported_cell(pc)]
    for pc in exported:
        for st in pc.statements:
            if isinstance(st.node, (ast.Import, ast.ImportFrom)):
                aliases.add(st.node)
    app_vars: set[str] = set()
    for pc in exported:
        for st in pc.statements:
            magic = _line_magic(st.node)
            if magic and magic[0] == "vast_deployment":
                app_vars.add(parse_deployment_line(magic[1]).var)
            elif (
                isinstance(st.node, ast.Assign) and len(st.node.targets) == 1
                and isinstance(st.node.targets[0], ast.Name) and isinstance(st.node.value, ast.Call)
                and aliases.is_deployment_class(st.node.value.func)
            ):
                app_vars.add(st.node.targets[0].id)

    units: list[Unit] = []
    image_vars: set[str] = set()
    for pc in cells:
        if not exported_cell(pc):
            continue
        first_async = True
        for st in (part for whole in pc.statements for part in _split_mixed_import(whole)):
            unit = _classify(st, pc, aliases, app_vars, image_vars, warnings, first_async)
            if unit.remote is not None and pc.magic == "vast_remote":
                first_async = False
            unit.order = len(units)
            unit.forced = pc.forced
            units.append(unit)
        if pc.magic == "vast_context":
            contexts = [u for u in units if u.stmt.cell == pc.number and u.kind is Kind.CONTEXT]
            if len(contexts) > 1:
                names = ", ".join(u.context.name for u in contexts if u.context)
                warnings.append(
                    f"cell {pc.number}: a %%vast_context cell defines exactly one class, this one defines "
                    f"{len(contexts)} ({names}); the magic refuses it, so the export treats them as plain classes."
                )
                for u in contexts:
                    u.kind, u.context = Kind.CODE, None
    return units


def _split_mixed_import(st: Statement) -> list[Statement]:
    """``import os, vastnb`` as two statements: the vastnb import (left out) and the rest (kept)."""
    node = st.node
    if not isinstance(node, ast.Import) or _is_vastnb_import(node):
        return [st]
    ours = [a for a in node.names if _is_vastnb_import(ast.Import(names=[a]))]
    if not ours:
        return [st]
    others = [a for a in node.names if a not in ours]
    return [dataclasses.replace(st, node=ast.Import(names=names), text=ast.unparse(ast.Import(names=names)))
            for names in (ours, others)]


def _classify(
    st: Statement, pc: ParsedCell, aliases: Aliases, app_vars: set[str], image_vars: set[str],
    warnings: list[str], first_async: bool,
) -> Unit:
    node = st.node
    names = analyse(node)
    unit = Unit(order=0, stmt=st, kind=Kind.CODE, names=names, mutates=mutated_name(node),
                top_await=has_top_level_await(node))

    if isinstance(node, ast.ImportFrom) and node.module == "__future__":
        unit.kind = Kind.FUTURE
        return unit
    if _is_vastnb_import(node):
        unit.kind = Kind.VASTNB_IMPORT
        return unit
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        unit.kind = Kind.IMPORT
        return unit

    magic = _line_magic(node)
    if magic is not None:
        if magic[0] == "vast_deployment":
            parsed = parse_deployment_line(magic[1])
            kept = {}
            if parsed.name is not None:
                kept["name"] = _py_str(parsed.name)
            if parsed.tag is not None:
                kept["tag"] = _py_str(parsed.tag)
            dropped = {"backend": _py_str(parsed.backend)} if parsed.backend else {}
            name_node = _parse_expr(kept["name"]) if "name" in kept else None
            unit.kind = Kind.DEPLOYMENT
            unit.names = Names(frozenset({parsed.var}), frozenset(), frozenset())
            unit.deployment = DeploymentDecl(var=parsed.var, kept=kept, dropped=dropped, name_node=name_node)
        else:
            unit.kind = Kind.DROP
        return unit
    if "get_ipython" in names.eager:
        unit.kind = Kind.DROP  # a line magic or shell escape inside other code
        return unit

    # app = vastnb.Deployment(...)
    if (
        isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Call) and aliases.is_deployment_class(node.value.func)
    ):
        unit.kind = Kind.DEPLOYMENT
        unit.deployment = _deployment_from_call(st, node.targets[0].id, node.value, warnings)
        return unit

    image = _image_statement(node, app_vars, image_vars)
    if image is not None:
        unit.kind = Kind.IMAGE
        unit.image = image
        if image.target:
            image_vars.add(image.target)
        return unit

    value = node.value if isinstance(node, ast.Expr) else None
    if isinstance(value, ast.Await):
        value = value.value
    if value is not None:
        base, calls = _chain(value)
        if isinstance(base, ast.Name) and base.id in app_vars and calls:
            unit.kind = Kind.AUTOSCALING if calls[0][0] == "configure_autoscaling" and len(calls) == 1 else Kind.DROP
            return unit

    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        remote = _remote_decl(st, node, pc, app_vars, first_async, warnings)
        if remote is not None:
            unit.kind = Kind.REMOTE
            unit.remote = remote
            unit.names = Names(names.defs, names.eager | remote.option_names.eager | remote.option_names.lazy,
                               names.lazy)
        return unit
    if isinstance(node, ast.ClassDef):
        context = _context_decl(st, node, pc, app_vars)
        if context is not None:
            unit.kind = Kind.CONTEXT
            unit.context = context
            unit.names = Names(names.defs, names.eager | context.arg_names.eager | context.arg_names.lazy,
                               names.lazy)
    return unit


def _py_str(value: str) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def _deployment_from_call(st: Statement, var: str, call: ast.Call, warnings: list[str]) -> DeploymentDecl:
    given: dict[str, ast.expr] = {}
    for i, arg in enumerate(call.args):
        if isinstance(arg, ast.Starred) or i >= len(_DEPLOYMENT_POSITIONAL):
            warnings.append(f"cell {st.cell}: Deployment(...) argument {st.segment(arg)} is not exported.")
            continue
        given[_DEPLOYMENT_POSITIONAL[i]] = arg
    for kw in call.keywords:
        if kw.arg is None:
            warnings.append(f"cell {st.cell}: Deployment(**{st.segment(kw.value)}) is not exported; "
                            "pass name=, tag=, ttl= explicitly.")
            continue
        given[kw.arg] = kw.value
    kept = {k: st.segment(v) for k, v in given.items() if k in _DEPLOYMENT_KEPT}
    dropped = {k: st.segment(v) for k, v in given.items() if k not in _DEPLOYMENT_KEPT}
    return DeploymentDecl(var=var, kept=kept, dropped=dropped, name_node=given.get("name"))


def _image_statement(node: ast.stmt, app_vars: set[str], image_vars: set[str]) -> ImageStmt | None:
    target = None
    value: ast.expr | None = None
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        target, value = node.targets[0].id, node.value
    elif isinstance(node, ast.Expr):
        value = node.value
    if value is None:
        return None
    base, calls = _chain(value)
    if not isinstance(base, ast.Name) or not calls:
        return None
    if base.id in app_vars and calls[0][0] == "image":
        return ImageStmt(target=target, create=calls[0][1], base=None, methods=calls[1:])
    if base.id in image_vars and any(method in OFFICIAL_IMAGE_METHODS for method, _ in calls):
        return ImageStmt(target=target, create=None, base=base.id, methods=calls)
    return None  # e.g. image.describe(): exploration


def _remote_decl(
    st: Statement, node: ast.FunctionDef | ast.AsyncFunctionDef, pc: ParsedCell, app_vars: set[str],
    first_async: bool, warnings: list[str],
) -> RemoteDecl | None:
    decorators = list(node.decorator_list)
    found = next((d for d in decorators if _decorator_target(d, app_vars, "remote") is not None), None)
    others = [f"@{st.segment(d)}" for d in decorators if d is not found]
    if found is not None:
        options: dict[str, Option] = {}
        if isinstance(found, ast.Call):
            for kw in found.keywords:
                if kw.arg is None:
                    warnings.append(f"cell {st.cell}: {node.name}: @remote(**{st.segment(kw.value)}) is not "
                                    "exported; pass the options by name.")
                    continue
                options[kw.arg] = Option(kw.arg, st.segment(kw.value), kw.value)
        return RemoteDecl(node.name, node, options, others, option_names=_EMPTY)
    if pc.magic != "vast_remote" or not isinstance(node, ast.AsyncFunctionDef):
        return None
    line = parse_remote_line(pc.magic_line)
    if line.unknown:
        warnings.append(f"cell {pc.number}: %%vast_remote options {' '.join(line.unknown)} are not known; "
                        "the export ignores them.")
    options = {}
    values: dict[str, str | None] = {
        "allow_parallel_requests": "True" if line.allow_parallel_requests else None,
        "max_queue_time": line.max_queue_time,
        "retries": line.retries,
        "timeout": line.timeout,
    }
    if first_async:  # the magic gives the benchmark options to the cell's first async def only
        values.update(benchmark_dataset=line.benchmark_dataset, benchmark_generator=line.benchmark_generator,
                      benchmark_runs=line.benchmark_runs, workload_calculator=line.workload_calculator)
    read: set[str] = set()
    for key, source in values.items():
        if source is None:
            continue
        expr = _parse_expr(source)
        if expr is None:
            warnings.append(f"cell {pc.number}: %%vast_remote {key.replace('_', '-')} {source!r} is not a Python "
                            "expression; the export leaves it out.")
            continue
        names = expression_names(expr)
        read |= names.eager | names.lazy
        text = source.strip()
        options[key] = Option(key, text, expr, standalone=True)
    return RemoteDecl(node.name, node, options, others,
                      option_names=Names(frozenset(), frozenset(read), frozenset()))


def _context_decl(st: Statement, node: ast.ClassDef, pc: ParsedCell, app_vars: set[str]) -> ContextDecl | None:
    found = next((d for d in node.decorator_list if _decorator_target(d, app_vars, "context") is not None), None)
    others = [f"@{st.segment(d)}" for d in node.decorator_list if d is not found]
    if found is not None:
        args = _call_args_source(st, found) if isinstance(found, ast.Call) else ""
        return ContextDecl(node.name, node, args, others, _EMPTY)
    if pc.magic != "vast_context":
        return None
    args = python_without_comment(pc.magic_line).strip()
    read: set[str] = set()
    if args:
        try:
            call = ast.parse(f"f({args})", mode="eval").body
        except SyntaxError:
            raise ExportError(
                f"cell {pc.number}: %%vast_context {args}: the arguments are not Python; write them as "
                '@app.context(...) takes them, e.g. %%vast_context "weights.pt", dtype="bf16".'
            ) from None
        names = expression_names(call)
        read = set(names.eager | names.lazy) - {"f"}
    return ContextDecl(node.name, node, args, others, Names(frozenset(), frozenset(read), frozenset()))
