"""How a deployment shows itself (progress bars, the dashboard, its HTML) without importing the views.

The deployment layer sits below the widgets: it asks this module for a view and
gets one only when the package root has plugged the widgets in (``vastnb/__init__``
does, lazily), so ``import vastnb.deployment`` never imports ipywidgets and a
missing widget stack only costs the progress bars.
"""

from __future__ import annotations

import types
from typing import Any, Callable

__all__ = ["progress", "set_provider", "views"]

_provider: Callable[[], types.ModuleType] | None = None


def set_provider(provider: Callable[[], types.ModuleType] | None) -> None:
    """``provider()`` returns the module with ``Progress``, ``Dashboard``, ``render_html`` (vastnb.widgets)."""
    global _provider
    _provider = provider


def views() -> types.ModuleType | None:
    if _provider is None:
        return None
    try:
        return _provider()
    except ImportError:
        return None


def progress(total: int, description: str, unit: str = "calls", initial: int = 0, **options: Any) -> Any:
    """A progress bar (widget in Jupyter, text elsewhere), or None when there is no view to draw it with.

    ``options`` go to ``Progress`` as they are (``rate=False``, ``tick=1.0``)."""
    module = views()
    if module is None:
        return None
    try:
        return module.Progress(total, description, unit=unit, initial=initial, **options)
    except Exception:  # noqa: BLE001 - progress is a nicety
        return None
