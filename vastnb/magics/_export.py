"""The cells ``%vast_export`` hands to the export module: the notebook file when the kernel knows it, else the history."""

from __future__ import annotations

import ast
import os
from typing import Any, Collection

__all__ = ["history_cells", "notebook_path"]


def notebook_path(shell: Any) -> str | None:
    """The notebook file this kernel runs, when the frontend told it (``__session__`` or ``JPY_SESSION_NAME``)."""
    for candidate in (shell.user_ns.get("__session__"), os.environ.get("JPY_SESSION_NAME")):
        if isinstance(candidate, str) and candidate.endswith(".ipynb") and os.path.isfile(candidate):
            return candidate
    return None


def history_cells(shell: Any, *, failed: Collection[tuple[int, str]] = ()) -> tuple[list[str], list[int]]:
    """This session's inputs (``In``) in order, keeping only the last definition of each name; and the ``N`` of
    each ``In[N]`` left out because ``failed`` lists it (``(N, text)``: the cells that raised; the text guards
    against a history that was reset since).

    A cell that raised is left out (its fixed version is usually run next). A cell that only defines functions and
    classes is dropped when every one of them is defined again by a later cell (an edited and re-run cell); a cell
    that repeats a later cell exactly, or is empty, is dropped too. Cells that define nothing (calls, prints,
    status magics) are kept in order; the export module decides what they mean.
    """
    raw = list(getattr(shell.history_manager, "input_hist_raw", []) or shell.user_ns.get("In", []))
    cells: list[str] = []
    raised: list[int] = []
    for n, cell in enumerate(raw[1:], start=1):  # In[0] is always ""
        if not cell or not cell.strip():
            continue
        if (n, cell.rstrip("\n")) not in failed:
            cells.append(cell)
        elif not _only_export(cell):
            raised.append(n)
    if cells and "%vast_export" in cells[-1]:  # the running cell
        cells = cells[:-1]
    cells = [c for c in cells if not _only_export(c)]
    defined = [_defined_names(c) for c in cells]
    keep: list[str] = []
    for i, cell in enumerate(cells):
        later = cells[i + 1:]
        if cell in later:
            continue
        names = defined[i]
        if names and all(any(n in d for d in defined[i + 1:]) for n in names):
            continue
        keep.append(cell)
    return keep, raised


def _only_export(cell: str) -> bool:
    lines = [ln.strip() for ln in cell.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return bool(lines) and all(ln.startswith("%vast_export") for ln in lines)


def _defined_names(cell: str) -> set[str]:
    """The functions and classes a definitions-only cell defines (empty for any other cell)."""
    text = cell
    first = text.lstrip().split("\n", 1)
    if first[0].startswith("%%"):
        magic = first[0][2:].split()[0] if first[0][2:].split() else ""
        if magic not in ("vast_remote", "vast_context"):
            return set()
        text = first[1] if len(first) > 1 else ""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif not isinstance(node, (ast.Import, ast.ImportFrom, ast.Pass)) and not (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        ):
            return set()  # a cell that also does other things is kept as it is
    return names
