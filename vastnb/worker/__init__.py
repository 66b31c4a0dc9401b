"""The worker: the process that runs notebook code on a GPU machine.

:mod:`.core` holds what a worker does (contexts, code by hash, calls, cells,
benchmark) independent of transport; :mod:`.server` puts it behind vastnb's
authenticated frame protocol on loopback.
"""

from __future__ import annotations

from .core import WorkerCore, current_core

__all__ = ["WorkerCore", "current_core"]
