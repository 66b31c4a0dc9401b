"""The fast call paths: a map's calls travel in batches, a blocking call goes straight to an idle worker.

Both are only faster ways to do what a call promises; these tests hold them to the promises (order, errors per
item, timeouts, cancellation, output, a worker dying) with real workers, and check that a batch or a direct call
is what really happened (via the per-hop trace, VASTNB_TRACE_CALLS=1).
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import threading
import time
from typing import Any

import pytest

import vastnb
from vastnb.errors import CallTimeout, WorkerLost
from vastnb.wire import dumps_payload, dumps_small, loads_payload
from vastnb.wire import messages as m


class Opaque:  # a class of this module: pickled by reference, so dumps_small must leave it to cloudpickle
    def __init__(self, v: int) -> None:
        self.v = v


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VASTNB_TRACE_CALLS", "1")


# ----------------------------------------------------------------------------- the fast pickler
@pytest.mark.parametrize("value", [
    b"x", "text", 1, 2.5, None, True, 3 + 4j, (1, "a", b"b"), [1, [2, [3]]], {"a": {"b": (1, 2)}}, "é" * 5000,
])
def test_small_plain_messages_pickle_to_what_cloudpickle_loads_back(value: Any) -> None:
    for msg in (m.CallFunction("h", (value,), {"k": value}), m.Result(ok=True, value=value)):
        assert loads_payload(dumps_small(msg).to_bytes()) == msg


def test_anything_not_plain_goes_the_cloudpickle_way() -> None:
    for value in (Opaque(3), lambda x: x, {1: "int keys"}, b"x" * (1 << 20), [[0] * 10] * 100):
        msg = m.CallFunction("h", (value,), {})
        assert dumps_small(msg).to_bytes() == dumps_payload(msg).to_bytes()
    # proof that the fallback is needed at all: the plain pickler alone refuses a notebook's lambda
    with pytest.raises(AttributeError, match=r"^Can't pickle local object '.*<lambda>'$"):
        pickle.dumps(m.CallFunction("h", (lambda x: x,), {}))


# ----------------------------------------------------------------------------- maps in batches
def test_a_map_travels_in_batches_and_keeps_order_types_and_errors(make_app: Any, traced: None) -> None:
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote()
    async def f(x):
        if x % 97 == 0:
            raise KeyError(f"bad {x}")
        return {"x": x, "sq": x * x} if x % 2 else (x, str(x))

    n = 5000
    out = f.map(range(n), return_exceptions=True, progress=False)
    for x, r in enumerate(out):
        if x % 97 == 0:
            assert type(r) is KeyError and r.args == (f"bad {x}",)
        else:
            assert r == ({"x": x, "sq": x * x} if x % 2 else (x, str(x)))
    traces = app._backend.call_traces()[-n:]
    sent = {t["sent"] for t in traces}
    assert len(sent) < n / 10  # calls left together: far fewer sends than calls
    assert all(t["submitted"] <= t["queued"] <= t["sent"] <= t["received"] <= t["started"] <= t["finished"]
               <= t["read"] <= t["settled"] for t in traces)


def test_the_first_failure_of_a_map_cancels_the_rest(make_app: Any, tmp_path: Any) -> None:
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)
    log = str(tmp_path / "ran.txt")

    @app.remote()
    async def g(x):
        import asyncio

        with open(log, "a") as fh:
            fh.write(f"{x}\n")
        if x == 3:
            raise ValueError("three")
        await asyncio.sleep(0.01)
        return x

    with pytest.raises(ValueError, match="three"):
        g.map(range(2000), progress=False)
    time.sleep(0.5)
    with open(log) as fh:
        ran = len(fh.read().split())
    assert ran < 2000  # the calls still waiting (in the queue or in a batch on the worker) never ran


def test_each_call_of_a_batch_keeps_its_own_timeout(make_app: Any) -> None:
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote(timeout=1.5)
    async def nap(s):
        import asyncio

        await asyncio.sleep(s)
        return s

    out = nap.map([0.0] * 20 + [10.0], return_exceptions=True, progress=False)
    assert out[:20] == [0.0] * 20
    assert type(out[20]) is CallTimeout
    assert nap.call(0.0) == 0.0  # the worker was freed: the timed-out call was cancelled there


def test_a_cancelled_call_of_a_batch_is_skipped_and_the_rest_run(make_app: Any) -> None:
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote()
    async def step(x):
        import asyncio

        await asyncio.sleep(0.02)
        return x

    futures = [step.submit(i) for i in range(40)]
    futures[30].cancel()
    results = [f.result(30) if not f.cancelled() else "cancelled" for f in futures]
    assert results == [i if i != 30 else "cancelled" for i in range(40)]


# ----------------------------------------------------------------------------- the direct path
def test_a_blocking_call_goes_straight_to_an_idle_worker_and_keeps_its_promises(
        make_app: Any, traced: None, capsys: pytest.CaptureFixture[str]) -> None:
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote(timeout=1.0)
    async def shout(x):
        import asyncio

        print(f"hello {x}")
        if x == "boom":
            raise RuntimeError("boom")
        if x == "slow":
            await asyncio.sleep(30)
        return x.upper()

    app.ensure_ready(progress=False)
    assert shout.call("a") == "A"
    assert capsys.readouterr().out == "hello a\n"
    trace = app._backend.call_traces()[-1]
    assert trace["queued"] == trace["submitted"]  # no hand-over to the runtime's thread: the direct path
    with pytest.raises(RuntimeError, match="boom"):
        shout.call("boom")
    with pytest.raises(CallTimeout, match=r"shout\(\) did not finish within its timeout of 1 s \(it was on worker w1\)"):
        shout.call("slow")
    assert shout.call("b") == "B"  # the slow one was cancelled on the worker, which serves again
    time.sleep(1.5)  # the runtime's control step has counted the direct calls
    (worker,) = app.snapshot().workers
    assert worker.calls_done >= 3  # a, boom, b (and the slow one, once its cancellation is confirmed)


def test_a_worker_dying_during_a_direct_call_counts_as_a_try(make_app: Any) -> None:
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote(retries=0)
    async def die_once(path):
        import os

        if not os.path.exists(path):
            open(path, "w").close()
            os.kill(os.getpid(), 9)
        return "survived"

    @app.remote(retries=1)
    async def die_once_retried(path):
        import os

        if not os.path.exists(path):
            open(path, "w").close()
            os.kill(os.getpid(), 9)
        return "survived"

    app.ensure_ready(progress=False)
    die_once.call("/dev/null")  # installs the function on the worker (the path exists: no kill)
    marker = f"/tmp/vastnb-die-{os.getpid()}-{time.monotonic_ns()}"
    with pytest.raises(WorkerLost) as lost:
        die_once.call(marker)
    assert re.fullmatch(
        r"worker w\d+ died while running die_once\(\) \(the connection to the worker was lost\); the call was not "
        r"retried because its function has retries=0 \(for non-idempotent code\)\. Check the worker's log with "
        r"%vast_logs, or raise retries in @app\.remote\(retries=\.\.\.\)\.", str(lost.value)), str(lost.value)
    os.unlink(marker)
    app.ensure_ready(progress=False)
    die_once_retried.call("/dev/null")
    assert die_once_retried.call(marker) == "survived"  # retried through the queue on the replacement worker
    os.unlink(marker)


def test_ctrl_c_during_a_direct_call_cancels_it_on_the_worker(make_app: Any) -> None:
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote()
    async def wait(s):
        import asyncio

        await asyncio.sleep(s)
        return s

    app.ensure_ready(progress=False)
    assert wait.call(0) == 0
    threading.Timer(0.5, lambda: signal.raise_signal(signal.SIGINT)).start()  # noqa: the main thread gets it
    with pytest.raises(KeyboardInterrupt):
        wait.call(30)
    t0 = time.monotonic()
    assert wait.call(0) == 0
    assert time.monotonic() - t0 < 5  # not stuck behind the interrupted call: it was cancelled on the worker


def test_an_awaited_call_goes_direct_too_and_is_cancelled_on_the_worker(make_app: Any, traced: None) -> None:
    import asyncio

    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote(timeout=1.0)
    async def nap(s):
        import asyncio

        await asyncio.sleep(s)
        return s

    app.ensure_ready(progress=False)
    assert nap.call(0) == 0

    async def main() -> None:
        assert await nap(0) == 0
        trace = app._backend.call_traces()[-1]
        assert trace["queued"] == trace["submitted"]  # the direct path, on this event loop
        task = asyncio.ensure_future(nap(30))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(CallTimeout, match=r"nap\(\) did not finish within its timeout of 1 s"):
            await nap(30)
        t0 = time.monotonic()
        assert await nap(0) == 0
        assert time.monotonic() - t0 < 5  # the cancelled and timed-out calls no longer hold the worker
        assert await asyncio.gather(*(nap(0.02) for _ in range(10))) == [0.02] * 10  # one direct, the rest queued

    asyncio.run(main())
