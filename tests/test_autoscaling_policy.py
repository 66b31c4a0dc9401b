"""The pure policy: one test per parameter, the exact reason lines, and invariants (fake clock, no processes)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from vastnb.autoscaling import (
    SCALE_DOWN_COOLDOWN_S,
    AutoscalingSettings,
    LoadMeter,
    PolicyState,
    Recommendation,
    ScalingView,
    WorkerView,
    decide,
)
from vastnb.events import Decision, WorkerState

# Settings that switch off everything but the parameter under test.
PLAIN = AutoscalingSettings(cold_workers=0, min_load=0.0, cold_mult=1.0, target_util=1.0)


def ready(wid: str, perf: float = 1000.0, load: float = 0.0, idle_since: float | None = None) -> WorkerView:
    state = WorkerState.BUSY if load > 0 else WorkerState.READY
    return WorkerView(wid, state, perf, load, idle_since)


def starting(wid: str, state: WorkerState = WorkerState.LOADING) -> WorkerView:
    return WorkerView(wid, state)


def view(*workers: WorkerView, now: float = 0.0, load: float = 0.0, **kw: object) -> ScalingView:
    kw.setdefault("last_request_at", now)
    return ScalingView(now=now, workers=workers, load=load, **kw)  # type: ignore[arg-type]


def once(v: ScalingView, s: AutoscalingSettings, state: PolicyState | None = None) -> Recommendation:
    return decide(v, s, state or PolicyState())[0]


# -- the exact reasons of a few decisions -------------------------------------------------------


def test_scale_up_reason() -> None:
    s = AutoscalingSettings(cold_workers=1, cold_mult=1.0)
    rec = once(view(ready("a", load=5), ready("b", load=5), load=1840), s)
    assert rec.reason == "load 1,840/s > 0.9 × capacity 2,000/s → +1 worker (target 3)"
    assert (rec.current, rec.start, rec.stop, rec.target) == (2, 1, (), 3)


def test_holding_reason() -> None:
    s = AutoscalingSettings(cold_workers=1)  # cold_mult 3: 120/s needs 120 / 0.9 × 3 = 400/s
    rec = once(view(ready("a", 200, load=1), ready("b", 200), load=120), s)
    assert rec.reason == "holding 2: load 120/s within capacity 400/s"
    assert (rec.start, rec.stop, rec.target) == (0, (), 2)
    assert rec.needed == pytest.approx(400)


def test_inactivity_reason() -> None:
    s = AutoscalingSettings(cold_workers=1, min_load=0, inactivity_timeout=300)
    workers = (ready("a", idle_since=0), ready("b", idle_since=0), ready("c", idle_since=0))
    rec = once(view(*workers, now=300, last_request_at=0.0), s)
    assert rec.reason == "idle 300 s ≥ inactivity_timeout 300 s → scale to cold_workers 1"
    assert rec.stop == ("a", "b") and rec.target == 1


# -- one test per parameter ---------------------------------------------------------------------


def test_cold_workers_is_the_floor() -> None:
    rec = once(view(), PLAIN.merged(cold_workers=3))
    assert rec.reason == "cold_workers 3 > 0 workers → +3 workers (target 3)"
    assert rec.start == 3


def test_max_workers_caps_and_says_so() -> None:
    s = PLAIN.merged(max_workers=4, target_util=0.9)
    rec = once(view(ready("a", load=1), ready("b", load=1), load=9000), s)
    assert rec.reason == "load 9,000/s > 0.9 × capacity 2,000/s → +2 workers (target 4, capped at max_workers 4)"
    assert rec.target == 4
    rec = once(view(ready("a", load=1), ready("b", load=1), starting("c"), starting("d"), load=9000), s)
    assert rec.reason == "holding 4: load 9,000/s > 0.9 × capacity 4,000/s (2 starting) but at max_workers 4"
    assert (rec.start, rec.target) == (0, 4)


def test_machine_cap_binds_below_max_workers_and_says_so() -> None:
    s = PLAIN.merged(max_workers=4, target_util=0.9)
    rec = once(view(ready("a", load=1), ready("b", load=1), load=9000, machine_max_workers=3), s)
    assert rec.reason == "load 9,000/s > 0.9 × capacity 2,000/s → +1 worker (target 3, capped at machine_max_workers 3)"
    rec = once(view(ready("a", load=1), ready("b", load=1), load=9000, machine_max_workers=8), s)
    assert rec.target == 4 and rec.reason.endswith("capped at max_workers 4)")


def test_machine_cap_beats_cold_workers() -> None:
    rec = once(view(ready("a")), AutoscalingSettings(), )
    assert rec.target == 5
    rec = once(view(ready("a"), machine_max_workers=1), AutoscalingSettings())
    assert rec.reason == "holding 1: cold_workers 5 > 1 worker but at machine_max_workers 1"


def test_lowering_max_workers_drains_idle_workers_at_once() -> None:
    workers = [ready(f"w{i}", idle_since=0) for i in range(5)]
    rec = once(view(*workers, load=0), PLAIN.merged(max_workers=2))
    assert rec.reason == "max_workers 2 < 5 workers → -3 workers (target 2)"
    assert rec.stop == ("w0", "w1", "w2")
    # Only the part over the cap is immediate; the load's lower wish still waits for the cooldown.
    rec, state = decide(view(*workers, now=0, load=0), PLAIN.merged(max_workers=2), PolicyState())
    assert rec.stop == ("w0", "w1", "w2") and state.below_since == 0
    busy = [ready(f"w{i}", load=1) for i in range(5)]
    rec = once(view(*busy, load=100), PLAIN.merged(max_workers=2))
    assert rec.reason == "holding 5: no idle worker to drain toward target 1"
    assert rec.stop == ()


def test_min_load_keeps_active_capacity() -> None:
    rec = once(view(prior_perf_score=1000), PLAIN.merged(min_load=2500))
    assert rec.reason == "min_load 2,500/s > capacity 0/s → +3 workers (target 3)"
    with_mult = once(view(prior_perf_score=1000), PLAIN.merged(min_load=1000, cold_mult=2))
    assert with_mult.reason == "min_load 1,000/s × cold_mult 2 > capacity 0/s → +2 workers (target 2)"


def test_min_cold_load_sets_loaded_capacity_directly() -> None:
    rec = once(view(ready("a")), PLAIN.merged(min_cold_load=5000))
    assert rec.reason == "min_cold_load 5,000/s > capacity 1,000/s → +4 workers (target 5)"


def test_target_util_leaves_headroom() -> None:
    workers = (ready("a", load=1),)
    assert once(view(*workers, load=1000), PLAIN).reason == "holding 1: load 1,000/s within capacity 1,000/s"
    rec = once(view(*workers, load=1000), PLAIN.merged(target_util=0.5))
    assert rec.reason == "load 1,000/s > 0.5 × capacity 1,000/s → +1 worker (target 2)"


def test_cold_mult_multiplies_the_active_target() -> None:
    workers = (ready("a", load=1),)
    base = PLAIN.merged(target_util=0.9)
    assert once(view(*workers, load=900), base).target == 1
    rec = once(view(*workers, load=900), base.merged(cold_mult=3))
    assert rec.reason == "load 900/s × cold_mult 3 > 0.9 × capacity 1,000/s → +2 workers (target 3)"
    assert once(view(*workers, load=900), base.merged(cold_mult=0.5)).target == 1  # below 1 acts as 1


def test_target_queue_time_scales_up_aggressively() -> None:
    s = PLAIN.merged(target_util=0.9, target_queue_time=5)
    two = (ready("a", load=1), ready("b", load=1))
    rec = once(view(*two, load=1000, queue_time=12), s)
    assert rec.reason == "queue 12 s > target_queue_time 5 s → +2 workers (target 4)"
    assert once(view(*two, load=1000, queue_time=4), s).target == 2
    # A queue the ready workers clear within target_queue_time (left from a cold start) is no reason.
    assert once(view(*two, load=1000, queue_time=12, queued=1000), s).target == 2
    # The boost does not compound while workers start: once per cold start.
    rec = once(view(*two, starting("c"), load=1000, queue_time=14), s)
    assert (rec.start, rec.target) == (0, 3)


def test_target_queue_time_none_uses_the_effective_default() -> None:
    two = (ready("a", load=1), ready("b", load=1))
    assert once(view(*two, load=1000, queue_time=11), PLAIN).target == 4
    assert once(view(*two, load=1000, queue_time=9), PLAIN).target == 2


def test_no_queue_boost_while_nothing_is_ready() -> None:
    rec = once(view(starting("a"), load=100, queue_time=60, prior_perf_score=1000), PLAIN.merged(target_queue_time=5))
    assert rec.target == 1


def test_max_queue_time_only_informs() -> None:
    v = view(ready("a", load=1), load=5000, queue_time=40)
    assert once(v, PLAIN.merged(max_queue_time=1)) == once(v, PLAIN.merged(max_queue_time=None))


def test_inactivity_timeout_allows_zero_only_when_cold_workers_and_min_load_are_zero() -> None:
    s = PLAIN.merged(inactivity_timeout=60)
    a = ready("a", idle_since=0)
    assert once(view(a, now=59, last_request_at=0.0), s).target == 1
    rec = once(view(a, now=60, last_request_at=0.0), s)
    assert rec.reason == "idle 60 s ≥ inactivity_timeout 60 s → scale to zero"
    assert (rec.stop, rec.target) == (("a",), 0)
    kept = once(view(a, now=60, last_request_at=0.0), s.merged(min_load=1))
    assert kept.reason == "holding 1: idle 60 s ≥ inactivity_timeout 60 s"
    cold = once(view(a, ready("b", idle_since=0), now=60, last_request_at=0.0), s.merged(cold_workers=1))
    assert cold.reason == "idle 60 s ≥ inactivity_timeout 60 s → scale to cold_workers 1"


def test_min_load_above_one_worker_is_kept_after_the_timeout() -> None:
    workers = [ready(f"w{i}", idle_since=0) for i in range(4)]
    rec = once(view(*workers, now=60, last_request_at=0.0), PLAIN.merged(inactivity_timeout=60, min_load=1500))
    assert rec.reason == "idle 60 s ≥ inactivity_timeout 60 s → scale to 2 workers for min_load 1,500/s"


@pytest.mark.parametrize("timeout", [None, -1, 0])
def test_inactivity_timeout_unset_zero_or_negative_never_scales_to_zero(timeout: float | None) -> None:
    rec = once(view(ready("a", idle_since=0), now=10_000, last_request_at=0.0), PLAIN.merged(inactivity_timeout=timeout))
    assert rec.target == 1
    assert rec.reason == "holding 1: load 0/s within capacity 1,000/s"
    rec = once(view(now=10_000, last_request_at=0.0), PLAIN.merged(inactivity_timeout=timeout))
    assert rec.reason == "at least 1 worker without a positive inactivity_timeout → +1 worker (target 1)"


def test_work_in_flight_is_not_idleness() -> None:
    s = PLAIN.merged(inactivity_timeout=60)
    assert once(view(ready("a", load=1), now=600, last_request_at=0.0), s).target == 1
    assert once(view(ready("a"), now=600, last_request_at=0.0, queue_time=3), s).target == 1


def test_idleness_counts_from_the_first_decision_when_no_request_came() -> None:
    s = PLAIN.merged(inactivity_timeout=60)
    rec, state = decide(view(now=0, last_request_at=None), s, PolicyState())
    assert rec.reason == "at least 1 worker until idle 60 s (inactivity_timeout) → +1 worker (target 1)"
    rec, state = decide(view(ready("a", idle_since=30), now=60, last_request_at=None), s, state)
    assert (rec.stop, rec.target) == (("a",), 0)


def test_a_request_after_scale_to_zero_starts_a_worker_at_once() -> None:
    s = PLAIN.merged(inactivity_timeout=60)
    rec = once(view(now=500, load=100, prior_perf_score=1000), s)
    assert rec.reason == "load 100/s > 1 × capacity 0/s → +1 worker (target 1)"


# -- starting, error and idle workers -----------------------------------------------------------


def test_starting_workers_count_toward_capacity() -> None:
    workers = (ready("a", load=1), starting("b", WorkerState.PROVISIONING), starting("c", WorkerState.BENCHMARKING))
    rec = once(view(*workers, load=3000), PLAIN)
    assert rec.reason == "holding 3: load 3,000/s within capacity 3,000/s (2 starting)"
    rec = once(view(*workers, load=3500), PLAIN)
    assert rec.reason == "load 3,500/s > 1 × capacity 3,000/s (2 starting) → +1 worker (target 4)"


def test_error_stopped_and_draining_workers_are_never_counted() -> None:
    dead = (
        WorkerView("e1", WorkerState.ERROR, perf_score=5.0),
        WorkerView("e2", WorkerState.ERROR),
        WorkerView("s", WorkerState.STOPPED, perf_score=1000.0),
        WorkerView("d", WorkerState.DRAINING, perf_score=1000.0),
    )
    rec = once(view(*dead), PLAIN.merged(cold_workers=2))
    assert (rec.current, rec.start, rec.target) == (0, 2, 2)
    assert rec.reason == "cold_workers 2 > 0 workers → +2 workers (target 2)"
    assert view(*dead).assumed_perf_score == 1000.0  # the error worker's score is not believed


def test_assumed_perf_is_the_mean_of_known_scores_else_the_prior() -> None:
    assert view(ready("a", 1000), ready("b", 3000), starting("c")).assumed_perf_score == 2000
    assert view(starting("c"), prior_perf_score=700).assumed_perf_score == 700
    assert view(starting("c")).assumed_perf_score is None
    rec = once(view(ready("a", 1000, load=1), ready("b", 3000, load=1), starting("c"), load=5000), PLAIN)
    assert rec.capacity == 6000 and rec.target == 3


def test_unknown_perf_holds_until_the_first_benchmark() -> None:
    rec = once(view(starting("a"), load=5000), PLAIN)
    assert rec.reason == "holding 1: no perf score yet (waiting for the first benchmark)"
    assert once(view(starting("a"), load=5000, prior_perf_score=1000), PLAIN).target == 5


def test_only_idle_ready_workers_are_drained() -> None:
    workers = (ready("a", load=1), ready("b", load=1), ready("c", load=1))
    rec, state = decide(view(*workers, now=100, load=100), PLAIN, PolicyState(below_since=0))
    assert rec.reason == "holding 3: no idle worker to drain toward target 1"
    assert rec.stop == () and state.below_since == 0  # the first worker to idle goes at once
    workers = (ready("a", load=1), ready("b", load=1), ready("c", idle_since=5))
    rec = once(view(*workers, now=100, load=100), PLAIN, PolicyState(below_since=0))
    assert rec.stop == ("c",)


def test_scale_down_waits_for_the_cooldown_and_resets_when_load_returns() -> None:
    s = AutoscalingSettings(cold_workers=1, cold_mult=1.0)
    workers = (ready("a", 200, load=5), ready("b", 200, idle_since=0), ready("c", 200, idle_since=0))
    rec, state = decide(view(*workers, now=0, load=120), s, PolicyState())
    assert rec.reason == "holding 3: load 120/s < 0.9 × capacity 600/s; -2 in 30 s (cooldown 30 s)"
    rec, state = decide(view(*workers, now=15, load=500), s, state)  # load came back
    assert rec.target == 3 and state.below_since is None
    rec, state = decide(view(*workers, now=16, load=120), s, state)
    rec, state = decide(view(*workers, now=30, load=120), s, state)
    assert rec.reason == "holding 3: load 120/s < 0.9 × capacity 600/s; -2 in 16 s (cooldown 30 s)"
    assert rec.stop == ()
    rec, state = decide(view(*workers, now=16 + SCALE_DOWN_COOLDOWN_S, load=120), s, state)
    assert rec.reason == "load 120/s < 0.9 × capacity 600/s for 30 s → -2 workers (target 1)"
    assert (rec.stop, rec.target) == (("b", "c"), 1)


def test_drains_the_slowest_then_the_longest_idle_first() -> None:
    workers = (
        ready("fast", 500, idle_since=10),
        ready("new", 100, idle_since=20),
        ready("old", 100, idle_since=5),
        ready("busy", 1000, load=1),
    )
    rec = once(view(*workers, now=100, load=0), PLAIN, PolicyState(below_since=0))
    assert rec.stop == ("old", "new", "fast")
    assert rec.reason == (
        "load 0/s < 1 × capacity 1,700/s for 100 s → -3 workers (target 1, at least 1 worker without a positive inactivity_timeout)"
    )
    rec = once(view(*workers, now=100, load=0), PLAIN.merged(cold_workers=2), PolicyState(below_since=0))
    assert rec.stop == ("old", "new")
    assert rec.reason == "load 0/s < 1 × capacity 1,700/s for 100 s → -2 workers (target 2, cold_workers 2)"


def test_hysteresis_keeps_a_worker_that_would_leave_no_headroom() -> None:
    # 2 × 1000/s cover 950/s; one would too, but without the 10 % headroom: keep both.
    workers = (ready("a", load=1), ready("b", idle_since=0))
    assert once(view(*workers, now=100, load=950), PLAIN, PolicyState(below_since=0)).target == 2
    assert once(view(*workers, now=100, load=900), PLAIN, PolicyState(below_since=0)).target == 1


# -- recommendation plumbing --------------------------------------------------------------------


def test_recommendation_feeds_the_event_model() -> None:
    s = AutoscalingSettings(cold_workers=1, cold_mult=1.0)
    rec = once(view(ready("a", load=5), ready("b", load=5), now=7.0, load=1840, queue_time=0.5), s)
    assert rec.to_decision() == Decision(time=7.0, current=2, target=3, reason=rec.reason)
    snap = rec.to_snapshot(s)
    assert (snap.load, snap.capacity, snap.target_workers, snap.max_workers) == (1840, 2000, 3, 16)
    assert (snap.target_util, snap.queue_time, snap.target_queue_time) == (0.9, 0.5, 10.0)
    assert snap.last_decision == rec.to_decision()


def test_worker_view_from_snapshot() -> None:
    from vastnb.events import WorkerSnapshot

    snap = WorkerSnapshot(id="w1", state=WorkerState.READY, perf_score=900.0, load=0.0)
    assert WorkerView.from_snapshot(snap, idle_since=3.0) == WorkerView("w1", WorkerState.READY, 900.0, 0.0, 3.0)


def test_load_meter_windows() -> None:
    meter = LoadMeter(started_at=0.0)
    meter.record(0.5, 100)
    assert meter.rate(1.0) == 100  # at least one second in the denominator
    assert meter.rate(10.0) == 10  # long window: 100 over 10 s so far
    assert meter.rate(31.0) == 0
    steady = LoadMeter(started_at=0.0)
    for t in range(1, 61):
        steady.record(float(t), 1000)
    assert steady.rate(60.0) == 1000
    steady.record(61.0, 3000)
    assert steady.rate(61.0) == 1400  # the short window shows a step within one second


# -- invariants over arbitrary inputs -----------------------------------------------------------

_states = st.sampled_from(list(WorkerState))
_workers = st.lists(
    st.builds(
        WorkerView,
        id=st.text("abcdef", min_size=1, max_size=3),
        state=_states,
        perf_score=st.one_of(st.none(), st.floats(1, 5000)),
        load=st.sampled_from([0.0, 0.0, 1.0]),
        idle_since=st.one_of(st.none(), st.floats(0, 100)),
    ),
    max_size=8,
    unique_by=lambda w: w.id,
)
_settings = st.builds(
    lambda cold, extra, **kw: AutoscalingSettings(cold_workers=cold, max_workers=cold + extra, **kw),
    cold=st.integers(0, 6),
    extra=st.integers(0, 6),
    min_load=st.floats(0, 3000),
    min_cold_load=st.floats(0, 3000),
    target_util=st.floats(0.05, 1.0),
    cold_mult=st.floats(0, 4),
    target_queue_time=st.one_of(st.none(), st.floats(0.1, 30)),
    inactivity_timeout=st.one_of(st.none(), st.floats(-10, 100)),
)


@hsettings(max_examples=150, deadline=None)
@given(
    workers=_workers,
    s=_settings,
    load=st.floats(0, 20000),
    queue_time=st.floats(0, 60),
    machine=st.one_of(st.none(), st.integers(0, 8)),
    prior=st.one_of(st.none(), st.floats(1, 5000)),
    below_since=st.one_of(st.none(), st.floats(0, 200)),
)
def test_invariants(
    workers: list[WorkerView],
    s: AutoscalingSettings,
    load: float,
    queue_time: float,
    machine: int | None,
    prior: float | None,
    below_since: float | None,
) -> None:
    v = ScalingView(
        now=200.0, workers=tuple(workers), load=load, queue_time=queue_time, last_request_at=50.0,
        machine_max_workers=machine, prior_perf_score=prior,
    )
    state = PolicyState(first_seen=0.0, below_since=below_since)
    rec, new_state = decide(v, s, state)
    loaded = [w for w in workers if w.state.serving or w.state is WorkerState.INACTIVE]
    counted = [w for w in workers if w.state.starting] + loaded
    cap = s.max_workers if machine is None else min(s.max_workers, machine)
    assert rec.current == len(counted)
    assert rec.target == rec.current + rec.start - len(rec.stop) == new_state.target
    assert not (rec.start and rec.stop)
    assert set(rec.stop) <= {w.id for w in counted if w.idle}
    assert set(rec.inactive) <= {w.id for w in loaded if w.load <= 0} - set(rec.stop)  # never a busy one
    assert rec.active + len(rec.inactive) == len(loaded) - len(rec.stop)
    if rec.start:
        assert rec.target <= cap
    if rec.stop and rec.current <= cap:
        assert rec.target >= min(s.effective_cold_workers, cap)
    assert rec.reason and "\n" not in rec.reason
    assert decide(v, s, state) == (rec, new_state)  # pure
    assert dataclasses.replace(rec) == rec
