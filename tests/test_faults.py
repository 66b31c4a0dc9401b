"""Workers that fail without losing a call: kill -9, failing contexts and benchmarks, hung workers, hostile input."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vastnb.errors import QueueTimeout, WorkerLost, WorkerStartError
from vastnb.events import WorkerState

from .conftest import pid_alive, wait_for, worker_port


def test_kill_9_during_1000_calls_loses_nothing(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=2, max_workers=2)

    @app.remote(benchmark_dataset=[{"x": 1}])
    async def work(x):
        await asyncio.sleep(0.002)
        return x * 2

    app.ensure_ready(progress=False)
    victim = app.snapshot().workers[0]
    futures = [work.submit(i) for i in range(1000)]
    wait_for(lambda: sum(f.done() for f in futures) >= 100)
    os.kill(victim.pid, signal.SIGKILL)
    assert wait_for(lambda: all(f.done() for f in futures), timeout=60)
    results = [f.result() for f in futures]
    assert results == [2 * i for i in range(1000)]  # every call resolved, retried where its worker died
    snap = app.snapshot()
    states = {w.id: w.state for w in snap.workers}
    assert states[victim.id] == WorkerState.ERROR
    assert "signal 9" in next(w.error for w in snap.workers if w.id == victim.id)
    assert wait_for(lambda: sum(w.state.serving for w in app.snapshot().workers) == 2)  # replaced


def test_no_retry_for_non_idempotent_code(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote(retries=0)
    async def charge_card():
        await asyncio.sleep(30)

    app.ensure_ready(progress=False)
    pid = app.snapshot().workers[0].pid
    fut = charge_card.submit()
    assert wait_for(lambda: app.snapshot().workers[0].queue == 1)  # sent to the worker
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerLost) as info:
        fut.result(20)
    assert str(info.value).startswith("worker w1 died while running charge_card() (worker process exited with signal 9); "
                                      "the call was not retried because its function has retries=0")


def test_failing_context_goes_to_error_with_traceback_and_does_not_hang(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.context()
    class Broken:
        async def __aenter__(self):
            raise RuntimeError("weights file missing")

        async def __aexit__(self, *exc):
            pass

    @app.remote()
    async def f():
        return 1

    with pytest.raises(WorkerStartError) as info:
        app.ensure_ready(progress=False)
    text = str(info.value)
    assert text.startswith(f"no worker of deployment {app.name!r} could start (3 attempts; fix the error and run its "
                           "cell again: changed code starts workers again). The last one failed with:\nloading failed:")
    assert text.endswith("RuntimeError: weights file missing")
    assert 'raise RuntimeError("weights file missing")' in text
    assert isinstance(info.value.__cause__, RuntimeError) and str(info.value.__cause__) == "weights file missing"
    snap = app.snapshot()
    assert snap.state == "failing"
    failed = [w for w in snap.workers if w.state == WorkerState.ERROR]
    assert len(failed) >= 3 and {w.failed_phase for w in failed} == {f"context {Broken.__qualname__}"}


def test_failing_benchmark_is_error_not_ready(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote(benchmark_dataset=[{"x": 0}])
    async def divide(x):
        return 1 / x

    with pytest.raises(WorkerStartError) as info:
        app.ensure_ready(progress=False)
    assert "benchmarking failed" in str(info.value) and "ZeroDivisionError" in str(info.value)
    assert not any(w.state.serving for w in app.snapshot().workers)


def test_hung_worker_is_marked_error_and_replaced(make_app):
    app = make_app(health_check_timeout=2.0)
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote()
    async def f():
        return os.getpid()

    app.ensure_ready(progress=False)
    first = app.snapshot().workers[0]
    os.kill(first.pid, signal.SIGSTOP)
    try:
        assert wait_for(lambda: any(w.id == first.id and w.state == WorkerState.ERROR for w in app.snapshot().workers), 15)
        err = next(w.error for w in app.snapshot().workers if w.id == first.id)
        assert err.startswith("worker stopped answering health checks for 2 s")
        assert f.call() != first.pid  # a replacement serves
    finally:
        try:
            os.kill(first.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_queue_limit_fails_fast(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote(benchmark_dataset=[{"s": 0.2}], benchmark_runs=1, max_queue_time=1.0)
    async def slow(s):
        await asyncio.sleep(s)

    app.ensure_ready(progress=False)
    backlog = [slow.submit(0.2) for _ in range(20)]
    with pytest.raises(QueueTimeout) as info:
        slow.call(0.2)
    assert info.value.limit == 1.0 and info.value.estimated_wait > 1.0
    assert str(info.value).startswith("slow() would wait about ")
    assert "more than its max_queue_time of 1 s" in str(info.value)
    for f in backlog:
        f.cancel()


# ----------------------------------------------------------------------------- hostile input


@pytest.fixture(scope="module")
def lone_worker():
    import vastnb

    app = vastnb.Deployment("fuzz-target")
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote()
    async def ping():
        return "pong"

    app.ensure_ready(progress=False)
    port = worker_port(app, "w1")
    yield app, ping, port
    app.shutdown()


def _poke(port: int, data: bytes) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(0.5)
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                s.recv(16)
            except OSError:
                pass
    except OSError:
        pass


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(max_size=200),
    st.builds(lambda n, body: b"VNB1" + os.urandom(32) + struct.pack("<BBHIQ", 1, 0, 0, 0, n) + body,
              st.integers(0, 2**64 - 1), st.binary(max_size=64)),
    st.builds(lambda junk: b"VNB1" + junk, st.binary(max_size=64)),
    st.builds(lambda n: b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * n + b"\r\n\r\n", st.integers(0, 70_000)),
))
def test_fuzz_refused_before_deserialization(lone_worker, data):
    app, _ping, port = lone_worker
    _poke(port, data)
    (worker,) = app.snapshot().workers
    assert worker.state.serving and pid_alive(worker.pid)  # refused, not crashed (and nothing ran: see below)


def test_worker_still_serves_after_fuzzing(lone_worker):
    app, ping, port = lone_worker
    # a connection that says nothing is dropped after the handshake timeout, not kept forever
    for _ in range(50):
        _poke(port, b"")
    assert ping.call() == "pong"
    (worker,) = app.snapshot().workers
    assert worker.state.serving
    assert any("refused a connection without the cluster's secret" in line for line in app.logs()[worker.id])
