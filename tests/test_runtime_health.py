"""Long blocking calls are busy, not hung; a stopped or wedged worker is still detected and replaced."""

from __future__ import annotations

import os
import signal
import time

import pytest

from vastnb.backends.local import LocalBackend
from vastnb.events import EventKind, WorkerState

from .conftest import wait_for

HEALTH_S = 2.0


def _errors_seen(app):
    """Every worker error published from now on."""
    seen: list[str] = []

    def on_event(event):
        if event.kind == EventKind.WORKER and event.worker is not None and event.worker.state == WorkerState.ERROR:
            seen.append(f"{event.worker.id}: {event.worker.error}")

    app.events.subscribe(on_event)
    return seen


@pytest.mark.parametrize("how", ["sleep", "spin"])
def test_call_blocking_the_loop_3x_longer_than_health_timeout_completes_and_so_do_calls_behind_it(make_app, how):
    app = make_app(health_check_timeout=HEALTH_S)
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote(retries=0)
    async def train_step(seconds, how):
        end = time.monotonic() + seconds
        if how == "sleep":  # blocking C code that releases the GIL (torch, numpy, I/O)
            time.sleep(seconds)
        while time.monotonic() < end:  # pure Python that holds the GIL
            pass
        return os.getpid()

    @app.remote(retries=0)
    async def after(x):
        return x, os.getpid()

    app.ensure_ready(progress=False)
    (worker,) = app.snapshot().workers
    errors = _errors_seen(app)
    long = train_step.submit(3.5 * HEALTH_S, how)
    assert wait_for(lambda: app.snapshot().workers[0].state == WorkerState.BUSY)
    behind = [after.submit(i) for i in range(3)]  # queued behind the blocking call, on its worker
    assert long.result(60) == worker.pid
    assert [f.result(60) for f in behind] == [(i, worker.pid) for i in range(3)]
    assert errors == []
    (now,) = app.snapshot().workers
    assert (now.id, now.pid, now.state) == (worker.id, worker.pid, WorkerState.READY)


def test_sigstopped_busy_worker_is_replaced_and_its_call_retried(make_app):
    app = make_app(health_check_timeout=HEALTH_S)
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote(retries=1)
    async def job(x):
        import asyncio

        await asyncio.sleep(1.0)
        return x, os.getpid()

    app.ensure_ready(progress=False)
    (first,) = app.snapshot().workers
    fut = job.submit(7)
    assert wait_for(lambda: app.snapshot().workers[0].queue == 1)
    os.kill(first.pid, signal.SIGSTOP)
    try:
        x, pid = fut.result(60)
        assert x == 7 and pid != first.pid
        stopped = next(w for w in app.snapshot().workers if w.id == first.id)
        assert stopped.state == WorkerState.ERROR
        assert stopped.error == f"worker stopped answering health checks for {HEALTH_S:g} s; replaced"
    finally:
        try:
            os.kill(first.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_worker_whose_event_loop_is_wedged_with_nothing_running_is_replaced(make_app):
    app = make_app(backend=LocalBackend(health_check_timeout=HEALTH_S))
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote()
    async def wedge():
        import asyncio

        asyncio.get_running_loop().call_later(0.2, time.sleep, 3600)  # blocks the loop after the call returned
        return os.getpid()

    @app.remote()
    async def pid():
        return os.getpid()

    app.ensure_ready(progress=False)
    wedged = wedge.call()
    assert wait_for(lambda: any(w.pid == wedged and w.state == WorkerState.ERROR for w in app.snapshot().workers), 30)
    error = next(w.error for w in app.snapshot().workers if w.pid == wedged)
    assert error.startswith("worker's event loop has not run for ")
    assert error.endswith(" s with no request running (stuck); replaced")
    assert pid.call() != wedged
