"""What views read from the local backend: busy share, queued calls, capacity, load, stopped workers, and after
shutdown, stopped and zero."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

from vastnb.backends.local import LocalBackend
from vastnb.backends.local._handle import WorkerHandle
from vastnb.errors import SerializationError
from vastnb.events import BUSY_WINDOW_S, WorkerState

from .conftest import wait_for


def test_busy_share_is_the_share_of_recent_time_with_calls_on_the_worker():
    h = WorkerHandle(id="w1", index=1, state=WorkerState.READY, serving_since=100.0)
    assert h.busy_share(100.0) == 0.0
    h.mark_busy(102.0)
    h.mark_idle(104.0)
    assert h.busy_share(105.0) == pytest.approx(2 / 5)  # ready for 5 s, 2 of them busy
    h.mark_busy(106.0)  # one long call, blocking or not
    assert h.busy_share(106.0 + BUSY_WINDOW_S) == pytest.approx(1.0)
    h.mark_idle(116.0)
    assert h.busy_share(116.0 + BUSY_WINDOW_S / 2) == pytest.approx(0.5)
    assert h.busy_share(116.0 + BUSY_WINDOW_S) == 0.0
    h.state = WorkerState.STOPPED
    assert h.busy_share(200.0) == 0.0
    assert WorkerHandle(id="w2", index=2).busy_share(1.0) is None  # not serving yet: nothing measured


def test_snapshot_while_starting_running_and_after_shutdown(make_app, tmp_path):
    app = make_app(backend=LocalBackend(max_cold_workers=1))
    app.configure_autoscaling(cold_workers=1, max_workers=1)
    go = tmp_path / "go"

    @app.context()
    class Gate:
        async def __aenter__(self):
            while not os.path.exists(str(go)):  # loading until the test opens the gate
                await asyncio.sleep(0.01)
            return self

        async def __aexit__(self, *exc):
            pass

    @app.remote(benchmark_dataset=[{"s": 0.0}], benchmark_runs=2)
    async def nap(s):
        await asyncio.sleep(s)
        return s

    first = nap.submit(0.0)  # starts the deployment; the call waits for a worker
    assert wait_for(lambda: [w.state for w in app.snapshot().workers] == [WorkerState.LOADING])
    snap = app.snapshot()
    assert (snap.state, snap.queued, snap.autoscaler.capacity) == ("starting", 1, 0.0)  # capacity: serving only
    assert snap.benchmark_function == "nap"
    assert snap.workers[0].busy_share is None
    go.touch()
    assert first.result(60) == 0.0
    (worker,) = app.snapshot().workers
    assert app.snapshot().autoscaler.capacity == worker.perf_score > 0

    long = [nap.submit(30.0) for _ in range(20)]  # 8 go to the worker (a serial function's window), 12 wait
    assert wait_for(lambda: app.snapshot().queued == 12 and app.snapshot().workers[0].queue == 8)
    assert wait_for(lambda: app.snapshot().workers[0].busy_share > 0.5)
    assert app.snapshot().workers[0].state == WorkerState.BUSY
    assert wait_for(lambda: app.snapshot().autoscaler.load > 0)  # figured each control period
    for f in long:
        f.cancel()
    assert wait_for(lambda: app.snapshot().queued == 0 and app.snapshot().workers[0].queue == 0)
    assert wait_for(lambda: app.snapshot().autoscaler.load == 0.0, timeout=30)  # decays once calls stop

    app.shutdown()
    snap = app.snapshot()
    assert snap.state == "shut down"
    assert [(w.state, w.load, w.queue, w.busy_share) for w in snap.workers] == [(WorkerState.STOPPED, 0.0, 0, 0.0)]
    a = snap.autoscaler
    assert (a.load, a.capacity, a.queue_time, a.target_workers, snap.queued) == (0.0, 0.0, 0.0, 0, 0)


def test_unpicklable_return_value_is_a_serialization_error(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote()
    async def make_lock():
        return threading.Lock()

    @app.remote()
    async def ok():
        return "fine"

    with pytest.raises(SerializationError) as info:
        make_lock.call()
    assert str(info.value) == (
        "cannot serialize the result of make_lock() on worker w1: TypeError: cannot pickle '_thread.lock' object. "
        "Pass plain data (numbers, strings, bytes, lists, dicts, arrays, tensors) or objects whose classes can be "
        "pickled.")
    assert ok.call() == "fine"  # the worker still serves


def test_stopped_workers_beyond_the_kept_history_are_dropped(make_app):
    backend = LocalBackend(max_cold_workers=1)
    backend.stopped_kept = 2
    app = make_app(backend=backend)
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote()
    async def f():
        return os.getpid()

    app.ensure_ready(progress=False)
    for i in range(1, 5):  # w1..w4 killed, one after another
        victim = next(w for w in app.snapshot().workers if w.state.serving)
        assert victim.id == f"w{i}"
        os.kill(victim.pid, signal.SIGKILL)
        assert wait_for(lambda: any(w.id == f"w{i + 1}" and w.state.serving for w in app.snapshot().workers), 60)
    assert wait_for(lambda: [w.id for w in app.snapshot().workers] == ["w3", "w4", "w5"])
    assert sorted(app.logs()) == ["w3", "w4", "w5"]
    with pytest.raises(LookupError) as info:
        app.logs("w1")
    assert str(info.value) == (f"no worker 'w1' in deployment {app.name!r} (known: w3, w4, w5; only the last 2 stopped "
                               "workers are kept).")
