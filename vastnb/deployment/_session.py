"""A deployment inside a notebook session: its default name, readiness bar, code sync after each cell, and exit."""

from __future__ import annotations

import ast
import concurrent.futures
import inspect
import os
import sys
import textwrap
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable

from ._views import progress

if TYPE_CHECKING:
    from ._deployment import Deployment

__all__ = ["default_name", "follow_ready", "get_context_names", "register_atexit", "watch_notebook"]

_LIVE: "weakref.WeakSet[Deployment]" = weakref.WeakSet()


def get_context_names(fn: Any) -> list[str]:
    """Names passed to ``<anything>.get_context(NAME)`` in a function's source."""
    try:
        src = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(src)
    except (OSError, TypeError, SyntaxError):
        return []
    out = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get_context"
                and len(node.args) == 1 and isinstance(node.args[0], ast.Name)):
            out.append(node.args[0].id)
    return out


def default_name() -> str:
    session = os.environ.get("JPY_SESSION_NAME")
    if session:
        base = os.path.splitext(os.path.basename(session))[0]
        if base:
            return base
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path:
        return os.path.splitext(os.path.basename(path))[0]
    return "notebook"


def follow_ready(app: Deployment, fut: "concurrent.futures.Future[None]", want: int) -> Callable[[], None]:
    """A workers-ready progress bar, kept up to date from the event stream; returns what closes it.

    The bar starts from the workers already serving (a second ``ensure_ready`` shows them at once).
    """
    from ..events import EventKind

    seen: set[str] = set()
    lock = threading.Lock()
    bar: Any = None
    finished = False

    def serving(worker_id: str) -> None:
        with lock:
            if finished or worker_id in seen or len(seen) >= want:
                return
            seen.add(worker_id)
            if bar is not None:
                bar.update(1)

    def on_event(event: Any) -> None:
        if event.kind == EventKind.WORKER and event.worker is not None and event.worker.state.serving:
            serving(event.worker.id)
        elif event.kind == EventKind.LOG and event.data.get("source") == "route":  # what Vast says while it waits
            with lock:
                if bar is not None and not finished:
                    bar.set_postfix(str(event.data.get("line", "")))

    unsubscribe = app.events.subscribe(on_event)
    for worker in app.snapshot().workers:
        if worker.state.serving:
            serving(worker.id)
    with lock:
        bar = progress(want, f"{app.name}: workers ready", unit="workers", initial=len(seen))
    if bar is None:
        unsubscribe()
        return lambda: None

    def finish() -> None:
        nonlocal finished
        unsubscribe()
        ready = fut.done() and not fut.cancelled() and fut.exception() is None
        with lock:
            finished = True
            if ready and len(seen) < want:  # ready by the runtime's count; some events may still be on their way
                bar.update(want - len(seen))
        bar.close(failed=not ready)

    return finish


_ATEXIT = False


def register_atexit(app: "Deployment") -> None:
    """Stop ``app``'s workers when the interpreter exits (kernel restart included), even without shutdown()."""
    global _ATEXIT
    _LIVE.add(app)
    if _ATEXIT:
        return
    _ATEXIT = True
    import atexit

    def stop_all() -> None:
        for live in list(_LIVE):
            try:
                live._backend.kill_all_now()
            except Exception:  # noqa: BLE001
                pass

    atexit.register(stop_all)


def watch_notebook(app: Deployment) -> None:
    """In IPython, mark code stale after each cell and push new registrations before the cell ends."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001
        return
    if shell is None:
        return
    ref = weakref.ref(app)

    def post_run_cell(*_: Any) -> None:
        a = ref()
        if a is None:
            try:
                shell.events.unregister("post_run_cell", post_run_cell)
            except ValueError:
                pass
            return
        a._stale = True
        if a._registered_since_sync and a.state == "running":
            try:
                a.sync()
            except Exception as exc:  # noqa: BLE001 - report, never break the shell
                print(f"vastnb: could not update deployment {a.name!r}: {exc}", file=sys.stderr)

    shell.events.register("post_run_cell", post_run_cell)

