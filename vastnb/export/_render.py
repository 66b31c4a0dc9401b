"""The exported module and its client, as text."""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass

from ..query import RAW_UNIT_FACTORS
from ._queries import QueryRewriter, unit_note
from ._notebook import Statement
from ._model import BENCHMARK_OPTIONS, CLIENT_REMOTE_OPTIONS, OFFICIAL_IMAGE_METHODS, SERVE_ONLY_OPTIONS, Kind, Option, Unit
from ._plan import Plan, _required_parameters
from ._wire_checks import WireWarning

__all__ = ["render_client", "render_module"]

_OPTION_ORDER = ("benchmark_dataset", "benchmark_generator", "benchmark_runs", "workload_calculator",
                 "allow_parallel_requests", "max_queue_time", "retries", "timeout")
_VASTNB_ONLY = {
    "retries": "vastnb re-runs a call after its worker dies; the official remote() has no retries",
    "timeout": "vastnb's per-call deadline; the official remote() has no timeout",
}
_IN_ORDER = "_in_order"
#: A benchmark_dataset of several items, exported: the official worker (1.9.1) keeps only the last item of a
#: dataset, so the export hands it a generator that sends the items in vastnb's order (worker.core.BenchmarkInputs).
IN_ORDER_HELPER = f'''def {_IN_ORDER}(dataset):
    """benchmark_dataset in vastnb's order: one item per call, the first to the warm-up call, then the next ones,
    starting over after the last (the official worker would send only the dataset's last item)."""
    items = list(dataset)
    position = 0

    def next_input():
        nonlocal position
        item = items[position % len(items)]
        position += 1
        return dict(item)

    return next_input'''
_DEFAULT_STORAGE = "50"  # vastnb's Deployment.image() default; the official image() has none
_WIDTH = 100


@dataclass
class _Block:
    text: str
    cell: int
    is_def: bool


