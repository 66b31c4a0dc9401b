"""Active and inactive capacity, as Vast's engine keeps it: the policy, the simulator and the local runtime agree.

Vast keeps ``cold_workers`` workers loaded (a floor on active plus inactive), and
of those only what ``min_load`` and the load need are *active*; the rest are
*inactive* (stopped, model on disk, GPU not billed) until load needs them
(``serverless-serverless-parameters.mdx``). :func:`vastnb.autoscaling.decide`
says which loaded workers to hold inactive; the simulator and the local runtime
hold exactly those out of routing, so ``app.simulate()`` predicts the engine the
user pays for.
"""

from __future__ import annotations

import asyncio

import pytest

from vastnb.autoscaling import (
    SCALE_DOWN_COOLDOWN_S,
    AutoscalingSettings,
    LoadTrace,
    PolicyState,
    ScalingView,
    WorkerView,
    decide,
    simulate,
)
from vastnb.events import WorkerState
from tests.conftest import wait_for

READY, BUSY, INACTIVE, LOADING = WorkerState.READY, WorkerState.BUSY, WorkerState.INACTIVE, WorkerState.LOADING


def w(wid: str, state: WorkerState = READY, perf: float | None = 100.0, load: float = 0.0) -> WorkerView:
    return WorkerView(wid, state, perf, load, 0.0 if state is READY else None)


SETTLED = PolicyState(fewer_active_since=-1e6)  # fewer active workers have sufficed for longer than the cooldown


def decide_now(*workers: WorkerView, load: float = 0.0, now: float = 0.0, last: float | None = 0.0,
               state: PolicyState = SETTLED, **settings: float) -> tuple[int, int, tuple[str, ...], int]:
    """(start, active, inactive, target) for a view with ``workers`` and ``settings`` over Vast's defaults."""
    s = AutoscalingSettings(**settings)  # type: ignore[arg-type]
    rec, _ = decide(ScalingView(now=now, workers=workers, load=load, last_request_at=last), s, state)
    return rec.start, rec.active, rec.inactive, rec.target


def test_cold_workers_past_the_min_load_are_inactive() -> None:
    # the quickstart's cold_workers=2 with Vast's min_load=1: one active, one inactive (the slower one)
    assert decide_now(w("a", perf=90), w("b", perf=120), cold_workers=2) == (0, 1, ("a",), 2)


def test_serving_workers_go_inactive_only_after_the_scale_down_cooldown() -> None:
    s = AutoscalingSettings(cold_workers=2)
    pair = (w("a", perf=90), w("b", perf=120))
    rec, state = decide(ScalingView(now=0.0, workers=pair, last_request_at=0.0), s, PolicyState())
    assert (rec.active, rec.inactive, state.fewer_active_since) == (2, (), 0.0)  # one would do: the cooldown starts
    rec, state = decide(ScalingView(now=SCALE_DOWN_COOLDOWN_S, workers=pair, last_request_at=0.0), s, state)
    assert (rec.active, rec.inactive) == (1, ("a",))


def test_load_activates_inactive_workers_before_starting_new_ones() -> None:
    # 150/s at target_util 0.9 needs 167/s active: the inactive worker comes back, nobody is recruited
    assert decide_now(w("a"), w("b", INACTIVE), load=150, cold_workers=2, cold_mult=1) == (0, 2, (), 2)


def test_busy_workers_are_never_held_inactive() -> None:
    assert decide_now(w("a", BUSY, load=5), w("b", BUSY, load=5), cold_workers=2, cold_mult=1) == (0, 2, (), 2)


def test_cold_mult_keeps_loaded_capacity_as_a_multiple_of_the_active() -> None:
    # 80/s needs 89/s active (one worker, with headroom) and 3 × 89/s loaded: two more are started...
    assert decide_now(w("a"), load=80, cold_workers=1, cold_mult=3) == (2, 1, (), 3)
    # ...and once loaded, they wait inactive
    assert decide_now(w("a"), w("b"), w("c"), load=80, cold_workers=1, cold_mult=3) == (0, 1, ("b", "c"), 3)


def test_min_cold_load_sets_the_loaded_capacity_directly() -> None:
    loaded = [w(f"w{i}") for i in range(5)]
    assert decide_now(*loaded, cold_workers=1, cold_mult=1, min_cold_load=500) == (
        0, 1, ("w1", "w2", "w3", "w4"), 5)


def test_zero_active_workers_only_after_the_inactivity_timeout_with_min_load_0() -> None:
    pair = (w("a"), w("b"))
    assert decide_now(*pair, now=10, last=0, cold_workers=2, min_load=0, inactivity_timeout=60)[1:3] == (1, ("b",))
    assert decide_now(*pair, now=90, last=0, cold_workers=2, min_load=0, inactivity_timeout=60)[1:3] == (0, ("a", "b"))
    # min_load > 0 keeps an active worker even then
    assert decide_now(*pair, now=90, last=0, cold_workers=2, min_load=1, inactivity_timeout=60)[1:3] == (1, ("b",))


