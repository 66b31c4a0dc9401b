"""Queue-time estimates come from what the workers really do: fast calls are never refused on a made-up figure."""

from __future__ import annotations

import asyncio
import math

import pytest

from vastnb.errors import QueueTimeout

from .conftest import wait_for


@pytest.mark.parametrize("n", [40, 500])
def test_gather_of_fast_awaits_without_benchmark_all_succeed(make_app, n):
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote()
    async def tiny(x):
        return x + 1

    app.ensure_ready(progress=False)

    async def burst():
        return await asyncio.gather(*(tiny(i) for i in range(n)), return_exceptions=True)

    results = asyncio.run(burst())
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert results == [i + 1 for i in range(n)]


def test_queued_maps_and_submits_do_not_make_fast_awaits_fail(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote()
    async def tiny(x):
        return x * 2

    app.ensure_ready(progress=False)
    backlog = [tiny.submit(i) for i in range(3000)]  # queued on purpose: never refused

    async def burst():
        return await asyncio.gather(*(tiny(i) for i in range(300)), return_exceptions=True)

    results = asyncio.run(burst())
    assert results == [2 * i for i in range(300)]
    assert [f.result(60) for f in backlog] == [2 * i for i in range(3000)]
    assert tiny.map(list(range(2000)), progress=False) == [2 * i for i in range(2000)]


def test_refusal_comes_from_observed_call_durations(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote(max_queue_time=1.0)  # no benchmark: the estimate can only come from calls that ran
    async def slow(s):
        await asyncio.sleep(s)
        return s

    app.ensure_ready(progress=False)
    assert slow.call(0.25) == 0.25  # one measured call: about 0.25 s of the worker's time
    backlog = [slow.submit(0.25) for _ in range(12)]  # about 3 s of work ahead of the next call
    assert wait_for(lambda: app.snapshot().queued + sum(w.queue for w in app.snapshot().workers) == 12)
    with pytest.raises(QueueTimeout) as info:
        slow.call(0.25)
    wait = info.value.estimated_wait
    assert info.value.limit == 1.0 and 1.0 < wait and math.isfinite(wait)
    assert str(info.value) == (
        f"slow() would wait about {wait:.1f} s in the queue, more than its max_queue_time of 1 s. Add workers "
        "(app.configure_autoscaling(max_workers=...)), send fewer calls at once, or raise max_queue_time in "
        "@app.remote(...).")
    for f in backlog:
        f.cancel()


def test_a_call_whose_cost_was_never_measured_is_not_refused(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote(max_queue_time=0.001)  # a tiny limit: only a measured wait could exceed it
    async def unmeasured(x):
        await asyncio.sleep(0.05)
        return x

    app.ensure_ready(progress=False)

    async def burst():
        return await asyncio.gather(*(unmeasured(i) for i in range(5)))

    assert asyncio.run(burst()) == list(range(5))  # sent together, before any had finished: none refused