class _Renderer:
    def __init__(self, plan: Plan, wire: list[WireWarning]) -> None:
        self.plan = plan
        self.wire = wire
        self.app = plan.deployment.deployment.var if plan.deployment.deployment else "app"
        self.query_imports: dict[str, str] = {}  # alias -> vastai.data.query name
        self.needs_serve_only = False
        self.needs_in_order = False
        self.factors = dict(RAW_UNIT_FACTORS)
        self.warnings: list[str] = []

    # ------------------------------------------------------------------ header
    def deployment_line(self) -> str:
        decl = self.plan.deployment.deployment
        assert decl is not None
        args = ", ".join(f"{k}={v}" for k, v in decl.kept.items())
        line = f"{decl.var} = Deployment({args})"
        dropped = {k: v for k, v in decl.dropped.items() if k != "backend"}
        if dropped:
            shown = ", ".join(f"{k}={v}" for k, v in dropped.items())
            line += f"  # not exported (vastnb-only or secret): {shown}"
            self.warnings.append(
                f"Deployment(...) arguments {shown} are not exported (vastnb-only; the official SDK reads the "
                "API key from VAST_API_KEY)."
            )
        return line

    def image_lines(self, unit: Unit) -> list[str]:
        img = unit.image
        assert img is not None
        st = unit.stmt
        lines: list[str] = []
        calls: list[str] = []
        if img.create is not None:
            create = self.image_create(unit, img.create)
            if img.target:
                lines.append(f"{img.target} = {create}")
                var = img.target
            else:
                calls.append(create)
                var = None
        else:
            var = img.base
            if img.target and img.target != img.base:
                lines.append(f"{img.target} = {img.base}")
        pending = ""  # the note of an unnamed chain goes at the end of its line
        for method, call in img.methods:
            if method not in OFFICIAL_IMAGE_METHODS:
                lines.append(f"# image.{method}({self.args(st, call)[0]}) left out: vastnb-only, the official Image "
                             f"has no {method}()")
                self.warnings.append(f"image.{method}(...) ({unit.where}) is vastnb-only; the export leaves it out.")
                continue
            args, note = self.args(st, call, rewrite=method == "require")
            if var is not None:
                lines.append(f"{var}.{method}({args})" + (f"  # {note}" if note else ""))
            else:
                calls.append(f"{method}({args})")
                pending = "; ".join(n for n in (pending, note) if n)
        if calls:
            lines.append(".".join(calls) + (f"  # {pending}" if pending else ""))
        return lines

    def image_create(self, unit: Unit, call: ast.Call) -> str:
        st = unit.stmt
        given: dict[str, str] = {}
        names = ("from_image", "storage")
        for i, arg in enumerate(call.args):
            if i < len(names) and not isinstance(arg, ast.Starred):
                given[names[i]] = st.segment(arg)
        for kw in call.keywords:
            if kw.arg:
                given[kw.arg] = st.segment(kw.value)
        source = given.get("from_image", '""')
        storage = given.get("storage", _DEFAULT_STORAGE)
        extra = {k: v for k, v in given.items() if k not in names}
        login = [k for k in extra if k.startswith("docker_login_")]
        if login:
            self.warnings.append(
                f"app.image(...) arguments {', '.join(login)} ({unit.where}) are not exported: the official SDK's "
                "worker-side image() has no docker_login_* parameters, so the exported file would fail on the "
                "worker. Give the registry login to the endpoint on Vast, or deploy from the notebook with "
                "backend=\"vast\" (vastnb sends it with the deployment)."
            )
        other = [k for k in extra if k not in login]
        if other:
            self.warnings.append(
                f"app.image(...) arguments {', '.join(other)} ({unit.where}) are not exported: the worker-side "
                "image() takes only the image and its storage."
            )
        return f"{self.app}.image({source}, storage={storage})"

    def args(self, st: Statement, call: ast.Call, *, rewrite: bool = False) -> tuple[str, str]:
        """A call's arguments as source, and (for requirements) the note on rewritten units."""
        parts: list[str] = []
        columns: list[str] = []
        for arg in call.args:
            inner = arg.value if isinstance(arg, ast.Starred) else arg
            text = self.rewrite(st, inner, columns) if rewrite else st.segment(inner)
            parts.append(("*" if isinstance(arg, ast.Starred) else "") + text)
        for kw in call.keywords:
            text = self.rewrite(st, kw.value, columns) if rewrite else st.segment(kw.value)
            parts.append(f"{kw.arg}={text}" if kw.arg else f"**{text}")
        return ", ".join(parts), unit_note(columns)

    def rewrite(self, st: Statement, expr: ast.expr, columns: list[str]) -> str:
        """A requirement in the official Column's raw units, with ``vastnb.query.X`` imported as ``X``."""
        rewriter = QueryRewriter(self.plan.aliases, self.factors)
        new = rewriter.visit(ast.parse(ast.unparse(expr), mode="eval").body)
        for alias, name in rewriter.imported.items():
            self.query_imports.setdefault(alias, name)
        if not rewriter.changed:
            return st.segment(expr)
        columns.extend(rewriter.columns)
        return ast.unparse(new)

    def autoscaling_line(self, unit: Unit) -> str:
        node = unit.stmt.node
        assert isinstance(node, ast.Expr)
        value = node.value.value if isinstance(node.value, ast.Await) else node.value
        assert isinstance(value, ast.Call)
        args, _ = self.args(unit.stmt, value)
        if "\n" in args:  # one line, so the #!VAST_IGNORE_CHANGES marker covers the whole call
            call = ast.Call(func=ast.Name(id="f", ctx=ast.Load()), args=value.args, keywords=value.keywords)
            args = ast.unparse(call)[2:-1]
        return f"{self.app}.configure_autoscaling({args})  #!VAST_IGNORE_CHANGES"

    def header(self) -> list[str]:
        lines = [self.deployment_line()]
        autoscaling = []
        for unit in self.plan.header:
            if unit.kind is Kind.IMAGE:
                lines += self.image_lines(unit)
            elif unit.kind is Kind.AUTOSCALING:
                autoscaling.append(self.autoscaling_line(unit))
        if not any(u.kind is Kind.IMAGE for u in self.plan.header):
            lines.append(f'{self.app}.image("vastai/base-image:@vastai-automatic-tag", storage={_DEFAULT_STORAGE})'
                         "  # the notebook sets no image; the official SDK needs one")
            self.warnings.append('the notebook sets no image (app.image(...)); the export uses '
                                 '"vastai/base-image:@vastai-automatic-tag" with 50 GB, since the official SDK '
                                 "needs one.")
        lines.append("# Lines marked #!VAST_IGNORE_CHANGES stay out of the code hash: changing autoscaling does "
                     "not re-upload the code.")
        if not autoscaling:
            autoscaling.append(f"{self.app}.configure_autoscaling()  #!VAST_IGNORE_CHANGES")
        return lines + autoscaling

    # ------------------------------------------------------------------ functions and contexts
    def decorator(self, unit: Unit) -> str:
        remote = unit.remote
        assert remote is not None
        options = sorted(remote.options.values(), key=lambda o: _OPTION_ORDER.index(o.key)
                         if o.key in _OPTION_ORDER else len(_OPTION_ORDER))
        parts: list[tuple[str, str]] = []  # (code or "", comment or "")
        serve: list[str] = []
        owner = self.plan.benchmark_dropped.get(remote.name)
        for opt in options:
            value = opt.source
            if opt.key in CLIENT_REMOTE_OPTIONS:
                if owner and opt.key in BENCHMARK_OPTIONS:
                    parts.append(("", f"{opt.key}={_one_line(value)} left out: the official worker takes one "
                                      f"benchmark per deployment ({owner}'s)"))
                elif opt.key == "benchmark_dataset" and not _single_item(opt.node):
                    self.needs_in_order = True  # the official worker would send only the last item
                    parts.append((f"benchmark_generator={_IN_ORDER}({value})", ""))
                else:
                    parts.append((f"{opt.key}={value}", ""))
            elif opt.key in SERVE_ONLY_OPTIONS:
                if not _is_default(opt, SERVE_ONLY_OPTIONS[opt.key]):
                    serve.append(f"{opt.key}={value}")
            elif opt.key in _VASTNB_ONLY:
                parts.append(("", f"{opt.key}={_one_line(value)} left out: {_VASTNB_ONLY[opt.key]}"))
            else:
                parts.append(("", f"{opt.key}={_one_line(value)} left out: not an option of the official remote()"))
                self.warnings.append(f"{remote.name}: remote option {opt.key}= is not exported (not an option of "
                                     "the official remote()).")
        if serve:
            self.needs_serve_only = True
            parts.append((f"**_serve_only({', '.join(serve)})", ""))
        head = f"@{self.app}.remote"
        if not parts:
            return f"{head}()"
        if all(not comment for _, comment in parts):
            one = f"{head}({', '.join(code for code, _ in parts)})"
            if len(one) <= _WIDTH and "\n" not in one:
                return one
        lines = [f"{head}("]
        for code, comment in parts:
            if code:
                code = code.replace("\n", "\n    ")  # a multi-line value moves one level in
                lines.append(f"    {code}," + (f"  # {comment}" if comment else ""))
            else:
                lines.append(f"    # {comment}")
        lines.append(")")
        return "\n".join(lines)

    def definition(self, unit: Unit, decorator: str) -> str:
        st = unit.stmt
        node = st.node
        assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        end = node.end_lineno or node.lineno
        text_lines = st.text.split("\n")
        leading = text_lines[: max(0, len(text_lines) - (end - start + 1))]
        source_lines = st.source.split("\n")
        body = "\n".join(source_lines[node.lineno - 1:end]).rstrip()
        others = unit.remote.other_decorators if unit.remote else unit.context.other_decorators if unit.context else []
        notes = []
        if unit.remote is not None:
            for w in self.wire:
                if w.function == unit.remote.name:
                    notes += textwrap.wrap(w.message, _WIDTH - 2, initial_indent="# ", subsequent_indent="#   ")
        return "\n".join([*leading, *notes, *others, decorator, body])

    def code_block(self, unit: Unit) -> _Block:
        node = unit.stmt.node
        is_def = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        if unit.kind is Kind.REMOTE:
            text = self.definition(unit, self.decorator(unit))
        elif unit.kind is Kind.CONTEXT:
            assert unit.context is not None
            text = self.definition(unit, f"@{self.app}.context({unit.context.args})")
        else:
            text = unit.stmt.text
        return _Block(text, unit.stmt.cell, is_def)

    # ------------------------------------------------------------------ the module
    def module(self, origin: str | None) -> str:
        plan = self.plan
        code_blocks = [self.code_block(u) for u in plan.code]
        pre_blocks = [self.code_block(u) for u in plan.pre_code]
        header = self.header()
        for alias in sorted(plan.query_names, key=lambda a: _first_use(plan, a)):
            self.query_imports.setdefault(alias, plan.aliases.query_names[alias])
        self.check_query_names()

        name = _static_name(plan)
        title = f'Deployment "{name}"' if name is not None else "A deployment"
        out: list[str] = ['"""' + f"{title}, exported by vastnb from {origin or 'a notebook'}.",
                          "",
                          "Running this file deploys it with the official vastai SDK (Python >= 3.12). A client",
                          "imports its remote functions and awaits them; the import deploys too (last line).",
                          '"""',
                          ""]
        if plan.futures:
            out += [u.stmt.text for u in plan.futures] + [""]
        imports = [u.stmt.text for u in plan.imports]
        if self.needs_serve_only and "import inspect" not in imports:
            imports.insert(0, "import inspect")
        if imports:
            out += imports + [""]
        out.append("from vastai import Deployment")
        if self.query_imports:
            names = ", ".join(n if n == a else f"{n} as {a}" for a, n in self.query_imports.items())
            out.append(f"from vastai.data.query import {names}")
        for alias in sorted(plan.query_modules):
            out.append("from vastai.data import query" if alias == "query" else
                       f"import vastai.data.query as {alias}")
        out.append("")
        body: list[_Block] = list(pre_blocks)
        body.append(_Block("\n".join(header), -1, True))
        if self.needs_serve_only:
            body.append(_Block(
                "\n".join([
                    "def _serve_only(**options):",
                    '    """Options only the worker-side remote() takes; the client-side remote() rejects them."""',
                    f'    return options if "max_queue_time" in inspect.signature({self.app}.remote).parameters '
                    "else {}",
                ]), -2, True))
        if self.needs_in_order:
            body.append(_Block(IN_ORDER_HELPER, -2, True))
        body += code_blocks
        body.append(_Block(f"{self.app}.ensure_ready()", -3, True))
        out.append(_join(body))
        return "\n".join(out).rstrip() + "\n"

    def check_query_names(self) -> None:
        try:
            import vastai.data.query as official
        except ImportError:
            return
        missing = [n for n in self.query_imports.values() if not hasattr(official, n)]
        if missing:
            self.warnings.append(
                f"vastai.data.query has no {', '.join(missing)}: the exported import fails; "
                "use the official SDK's names."
            )


