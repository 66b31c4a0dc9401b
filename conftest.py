"""Session-wide test set-up: notebooks checked with nbval run their cells in order, whatever order the tests run in."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[Any]) -> None:
    """pytest-randomly shuffles tests (to prove they do not depend on each other), but a notebook's cells
    depend on the cells above them and share one kernel: run each notebook's cells together, in order, where
    its first cell landed."""
    notebooks: dict[Any, list[Any]] = {}
    for item in items:
        if hasattr(item, "cell_num"):  # an nbval cell
            notebooks.setdefault(item.parent, []).append(item)
    if not notebooks:
        return
    ordered: list[Any] = []
    for item in items:
        if not hasattr(item, "cell_num"):
            ordered.append(item)
        elif item.parent in notebooks:
            ordered.extend(sorted(notebooks.pop(item.parent), key=lambda cell: cell.cell_num))
    items[:] = ordered
