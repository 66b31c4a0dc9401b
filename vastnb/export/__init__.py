"""A notebook as a deployment file that the official ``vastai`` SDK deploys and serves unchanged.

::

    from vastnb.export import export_notebook

    result = export_notebook("demo.ipynb", client_path="client.py")
    result.write("deploy.py")            # also writes client.py, importing from `deploy`
    for w in result.warnings: print(w)   # what the official JSON wire cannot carry, and more

or ``python -m vastnb export demo.ipynb -o deploy.py --client client.py``.

The module has the reference docs' shape: ``from vastai import Deployment``, the
official query imports, the deployment with its name and tag, the image,
autoscaling, the contexts and remote functions with their decorator arguments,
only the notebook code they need (found by reading names with ``ast``, in notebook
order), and ``app.ensure_ready()``. Exploration (prints, calls, ``%%vast_run``
cells, ``%vast_status``) stays out. A cell tagged ``vast-export`` is included
whatever the analysis says; one tagged ``vast-skip`` is left out.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from ._notebook import Cell, ExportError, as_cells, parse_cells, read_notebook
from ._plan import Plan, make_plan
from ._render import render_client, render_module
from ._sdk_check import client_mode_config
from ._wire_checks import WireWarning, wire_warnings

__all__ = [
    "Cell",
    "ExportError",
    "ExportResult",
    "ExportedContext",
    "ExportedFunction",
    "WireWarning",
    "check_wire",
    "client_mode_config",
    "export_cells",
    "export_notebook",
    "read_notebook",
]

DEFAULT_NAME = "notebook"  # vastnb's own default deployment name outside a notebook file


@dataclass(frozen=True)
class ExportedFunction:
    """A remote function of the export."""

    name: str
    parameters: tuple[str, ...]
    benchmark: bool  # True for the one function that carries the deployment's benchmark
    benchmark_dataset: str | None  # the notebook's expression, as source text
    benchmark_generator: str | None
    workload_calculator: str | None
    cell: int


@dataclass(frozen=True)
class ExportedContext:
    """A context class of the export, with its constructor arguments as source text."""

    name: str
    arguments: str
    cell: int


@dataclass(repr=False)
class ExportResult:
    """The exported module (and optional client) with what the user should know about them."""

    module_source: str
    client_source: str | None
    warnings: list[WireWarning | str]
    functions: list[ExportedFunction]
    contexts: list[ExportedContext]
    name: str | None  # the deployment's name, when the notebook gives it as a literal
    tag: str | None
    origin: str | None = None
    client_path: str | None = None
    written: list[str] = field(default_factory=list)
    client_config: dict[str, Any] | None = None  # what the SDK's client mode would register (check=True)
    _plan: Plan | None = field(default=None, repr=False, compare=False)

    @property
    def wire_warnings(self) -> list[WireWarning]:
        return [w for w in self.warnings if isinstance(w, WireWarning)]

    def render_client(self, module_name: str) -> str:
        """The client script for the module saved as ``<module_name>.py``."""
        if self._plan is None:
            raise ExportError("this result carries no plan to render a client from; export the notebook again.")
        return render_client(self._plan, module_name, self.origin)

    def write(self, path: str | os.PathLike[str], client_path: str | os.PathLike[str] | None = None) -> list[str]:
        """Write the module to ``path``, and the client (importing from ``path``'s module) if one was asked for."""
        path = os.fspath(path)
        client = os.fspath(client_path) if client_path is not None else self.client_path
        module_name = os.path.splitext(os.path.basename(path))[0]
        if not module_name.isidentifier():
            raise ExportError(
                f"{path}: a client imports the deployment as a module, so its file name must be a Python "
                f"identifier plus .py (e.g. deploy.py). Instead got {os.path.basename(path)!r}."
            )
        written = [path]
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.module_source)
        if client is not None:
            self.client_path = client
            self.client_source = self.render_client(module_name)
            with open(client, "w", encoding="utf-8") as f:
                f.write(self.client_source)
            written.append(client)
        self.written = written
        return written

    def summary(self) -> str:
        name = f'"{self.name}"' if self.name else "(name set at run time)"
        funcs = ", ".join(f.name + (" [benchmark]" if f.benchmark else "") for f in self.functions) or "none"
        ctxs = ", ".join(c.name for c in self.contexts) or "none"
        lines = [f"deployment {name}: functions {funcs}; contexts {ctxs}"]
        if self.written:
            lines.append("wrote " + ", ".join(self.written))
        for w in self.warnings:
            lines.append(f"warning: {w}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        name = repr(self.name) if self.name else "(unnamed)"
        where = f", written to {', '.join(self.written)}" if self.written else ""
        return (f"<ExportResult {name}: {len(self.functions)} functions, {len(self.contexts)} contexts, "
                f"{len(self.warnings)} warnings{where}>")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.summary())

    def _repr_markdown_(self) -> str:
        text = self.summary().replace("\n", "  \n")
        if not self.written:
            text += "\n\n```python\n" + self.module_source + "```\n"
        return text