def _is_default(opt: Option, default: str) -> bool:
    try:
        return bool(ast.literal_eval(opt.source) == ast.literal_eval(default))
    except (ValueError, SyntaxError):
        return False


def _single_item(node: ast.expr | None) -> bool:
    """A dataset written as a list of one item: the official worker sends it as vastnb does."""
    return isinstance(node, (ast.List, ast.Tuple)) and len(node.elts) == 1 and not isinstance(node.elts[0], ast.Starred)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _first_use(plan: Plan, alias: str) -> tuple[int, int]:
    """Where the notebook imports ``alias``: (statement, position in the import), to keep its order."""
    for unit in plan.units:
        node = unit.stmt.node
        if alias in unit.names.defs and isinstance(node, (ast.Import, ast.ImportFrom)):
            bound = [a.asname or a.name.split(".")[0] for a in node.names]
            return unit.order, bound.index(alias) if alias in bound else 0
    return len(plan.units), 0


def _static_name(plan: Plan) -> str | None:
    decl = plan.deployment.deployment
    if decl is None or decl.name_node is None:
        return None
    node = decl.name_node
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _join(blocks: list[_Block]) -> str:
    out: list[str] = []
    prev: _Block | None = None
    for block in blocks:
        if prev is not None:
            if block.is_def or prev.is_def:
                out.append("\n\n\n")
            elif block.cell != prev.cell:
                out.append("\n\n")
            else:
                out.append("\n")
        out.append(block.text)
        prev = block
    return "".join(out)