def test_a_worker_without_a_score_serves() -> None:
    assert decide_now(w("a", perf=None), w("b", perf=None), cold_workers=2)[1:3] == (2, ())


def test_the_autoscaler_snapshot_shows_serving_capacity_and_both_counts() -> None:
    s = AutoscalingSettings(cold_workers=3)
    rec, _ = decide(ScalingView(now=0.0, workers=(w("a"), w("b"), w("c")), last_request_at=0.0), s, SETTLED)
    snap = rec.to_snapshot(s)
    assert (snap.capacity, snap.active_workers, snap.inactive_workers, snap.target_workers) == (100.0, 1, 2, 3)


def test_the_simulator_holds_cold_workers_inactive_and_activates_them_under_load() -> None:
    s = AutoscalingSettings(cold_workers=3, max_workers=3, cold_mult=1.0)
    trace = LoadTrace.step(0, 2, at_s=60, duration_s=120)  # 200/s from 60 s: three workers of 100/s
    r = simulate(trace, s, perf_score=100, cold_start_s=20, initial_workers=3, activation_s=5)
    by_time = {step.time: step for step in r.timeline}
    assert by_time[29.0].workers == {"ready": 3}  # fewer would do, for less than the 30 s cooldown
    assert by_time[30.0].workers == {"ready": 1, "inactive": 2}
    assert by_time[30.0].capacity == 100  # inactive workers do not serve
    # the load meter shows the step within seconds; each activated worker loads for activation_s, then serves
    assert [by_time[t].workers for t in (63.0, 65.0, 71.0)] == [
        {"busy": 1, "loading": 1, "inactive": 1}, {"busy": 1, "loading": 2}, {"busy": 3}]
    assert r.peak_workers == 3  # nobody new was recruited: the cold workers were there
    assert r.time_to_capacity(60) == 8.0
    assert r.inactive_seconds == 68  # both held from 30 s until the load showed, one of them a few seconds longer
    assert r.worker_seconds == 3 * 120 - r.inactive_seconds  # inactive GPUs are not billed


def test_activation_s_is_checked() -> None:
    from vastnb import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"^`activation_s` must be a non-negative number or None\. "
                                                 r"Instead got -1\.$"):
        simulate(LoadTrace.idle(5), perf_score=100, cold_start_s=1, activation_s=-1)


def test_locally_an_inactive_worker_is_loaded_but_gets_no_calls(make_app) -> None:  # type: ignore[no-untyped-def]
    from vastnb.backends.local import LocalBackend

    app = make_app(backend=LocalBackend(scale_down_cooldown=1.0))  # Vast's 30 s, shortened
    app.configure_autoscaling(cold_workers=2, max_workers=2)

    @app.remote(benchmark_dataset=[{"x": 1}], allow_parallel_requests=True)
    async def where(x):  # type: ignore[no-untyped-def]
        import os

        await asyncio.sleep(x)
        return os.getpid()

    app.ensure_ready(progress=False)
    assert wait_for(lambda: sorted(w.state.value for w in app.snapshot().workers) == ["inactive", "ready"], timeout=60)
    active = next(w for w in app.snapshot().workers if w.state is READY)
    assert {where.call(0) for _ in range(20)} == {active.pid}  # the inactive worker is kept out of routing
    assert app.snapshot().autoscaler.inactive_workers == 1
    futures = [where.submit(0.2) for _ in range(400)]  # load: the policy activates the inactive worker
    assert wait_for(lambda: all(w.state.serving for w in app.snapshot().workers), timeout=60)
    assert len({f.result(60) for f in futures}) == 2


def test_the_dashboard_shows_inactive_workers_and_bills_only_active_gpus() -> None:
    from vastnb.events import AutoscalerSnapshot, DeploymentSnapshot, WorkerSnapshot
    from vastnb.widgets.dashboard import render_text
    from vastnb.widgets._panels import header_html

    def snap(*workers: WorkerSnapshot) -> DeploymentSnapshot:
        return DeploymentSnapshot(name="d", backend="vast", state="running", workers=workers,
                                  autoscaler=AutoscalerSnapshot(active_workers=1, inactive_workers=1))

    active = WorkerSnapshot("1", READY, gpu="RTX 4090", perf_score=100.0, price_per_hour=0.42)
    cold = WorkerSnapshot("2", INACTIVE, gpu="RTX 4090", perf_score=100.0, price_per_hour=0.42)
    text = render_text(snap(active, cold))
    assert "2 workers: 1 ready, 1 inactive" in text and "$0.42/h" in text  # the inactive GPU is not billed
    assert "1 inactive" in header_html(snap(active, cold))
    unpriced = WorkerSnapshot("3", READY, gpu=None, perf_score=100.0, price_per_hour=None)
    assert "cost unknown" in render_text(snap(active, unpriced))  # not $0.42/h, not $0/h