def export_cells(
    cells: Sequence[Cell | str],
    *,
    client_path: str | os.PathLike[str] | None = None,
    name: str | None = None,
    origin: str | None = None,
    path: str | os.PathLike[str] | None = None,
    client: str | os.PathLike[str] | None = None,
    check: bool = False,
) -> ExportResult:
    """Export code cells (a notebook's, or the live kernel's) as one deployment module.

    ``name`` is the deployment name to use when the cells declare none. With ``path``
    the module is written there (and the client to ``client_path``/``client``), unless
    ``check`` is set: then nothing is written, and the module is imported in the official
    SDK's client mode, offline (``result.client_config``; failures become warnings).
    """
    chosen = client_path if client_path is not None else client
    client_target = os.fspath(chosen) if chosen is not None else None
    parsed = parse_cells(as_cells(cells))
    plan = make_plan(parsed, default_name=name or DEFAULT_NAME)
    wire = wire_warnings(plan)
    module, render_warnings = render_module(plan, wire, origin)
    try:
        compile(module, "<export>", "exec", dont_inherit=True)
    except SyntaxError as exc:  # a bug of ours, or notebook code that only IPython accepts
        raise ExportError(f"the exported module is not valid Python ({exc.msg}, line {exc.lineno}); "
                          "please report this with the notebook.") from None
    module_name = os.path.splitext(os.path.basename(os.fspath(path)))[0] if path is not None else "deploy"
    warnings: list[WireWarning | str] = [*plan.warnings, *render_warnings, *wire]
    result = ExportResult(
        module_source=module,
        client_source=render_client(plan, module_name, origin) if client_target is not None else None,
        warnings=warnings,
        functions=_functions(plan),
        contexts=_contexts(plan),
        name=_literal(plan, "name"),
        tag=_literal(plan, "tag") or "default",
        origin=origin,
        client_path=client_target,
        _plan=plan,
    )
    if check:
        _check_client_mode(result)
    elif path is not None:
        result.write(path)
    return result


def _check_client_mode(result: ExportResult) -> None:
    """Import the module in the official SDK's client mode, offline (when the SDK is installed)."""
    try:
        import vastai  # noqa: F401
    except ImportError:
        result.warnings.append("the official vastai SDK is not installed here, so the export was not imported "
                               "in its client mode (pip install vastai==1.9.1).")
        return
    try:
        result.client_config = client_mode_config(result.module_source)
    except ExportError as exc:
        result.warnings.append(str(exc))


def export_notebook(
    notebook: str | os.PathLike[str],
    *,
    client_path: str | os.PathLike[str] | None = None,
    path: str | os.PathLike[str] | None = None,
    client: str | os.PathLike[str] | None = None,
    check: bool = False,
) -> ExportResult:
    """Export a ``.ipynb`` file; a notebook that names no deployment gets the notebook's file name, as in vastnb."""
    notebook = os.fspath(notebook)
    cells = read_notebook(notebook)
    stem = os.path.splitext(os.path.basename(notebook))[0]
    return export_cells(cells, client_path=client_path, name=stem or DEFAULT_NAME,
                        origin=os.path.basename(notebook), path=path, client=client, check=check)


def check_wire(source: str | os.PathLike[str] | Sequence[Cell | str]) -> list[WireWarning]:
    """What the remote functions of a notebook (file or cells) send or receive that the official wire cannot carry."""
    if isinstance(source, (str, os.PathLike)):
        return export_notebook(source).wire_warnings
    return export_cells(source).wire_warnings


def _functions(plan: Plan) -> list[ExportedFunction]:
    out = []
    for unit in plan.remotes:
        remote = unit.remote
        assert remote is not None
        args = remote.node.args
        params = tuple(a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs])
        opts = remote.options

        def src(key: str) -> str | None:
            opt = opts.get(key)
            return opt.source if opt is not None and opt.source.strip() != "None" else None

        out.append(ExportedFunction(
            name=remote.name, parameters=params,
            benchmark=remote.name == plan.benchmark_owner,
            benchmark_dataset=src("benchmark_dataset"),
            benchmark_generator=src("benchmark_generator"),
            workload_calculator=src("workload_calculator"), cell=unit.stmt.cell,
        ))
    return out


def _contexts(plan: Plan) -> list[ExportedContext]:
    return [ExportedContext(u.context.name, u.context.args, u.stmt.cell) for u in plan.contexts if u.context]


def _literal(plan: Plan, key: str) -> Any:
    decl = plan.deployment.deployment
    if decl is None or key not in decl.kept:
        return None
    try:
        value = ast.literal_eval(decl.kept[key])
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, str) else None
