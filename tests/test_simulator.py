"""The simulator: traces, the fluid queue, and the policy's behaviour on step, ramp, burst and idle loads."""

from __future__ import annotations

import math

import pytest

from vastnb.autoscaling import (
    SCALE_DOWN_COOLDOWN_S,
    AutoscalingSettings,
    Comparison,
    LoadTrace,
    SimulationResult,
    SimulationStep,
    compare,
    simulate,
)
from vastnb.errors import ConfigurationError

# One cold worker, no cold_mult and no min_load: the load alone sizes the endpoint.
LEAN = AutoscalingSettings(cold_workers=1, cold_mult=1.0, min_load=0.0)


def decisions_after(r: SimulationResult, t: float) -> list[tuple[float, int]]:
    return [(d.time, d.target) for d in r.decisions if d.time >= t]


def target_at(r: SimulationResult, t: float) -> int:
    return next(s.target for s in r.timeline if s.time >= t)


# -- traces -------------------------------------------------------------------------------------


def test_trace_constructors() -> None:
    step = LoadTrace.step(5, 30, at_s=3, duration_s=6)
    assert step.rps == (5, 5, 5, 30, 30, 30) and step.marks == (3.0,) and step.duration_s == 6
    ramp = LoadTrace.ramp(0, 40, start_s=2, end_s=6, duration_s=8)
    assert ramp.rps == (0, 0, 5, 15, 25, 35, 40, 40)
    burst = LoadTrace.burst(1, 9, at_s=2, burst_s=2, duration_s=6)
    assert burst.rps == (1, 1, 9, 9, 1, 1) and burst.marks == (2.0, 4.0)
    assert LoadTrace.from_rps([1, 2], step_s=0.5).duration_s == 1.0
    assert LoadTrace.idle(3).rps == (0, 0, 0)


def test_traces_join_with_then() -> None:
    joined = LoadTrace.step(1, 2, at_s=1, duration_s=2).then(LoadTrace.burst(0, 5, at_s=1, burst_s=1, duration_s=3))
    assert joined.rps == (1, 2, 0, 5, 0)
    assert joined.marks == (1.0, 3.0, 4.0)
    assert joined.duration_s == 5
    calls = LoadTrace.from_calls([(0.5, 10)], duration_s=2).then(LoadTrace.from_calls([(1, 20)]))
    assert calls.calls == ((0.5, 10.0), (3.0, 20.0))