# ---------------------------------------------------------------------------------- client
def render_client(plan: Plan, module_name: str, origin: str | None) -> str:
    app = plan.deployment.deployment.var if plan.deployment.deployment else "app"
    imports: list[str] = [app]
    calls: list[str] = []
    module_names = _module_level_names(plan)
    for unit in plan.remotes:
        remote = unit.remote
        assert remote is not None
        imports.append(remote.name)
        call, used = _example_call(plan, unit)
        for name in used:
            if name in module_names and name not in imports:
                imports.append(name)
        calls.append(call)
    if not any(not c.startswith("#") for c in calls):
        calls.append("pass")
    body = "\n".join(f"    {c}" for c in calls)
    return "\n".join([
        f'"""Calls the remote functions of {module_name}.py (vastnb export of {origin or "a notebook"}).',
        "",
        f"Importing {module_name} deploys it with the official vastai SDK (its last line is",
        f"{app}.ensure_ready()); each call then runs on a Vast worker. The arguments are the",
        'benchmark samples."""',
        "",
        "import asyncio",
        "",
        f"from {module_name} import {', '.join(imports)}",
        "",
        "",
        "async def main():",
        body,
        "",
        "",
        "asyncio.run(main())",
        "",
    ])


def _module_level_names(plan: Plan) -> set[str]:
    names: set[str] = set()
    for unit in [*plan.imports, *plan.pre_code, *plan.code]:
        names |= unit.names.defs
    return names


