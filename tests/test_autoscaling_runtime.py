"""The autoscaling loop on real worker processes: a burst scales out, quiet scales back in."""

from __future__ import annotations

import asyncio
import time

from vastnb.autoscaling import LoadTrace
from vastnb.backends.local import LocalBackend


def _serving(app) -> int:
    return sum(w.state.serving for w in app.snapshot().workers)


def test_burst_scales_out_and_back_in(make_app):
    app = make_app(backend=LocalBackend(scale_down_cooldown=2.0))  # Vast's 30 s, shortened: the test waits for it
    app.configure_autoscaling(cold_workers=1, max_workers=3, cold_mult=1, target_util=0.9)

    @app.remote(benchmark_dataset=[{"s": 0.05}], benchmark_runs=3)
    async def work(s):
        await asyncio.sleep(s)

    app.ensure_ready(progress=False)
    assert _serving(app) == 1
    perf = app.snapshot().workers[0].perf_score
    assert 0 < perf <= 2100  # 100 units per 0.05 s call, one at a time: never more than 2,000/s

    futures, t0 = [], time.monotonic()
    peak = 1
    while time.monotonic() - t0 < 8:  # 60 calls/s = 6,000 units/s, three workers' worth
        futures.append(work.submit(0.05))
        peak = max(peak, _serving(app))
        time.sleep(1 / 60)
    for f in futures:
        f.result(60)
    assert peak == 3
    decisions = app.snapshot().decisions
    assert decisions[0].reason == "cold_workers 1 > 0 workers → +1 worker (target 1)"
    up = next(d for d in decisions if d.target > 1)
    assert up.reason.startswith("load ") and "capacity" in up.reason and "→ +" in up.reason

    deadline = time.monotonic() + 120  # a bound, not a threshold: scaling in takes the cooldown plus a drain
    while _serving(app) > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _serving(app) == 1
    assert app.snapshot().decisions[-1].target == 1


def test_simulate_uses_measured_scores_and_candidate_settings(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=4)

    @app.remote(benchmark_dataset=[{"s": 0.02}], benchmark_runs=3)
    async def work(s):
        await asyncio.sleep(s)

    app.ensure_ready(progress=False)
    trace = LoadTrace.step(before_rps=5, after_rps=150, at_s=10, duration_s=60)
    capped = app.simulate(trace, max_workers=2)
    free = app.simulate(trace, max_workers=8)
    assert capped.peak_workers == 2 and free.peak_workers > 2
    assert free.max_queue_time < capped.max_queue_time
    assert app.autoscaling.max_workers == 4  # a what-if, nothing applied