def test_from_calls_sorts_and_shifts_absolute_times() -> None:
    trace = LoadTrace.from_calls([(1_700_000_005.0, 100), (1_700_000_001.5, 50)], start=1_700_000_000.0)
    assert trace.calls == ((1.5, 50.0), (5.0, 100.0))
    assert trace.duration_s == 6.0


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: LoadTrace.from_rps([1, -2]), "request rates must be non-negative numbers. Instead got -2.0 in the trace."),
        (lambda: LoadTrace.from_rps([1], step_s=0), "`step_s` must be a positive number of seconds. Instead got 0."),
        (lambda: LoadTrace.from_calls([(1, 2, 3)]), "each call must be a pair (t, workload). Instead got (1, 2, 3)."),
        (
            lambda: LoadTrace.from_calls([(5, 100)], start=10),
            "a call needs a time ≥ start and a non-negative workload. Instead got (5, 100).",
        ),
        (lambda: LoadTrace.ramp(0, 1, 5, 2, 10), "a ramp must end after it starts. Instead got start_s=5, end_s=2."),
        (
            lambda: LoadTrace.from_rps([1], step_s=1).then(LoadTrace.from_rps([1], step_s=2)),
            "traces joined with `then` must share step_s. Instead got 1 and 2.",
        ),
    ],
)
def test_trace_errors(build: object, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        build()  # type: ignore[operator]
    assert str(info.value) == message


def test_simulate_refuses_nonsense() -> None:
    with pytest.raises(ConfigurationError) as info:
        simulate(LoadTrace.idle(5), perf_score=0, cold_start_s=1)
    assert str(info.value) == "`perf_score` must be a positive number. Instead got 0."
    with pytest.raises(ConfigurationError) as info:
        simulate(LoadTrace.idle(5), perf_score=1, cold_start_s=-1)
    assert str(info.value) == "`cold_start_s` must be a non-negative number. Instead got -1."


# -- the fluid queue ----------------------------------------------------------------------------


def test_calls_wait_until_they_start_not_until_they_finish() -> None:
    one = AutoscalingSettings(cold_workers=1, max_workers=1)
    alone = simulate(LoadTrace.from_calls([(0, 1000)], duration_s=20), one, perf_score=100, cold_start_s=5, initial_workers=1)
    assert alone.max_queue_time == 0.0  # ten seconds of service, no wait
    assert alone.arrived == alone.served == 1000
    five = LoadTrace.from_calls([(0, 100)] * 5, duration_s=10)
    r = simulate(five, one, perf_score=100, cold_start_s=5, initial_workers=1)
    assert r.max_queue_time == pytest.approx(4.0)  # the fifth call starts after four calls of one second
    assert [s.queue_time for s in r.timeline[:6]] == [0.0, 1.0, 2.0, 3.0, 4.0, 0.0]


def test_overload_queue_grows_at_the_rate_of_the_shortfall() -> None:
    one = AutoscalingSettings(cold_workers=1, max_workers=1)
    r = simulate(LoadTrace.from_rps([2] * 10), one, perf_score=100, cold_start_s=5, initial_workers=1)
    # 200/s arriving, 100/s served: work arriving at t waits t more seconds; after 10 s the head arrived at 5.
    assert r.max_queue_time == pytest.approx(5.0)
    assert (r.arrived, r.served, r.backlog) == (2000, 1000, 1000)


def test_recorded_calls_replay() -> None:
    calls = [(i * 0.5, 100.0) for i in range(1200)]
    r = simulate(LoadTrace.from_calls(calls), LEAN, perf_score=150, cold_start_s=10, initial_workers=1)
    assert r.arrived == r.served == 120_000
    assert decisions_after(r, 0) == [(0.0, 1), (1.0, 2)]  # 200/s over 150/s workers, then settled


# -- the policy in motion -----------------------------------------------------------------------


def test_the_simulator_runs_the_policy_from_an_empty_endpoint() -> None:
    r = simulate(LoadTrace.idle(5), LEAN, perf_score=1000, cold_start_s=3)
    assert r.decisions[0].reason == "cold_workers 1 > 0 workers → +1 worker (target 1)"
    first: SimulationStep = r.timeline[0]
    time, workers, load, capacity, queue_time, target, reason = first
    assert (time, workers, capacity, target) == (0.0, {"provisioning": 1}, 0.0, 1)
    assert r.timeline[1].workers == {"loading": 1}
    assert r.timeline[3].workers == {"ready": 1}


@pytest.mark.parametrize("period", [1.0, 2.0])
def test_step_reaction_within_one_control_period(period: float) -> None:
    r = simulate(
        LoadTrace.step(5, 30, at_s=60, duration_s=200), LEAN,
        perf_score=1000, cold_start_s=20, initial_workers=1, control_period_s=period,
    )
    first = next(d for d in r.decisions if d.time > 60)
    assert first.time <= 60 + period
    assert first.target > first.current
    assert r.time_to_capacity(60) == pytest.approx(20 + 3 * period if period == 1 else 24)


def test_ramp_is_followed_without_scale_down() -> None:
    r = simulate(LoadTrace.ramp(0, 30, 60, 180, 400), LEAN, perf_score=1000, cold_start_s=10, initial_workers=1)
    targets = [s.target for s in r.timeline]
    assert targets == sorted(targets)  # only up while the load rises, and it never falls afterwards
    assert decisions_after(r, 1) == [(99.0, 2), (135.0, 3), (171.0, 4)]  # one worker per 900/s of load
    assert r.max_queue_time < 1.0


def test_burst_starts_what_it_needs_once_then_drains_after_the_cooldown() -> None:
    s = LEAN.merged(target_queue_time=1000)  # no queue boost: the load alone
    r = simulate(LoadTrace.burst(2, 40, at_s=60, burst_s=30, duration_s=400), s, perf_score=1000, cold_start_s=10, initial_workers=1)
    # 4,000/s at 0.9 needs 5 workers of 1,000/s: exactly 4 started, even though none is ready for 10 s.
    assert r.peak_workers == 5
    assert sum(max(0, d.target - d.current) for d in r.decisions) == 4
    down = [d for d in r.decisions if d.target < d.current]
    assert len(down) == 1 and down[0].target == 1
    assert 90 + SCALE_DOWN_COOLDOWN_S <= down[0].time <= 90 + 30 + SCALE_DOWN_COOLDOWN_S
    assert down[0].reason == "load 200/s < 0.9 × capacity 5,000/s for 30 s → -4 workers (target 1)"


def test_no_thrashing_on_steady_load() -> None:
    r = simulate(LoadTrace.from_rps([25] * 900), AutoscalingSettings(), perf_score=1000, cold_start_s=20)
    settled = 60.0
    assert {s.target for s in r.timeline if s.time >= settled} == {9}  # 2,500/s × 3 / 0.9 → 9 workers
    assert decisions_after(r, settled) == []


def test_no_thrashing_on_a_steady_stream_of_calls() -> None:
    calls = [(i * 0.37, 100.0) for i in range(int(700 / 0.37))]
    r = simulate(LoadTrace.from_calls(calls), LEAN, perf_score=170, cold_start_s=15, initial_workers=1)
    assert decisions_after(r, 60) == []


def test_target_queue_time_boosts_after_a_cold_start_backlog() -> None:
    trace = LoadTrace.step(5, 30, at_s=60, duration_s=300)
    boosted = simulate(trace, LEAN.merged(target_queue_time=5), perf_score=1000, cold_start_s=20, initial_workers=1)
    calm = simulate(trace, LEAN.merged(target_queue_time=1000), perf_score=1000, cold_start_s=20, initial_workers=1)
    assert any(d.reason.startswith("queue ") for d in boosted.decisions)
    assert not any(d.reason.startswith("queue ") for d in calm.decisions)
    assert boosted.peak_workers > calm.peak_workers
    assert boosted.max_queue_time <= calm.max_queue_time


def test_scale_to_zero_only_as_the_settings_allow() -> None:
    trace = LoadTrace.from_rps([10] * 60).then(LoadTrace.idle(600))
    zero = LEAN.merged(cold_workers=0, inactivity_timeout=120)
    r = simulate(trace, zero, perf_score=1000, cold_start_s=10, initial_workers=1)
    assert r.decisions[-1].time == 60 + 120
    assert r.decisions[-1].reason == "idle 120 s ≥ inactivity_timeout 120 s → scale to zero"
    assert r.timeline[-1].workers == {}
    assert r.decisions[-2].reason == (
        "load 0/s < 0.9 × capacity 2,000/s for 30 s → -1 worker "
        "(target 1, at least 1 worker until idle 120 s (inactivity_timeout))"
    )
    for kept, settings in [
        (1, zero.merged(inactivity_timeout=None)),
        (1, zero.merged(inactivity_timeout=-1)),
        (1, zero.merged(min_load=1)),
        (2, zero.merged(cold_workers=2)),
    ]:
        r = simulate(trace, settings, perf_score=1000, cold_start_s=10, initial_workers=1)
        assert sum(r.timeline[-1].workers.values()) == kept, settings


def test_a_call_after_scale_to_zero_brings_a_worker_back() -> None:
    trace = LoadTrace.from_calls([(0, 100), (100, 100)], duration_s=130)
    r = simulate(trace, LEAN.merged(cold_workers=0, inactivity_timeout=20), perf_score=1000, cold_start_s=5, initial_workers=1)
    assert [(d.time, d.target) for d in r.decisions] == [(0.0, 1), (20.0, 0), (101.0, 1), (120.0, 0)]
    assert r.max_queue_time == pytest.approx(6.0)  # seen at the next control tick, then one cold start


@pytest.mark.parametrize(("kwargs", "cap", "name"), [
    ({"settings": LEAN.merged(max_workers=3)}, 3, "max_workers"),
    ({"settings": LEAN, "machine_max_workers": 2}, 2, "machine_max_workers"),
])
def test_caps_are_respected_and_reported(kwargs: dict, cap: int, name: str) -> None:
    settings = kwargs.pop("settings")
    trace = LoadTrace.from_rps([100] * 120)
    r = simulate(trace, settings, perf_score=1000, cold_start_s=5, initial_workers=1, **kwargs)
    assert r.peak_workers == cap
    assert any(d.reason.endswith(f"capped at {name} {cap})") for d in r.decisions)


def test_worker_seconds_is_the_cost_proxy() -> None:
    r = simulate(LoadTrace.idle(100), LEAN.merged(cold_workers=2), perf_score=1000, cold_start_s=5, initial_workers=2)
    # the second cold worker serves until fewer have sufficed for the 30 s cooldown, then waits inactive (GPU not billed)
    assert (r.worker_seconds, r.inactive_seconds) == (130, 70)
    assert r.peak_workers == 2


def test_time_to_capacity_is_none_when_never_reached() -> None:
    r = simulate(LoadTrace.step(0, 100, at_s=5, duration_s=30), LEAN.merged(max_workers=1), perf_score=100, cold_start_s=1, initial_workers=1)
    assert r.time_to_capacity(5) is None


def test_an_hour_long_trace_is_one_step_per_control_period() -> None:
    """The simulator's cost grows with simulated time / control period (timed in benchmarks/simulate_settings.py)."""
    r = simulate(LoadTrace.burst(5, 50, 600, 300, 3600), AutoscalingSettings(), perf_score=500, cold_start_s=60)
    assert len(r.timeline) == 3600 / r.control_period_s
    assert [s.time for s in r.timeline[:3]] == [0.0, 1.0, 2.0] and r.timeline[-1].time == 3599.0
    assert r.served == r.arrived and r.backlog == 0.0  # the burst was worked off within the hour


# -- display ------------------------------------------------------------------------------------


def test_to_text_is_a_compact_table() -> None:
    r = simulate(LoadTrace.step(5, 30, at_s=60, duration_s=200), LEAN, perf_score=1000, cold_start_s=20, initial_workers=1)
    lines = r.to_text(rows=12).splitlines()
    assert lines[0] == "step 5→30 rps at 60 s · perf 1,000/s per worker · cold start 20 s · control every 1 s"
    assert lines[1].startswith(f"peak {r.peak_workers} workers · ")
    assert lines[2].split() == ["t", "s", "load/s", "capacity/s", "queue", "s", "serving", "starting", "target", "decision"]
    assert len(lines) == 3 + 12
    assert any(line.endswith("→ +1 worker (target 2)") for line in lines)


def test_html_has_a_table_and_an_inline_svg_and_no_script() -> None:
    r = simulate(LoadTrace.burst(2, 40, 30, 20, 120), LEAN, perf_score=1000, cold_start_s=5, initial_workers=1)
    page = r._repr_html_()
    assert page.count("<svg") == 1 and "<polyline" in page and "<table" in page
    assert "<script" not in page
    assert "→ +1 worker" in page and "&gt;" in page  # reasons escaped


def test_compare_tabulates_candidates() -> None:
    trace = LoadTrace.step(5, 30, at_s=60, duration_s=200)
    table = compare(
        trace,
        {"lean": LEAN, "warm": {"cold_workers": 4, "cold_mult": 1.0}},
        perf_score=1000, cold_start_s=20,
    )
    assert isinstance(table, Comparison)
    assert [row["settings"] for row in table.rows] == ["lean", "warm"]
    lean, warm = table.results["lean"], table.results["warm"]
    assert warm.settings == AutoscalingSettings(cold_workers=4, cold_mult=1.0)
    assert table.rows[0] == {"settings": "lean", **lean.summary()}
    assert lean.summary()["to capacity s"] == lean.time_to_capacity(60)
    text = table.to_text().splitlines()
    assert text[0] == trace.name
    assert text[1].split() == ["settings", "peak", "workers", "worker-s", "max", "queue", "s", "to", "capacity", "s", "decisions", "backlog"]
    assert text[2].split()[0] == "lean" and text[3].split()[0] == "warm"
    assert "<table" in table._repr_html_()
    assert math.isclose(table.rows[1]["worker-s"], warm.worker_seconds)