def _example_call(plan: Plan, unit: Unit) -> tuple[str, list[str]]:
    remote = unit.remote
    assert remote is not None
    node = remote.node
    fn = remote.name
    dataset = remote.options.get("benchmark_dataset")
    generator = remote.options.get("benchmark_generator")
    if dataset is not None and dataset.node is not None:
        expr = dataset.node
        if isinstance(expr, (ast.List, ast.Tuple)) and expr.elts and isinstance(expr.elts[0], ast.Dict):
            sample = expr.elts[0]
            keys = [k.value if isinstance(k, ast.Constant) and isinstance(k.value, str) else "" for k in sample.keys]
            if all(k.isidentifier() for k in keys):
                text = ", ".join(f"{k}={dataset.segment(v, unit.stmt)}" for k, v in zip(keys, sample.values))
                return f"print(await {fn}({text}))", _loads(sample)
            return f"print(await {fn}(**{dataset.segment(sample, unit.stmt)}))", _loads(sample)
        if isinstance(expr, ast.Name):
            return f"print(await {fn}(**{expr.id}[0]))", [expr.id]
    if generator is not None and isinstance(generator.node, ast.Name):
        return f"print(await {fn}(**{generator.node.id}()))", [generator.node.id]
    required = _required_parameters(node)
    if not required:
        return f"print(await {fn}())", []
    placeholder = ", ".join(f"{p}=..." for p in required)
    return f"# print(await {fn}({placeholder}))  # fill in the arguments", []


def _loads(expr: ast.expr) -> list[str]:
    return sorted({n.id for n in ast.walk(expr) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)})


def render_module(plan: Plan, wire: list[WireWarning], origin: str | None) -> tuple[str, list[str]]:
    renderer = _Renderer(plan, wire)
    text = renderer.module(origin)
    return text, renderer.warnings
