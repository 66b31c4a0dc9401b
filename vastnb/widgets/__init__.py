"""Notebook views of a deployment: the live dashboard, the GPU picker and progress bars.

Each is an ipywidgets view inside a Jupyter kernel and readable HTML/text
everywhere else (terminals, saved notebooks, nbval). They read a deployment only
through its snapshots and event stream (see :mod:`vastnb.events`).
"""

from __future__ import annotations

from .dashboard import Dashboard, render_html, render_text
from .picker import GpuPicker
from .progress import Progress

__all__ = ["Dashboard", "GpuPicker", "Progress", "render_html", "render_text"]
