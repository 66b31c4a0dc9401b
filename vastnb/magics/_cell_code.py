"""Notebook-side cell handling for the code-bodied magics.

A ``%%vast_remote`` or ``%%vast_context`` body is ordinary notebook code: it is
compiled under a filename from the shell's own compiler cache (so tracebacks
say ``Cell In[N], line L``) and executed in the user namespace (so what it
defines lives in ``__main__`` and travels to workers by value). Line 1 of the
compiled source is the magic line turned into a comment, so line numbers are
the cell's own.

Errors are shown the short way: problems with the magic or the cell's shape are
``UsageError`` messages; an exception raised by the cell's own code keeps its
type and is shown with the cell's frames only.
"""

from __future__ import annotations

import ast
import sys
import traceback
import types
from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError

__all__ = [
    "CompiledCell",
    "compile_cell",
    "format_remote_failure",
    "show_short",
    "syntax_error_message",
]


@dataclass(frozen=True)
class CompiledCell:
    """A magic's cell body, parsed under the filename the shell uses for the running cell."""

    source: str  # what was compiled: the magic line as a comment, then the body
    filename: str
    tree: ast.Module

    def top_level(self, *kinds: type) -> list[Any]:
        return [node for node in self.tree.body if isinstance(node, kinds)]


def cell_source(magic: str, line: str, body: str) -> str:
    """The body with the magic line as line 1 (a comment), so line numbers match the cell."""
    head = f"# %%{magic} {line}".rstrip()
    return f"{head}\n{body}"


def cell_filename(shell: Any, source: str) -> str:
    """Register ``source`` with the shell's compiler cache under the running cell's number."""
    return str(shell.compile.cache(source, running_cell_number(shell), raw_code=source))


def running_cell_number(shell: Any) -> int:
    """The ``N`` of ``In[N]`` for the cell being executed.

    IPython 9 counts ``execution_count`` up before it runs a cell, so the number
    is read from the cell's own frame (the outermost frame of a file the shell
    compiled); outside any cell it is the count the next cell will get.
    """
    names = getattr(getattr(shell, "compile", None), "_filename_map", {})
    number = None
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "<module>" and code.co_filename in names:
            number = names[code.co_filename]
        frame = frame.f_back  # type: ignore[assignment]
    if number is None:
        number = getattr(shell, "execution_count", 0) or 0
    return int(number)


def label(shell: Any, filename: str) -> str:
    """``Cell In[N]`` for a file the shell compiled, else the file name."""
    number = getattr(getattr(shell, "compile", None), "_filename_map", {}).get(filename)
    return f"Cell In[{number}]" if number is not None else filename


def syntax_error_message(shell: Any, magic: str, exc: SyntaxError) -> str:
    """A syntax error as IPython shows one (``Cell In[N], line L`` and a caret), prefixed by the magic."""
    lines = traceback.format_exception_only(SyntaxError, exc)
    where = f"  {label(shell, exc.filename or '')}, line {exc.lineno}\n"
    if lines and lines[0].lstrip().startswith("File "):
        lines = lines[1:]
    return f"%%{magic}: the cell has a syntax error:\n{where}{''.join(lines).rstrip()}"


def compile_cell(shell: Any, magic: str, line: str, body: str, *, top_level_await: bool = False) -> CompiledCell:
    """Parse a cell body with the shell's compiler; a syntax error is a ``UsageError`` with the cell's line numbers."""
    source = cell_source(magic, line, body)
    filename = cell_filename(shell, source)
    flags = ast.PyCF_ONLY_AST | (ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if top_level_await else 0)
    try:
        tree = compile(source, filename, "exec", shell.compile.flags | flags, True)
    except SyntaxError as exc:
        raise UsageError(syntax_error_message(shell, magic, exc)) from None
    assert isinstance(tree, ast.Module)
    return CompiledCell(source=source, filename=filename, tree=tree)


def run_in_user_namespace(shell: Any, cell: CompiledCell) -> None:
    """Execute the cell in the notebook's namespace, as if it were a plain cell.

    An exception raised by the cell's code propagates with its own type; IPython
    shows it with the cell's frames only (no vastnb or IPython internals).
    """
    code = shell.compile(cell.tree, cell.filename, "exec")
    try:
        shell.ex(code)
    except Exception as exc:
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != cell.filename:
            tb = tb.tb_next
        show_short(exc, _structured(shell, exc, tb))
        raise


def _structured(shell: Any, exc: BaseException, tb: types.TracebackType | None) -> list[str]:
    try:
        return list(shell.InteractiveTB.structured_traceback(type(exc), exc, tb))
    except Exception:  # noqa: BLE001 - fall back to the plain formatter
        return traceback.format_exception(type(exc), exc, tb)


def show_short(exc: BaseException, lines: list[str]) -> None:
    """Make IPython render ``exc`` as ``lines`` (its ``_render_traceback_`` protocol), keeping its type."""
    try:
        exc._render_traceback_ = lambda: lines  # type: ignore[attr-defined]
    except (AttributeError, TypeError):  # an exception type without __dict__: shown the long way
        pass


def format_remote_failure(exc: BaseException) -> list[str]:
    """A remote exception as the lines to show: the remote frames (cell and line) and the message."""
    from ..wire._errors import RemoteTraceback

    cause = exc.__cause__
    if isinstance(cause, RemoteTraceback):
        return str(cause).strip("\n").splitlines()
    return [f"{type(exc).__name__}: {exc}"]
