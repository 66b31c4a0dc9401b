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

__all__ = ["calling_module", "default_name", "follow_ready", "get_context_names", "register_atexit", "watch_notebook"]

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


def default_name(module: str | None = None, module_file: str | None = None) -> str:
    """A deployment's name when none is given: the module that called ``Deployment()``, as the official SDK names it.

    ``deploy.py`` imported by ``client.py`` is ``"deploy"`` (whichever script runs), a module of a package its
    dotted name. In a notebook (or the running script, ``__main__``) it is the notebook's (script's) file name,
    and ``"notebook"`` when the kernel does not know it.
    """
    if module and module != "__main__":
        return module
    session = os.environ.get("JPY_SESSION_NAME")
    if session and not module_file:
        base = os.path.splitext(os.path.basename(session))[0]
        if base:
            return base
    if module_file is None and module is None:
        module_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if module_file:
        return os.path.splitext(os.path.basename(module_file))[0]
    return "notebook"


def calling_module(skip: int = 1) -> tuple[str | None, str | None]:
    """``(__name__, __file__)`` of the code that called into vastnb (vastnb's own frames and IPython's are
    passed over); a notebook cell's ``__file__`` is the notebook's path when the kernel was told it
    (``__session__``), else None."""
    frame = sys._getframe(skip + 1)
    while frame is not None:
        g = frame.f_globals
        name = g.get("__name__")
        if not isinstance(name, str) or name == "vastnb" or name.startswith(("vastnb.", "IPython.", "ipykernel.")):
            frame = frame.f_back  # type: ignore[assignment]
            continue
        file = g.get("__file__") or (g.get("__session__") if name == "__main__" else None)  # a notebook's path
        return name, file if isinstance(file, str) and file else None
    return None, None


def follow_ready(app: Deployment, fut: "concurrent.futures.Future[None]", want: int) -> Callable[[], None]:
    """A workers-ready progress bar, kept up to date from the event stream; returns what closes it.

    The bar starts from the workers already serving (a second ``ensure_ready`` shows them at once). While it
    waits it shows the time elapsed and what the workers still starting do (``w1 loading``), and once a worker
    failed to start, how many did and why (``2 failed starts: FileNotFoundError: …``), so a failure reads at once.
    """
    from ..events import EventKind, WorkerState

    seen: set[str] = set()
    starting: dict[str, str] = {}  # worker id -> state, for the workers on their way to ready
    failures: list[str] = []  # one line per worker that failed to start, in order
    lock = threading.Lock()
    bar: Any = None
    finished = False

    route_said = ""  # what Vast's /route/ says while it waits (backend vast)

    def postfix() -> str:  # under lock
        parts = ([route_said] if route_said else []) + [f"{wid} {state}" for wid, state in starting.items()]
        if failures:
            n = len(failures)
            parts.append(f"{n} failed start{'s' if n != 1 else ''}: {failures[-1]}")
        return ", ".join(parts)

    def on_worker(worker: Any) -> None:
        with lock:
            if finished:
                return
            state = worker.state
            if state.serving:
                starting.pop(worker.id, None)
                if worker.id not in seen and len(seen) < want:
                    seen.add(worker.id)
                    if bar is not None:
                        bar.update(1)
            elif state.starting:
                starting[worker.id] = state.value + (f" ({worker.phases[-1][0]} done)" if worker.phases else "")
            else:
                was_starting = starting.pop(worker.id, None) is not None
                if state is WorkerState.ERROR and (was_starting or worker.ready_at is None):
                    lines = [ln.strip() for ln in (worker.error or "").strip().splitlines() if ln.strip()]
                    where = f" in {worker.failed_phase}" if worker.failed_phase else ""
                    failures.append(f"{worker.id}{where}: {lines[-1] if lines else 'error'}")
            if bar is not None:
                bar.set_postfix(postfix())

    def on_event(event: Any) -> None:
        nonlocal route_said
        if event.kind == EventKind.WORKER and event.worker is not None:
            on_worker(event.worker)
        elif event.kind == EventKind.LOG and event.data.get("source") == "route":  # what Vast says while it waits
            with lock:
                route_said = str(event.data.get("line", ""))
                if bar is not None and not finished:
                    bar.set_postfix(postfix())

    unsubscribe = app.events.subscribe(on_event)
    for worker in app.snapshot().workers:
        if worker.state.serving or worker.state.starting:
            on_worker(worker)
    with lock:
        bar = progress(want, f"{app.name}: workers ready", unit="workers", initial=len(seen), rate=False, tick=1.0)
        if bar is not None and (starting or failures):
            bar.set_postfix(postfix())
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
            if ready:  # the workers still starting are no news now; what Vast's /route/ said last still is
                bar.set_postfix(route_said)
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

