"""Notebook cells as Python statements: reading ``.ipynb`` files, magics, source text."""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..magics.grammar import DEPLOYMENT_OPTIONS, REMOTE_OPTIONS, read_line
from ..errors import ConfigurationError

__all__ = ["Cell", "ExportError", "ParsedCell", "Statement", "parse_cells", "read_notebook"]

EXPORT_TAG = "vast-export"
SKIP_TAG = "vast-skip"
DEFINING_MAGICS = ("vast_remote", "vast_context")


class ExportError(ConfigurationError):
    """The notebook cannot be exported as it is (no deployment, unreadable file, …)."""


@dataclass(frozen=True)
class Cell:
    """One code cell: its source (magics included) and its tags (``vast-export``, ``vast-skip``)."""

    source: str
    tags: tuple[str, ...] = ()


@dataclass
class Statement:
    """One top-level statement of a cell, with the text it is exported as."""

    node: ast.stmt
    text: str  # the statement's source, with the comment lines right above it
    cell: int  # 1-based number among the code cells
    line: int  # line of the statement in its cell (1-based, magic line included)
    source: str  # the whole (transformed) cell body the node's positions refer to
    offset: int = 0  # lines above that body in the cell (the %%magic line)

    def cell_line(self, node: ast.AST) -> int:
        return getattr(node, "lineno", 1) + self.offset

    def segment(self, node: ast.AST) -> str:
        """The source text of a node inside this statement (unparsed if positions are missing)."""
        return ast.get_source_segment(self.source, node) or ast.unparse(node)


@dataclass
class ParsedCell:
    number: int
    cell: Cell
    magic: str | None = None  # the cell magic's name, without %%
    magic_line: str = ""
    statements: list[Statement] = field(default_factory=list)
    error: str | None = None

    @property
    def forced(self) -> bool:
        return EXPORT_TAG in self.cell.tags

    @property
    def skipped(self) -> bool:
        return SKIP_TAG in self.cell.tags


def read_notebook(path: str | os.PathLike[str]) -> list[Cell]:
    """The code cells of a notebook file, with their tags."""
    import nbformat

    path = os.fspath(path)
    if not os.path.exists(path):
        raise ExportError(f"no such notebook: {path}")
    if os.path.isdir(path):
        raise ExportError(f"{path} is a directory, not a notebook. Pass a .ipynb file.")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # nbformat raises JSON, validation and schema errors of several types
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"{path} is not a Jupyter notebook (nbformat cannot read it: {reason}). Pass a .ipynb file."
        ) from None
    cells = []
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        tags = cell.get("metadata", {}).get("tags", []) or []
        cells.append(Cell(source=str(cell.get("source", "")), tags=tuple(str(t) for t in tags)))
    return cells


def as_cells(cells: Sequence[Cell | str]) -> list[Cell]:
    return [c if isinstance(c, Cell) else Cell(str(c)) for c in cells]


def parse_cells(cells: Sequence[Cell]) -> list[ParsedCell]:
    return [_parse_cell(i + 1, cell) for i, cell in enumerate(cells)]


def _parse_cell(number: int, cell: Cell) -> ParsedCell:
    parsed = ParsedCell(number=number, cell=cell)
    lines = cell.source.split("\n")
    first = 0
    while first < len(lines) and not lines[first].strip():
        first += 1
    offset = 0
    body = cell.source
    if first < len(lines) and lines[first].lstrip().startswith("%%"):
        head = lines[first].strip()[2:]
        name, _, rest = head.partition(" ")
        parsed.magic, parsed.magic_line = name, rest.strip()
        offset = first + 1
        body = "\n".join(lines[offset:])
    source = _transform_line_magics(body)
    try:
        tree = compile(
            source, f"<cell {number}>", "exec",
            flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True,
        )
    except SyntaxError as exc:
        parsed.error = f"line {(exc.lineno or 1) + offset}: {exc.msg}"
        return parsed
    assert isinstance(tree, ast.Module)
    parsed.statements = _statements(source, tree.body, number, offset)
    return parsed


def _transform_line_magics(source: str) -> str:
    """IPython's own input transformation: ``%magic`` lines become ``get_ipython()`` calls."""
    if "%" not in source and "!" not in source and "?" not in source:
        return source
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - IPython is a dependency
        return source
    try:
        out = TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - leave odd input to the parser, which reports it
        return source
    if not source.endswith("\n") and out.endswith("\n"):
        out = out[:-1]
    return out


def _statements(source: str, body: list[ast.stmt], cell: int, offset: int) -> list[Statement]:
    lines = source.split("\n")
    out: list[Statement] = []
    prev_end = 0
    for i, node in enumerate(body):
        start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        end = node.end_lineno or node.lineno
        shares_line = (i > 0 and (body[i - 1].end_lineno or 0) >= start) or (
            i + 1 < len(body) and body[i + 1].lineno <= end
        )
        if shares_line:
            text = ast.get_source_segment(source, node) or ast.unparse(node)
        else:
            first = start
            while first - 1 > prev_end and lines[first - 2].strip().startswith("#"):
                first -= 1
            text = "\n".join(lines[first - 1:end]).rstrip()
        out.append(Statement(node=node, text=text, cell=cell, line=start + offset, source=source, offset=offset))
        prev_end = end
    return out


# ---------------------------------------------------------------------------------- magic lines
@dataclass
class RemoteMagic:
    """The options given on a ``%%vast_remote`` line, as source text (None: not given)."""

    benchmark_dataset: str | None = None
    benchmark_generator: str | None = None
    benchmark_runs: str | None = None
    workload_calculator: str | None = None
    allow_parallel_requests: bool = False
    max_queue_time: str | None = None
    retries: str | None = None
    timeout: str | None = None
    unknown: list[str] = field(default_factory=list)


def parse_remote_line(line: str) -> RemoteMagic:
    """Read a ``%%vast_remote`` line with the magic's own grammar (values stay source text)."""
    given, unknown = _read("%%vast_remote", REMOTE_OPTIONS, line)
    return RemoteMagic(**given, unknown=unknown)


@dataclass
class DeploymentMagic:
    name: str | None
    tag: str | None
    var: str
    backend: str | None


def parse_deployment_line(line: str) -> DeploymentMagic:
    """Read a ``%vast_deployment`` line with the magic's own grammar."""
    given, _unknown = _read("%vast_deployment", DEPLOYMENT_OPTIONS, line)
    return DeploymentMagic(name=given.get("name"), tag=given.get("tag"), var=given.get("var") or "app",
                           backend=given.get("backend"))


def _read(magic: str, options: Any, line: str) -> tuple[dict[str, Any], list[str]]:
    try:
        return read_line(options, line)
    except ValueError as exc:
        raise ExportError(f"{magic} {line.strip()}: cannot read the options ({exc}).") from None
