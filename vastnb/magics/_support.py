"""Small helpers of the magics: undoing a failed registration, waiting for workers, optional parts."""

from __future__ import annotations

import importlib
import time
from typing import Any, Callable

from IPython.core.error import UsageError

from ..deployment import Deployment
from ..errors import SerializationError

__all__ = ["MISSING", "check_sendable", "optional", "renderers", "restore", "settle"]

class _Missing:
    pass


MISSING = _Missing()


def restore(ns: dict[str, Any], name: str, value: Any) -> None:
    """Put back what ``name`` was before a cell that failed to register redefined it."""
    if value is MISSING:
        ns.pop(name, None)
    else:
        ns[name] = value


def check_sendable(values: dict[str, Any]) -> None:
    from ..wire import dumps_payload

    for name, value in values.items():
        try:
            dumps_payload(value, f"`{name}`")
        except SerializationError as exc:
            raise UsageError(f"%%vast_run --push: {exc}") from None


def settle(app: Deployment, timeout: float = 60.0) -> None:
    """Wait (bounded) for workers that are still starting, so ``--all`` means every worker the deployment has."""
    deadline = time.monotonic() + timeout
    while any(w.state.starting for w in app.snapshot().workers) and time.monotonic() < deadline:
        time.sleep(0.02)


def optional(module: str, name: str | None, what: str) -> Any:
    """A part another module provides (widgets, export), with a clear message while it is missing."""
    try:
        mod = importlib.import_module(module)
        return mod if name is None else getattr(mod, name)
    except (ImportError, AttributeError) as exc:
        target = module if name is None else f"{module}.{name}"
        raise UsageError(f"{what} ({target}) is not available in this installation: {exc}") from None


def renderers() -> tuple[Callable[..., str], Callable[..., str]]:
    for module in ("vastnb.widgets", "vastnb.widgets.dashboard"):
        try:
            mod = importlib.import_module(module)
            return mod.render_html, mod.render_text
        except (ImportError, AttributeError):
            continue
    render = optional("vastnb.widgets", "render_html", "%vast_status: the dashboard")  # raises the clear message
    return render, render
