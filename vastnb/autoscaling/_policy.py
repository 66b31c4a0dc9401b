r"""The autoscaling policy: a pure function of what the runtime sees, the settings and the time.

:func:`decide` never sleeps, reads no clock and touches no process; the local runtime's
control loop and the simulator both call it once per control period and apply the
:class:`Recommendation` it returns. Every figure below is in workload units per second.

The formula (Vast's parameters, Vast's meaning; this docstring is its one home)::

    perf     = each worker's benchmark score; a worker not yet benchmarked counts at the
               assumed score (mean of known scores, else the view's prior)
    capacity = sum of perf over counted workers (provisioning, loading, benchmarking,
               ready, busy, inactive; never draining, stopped or error)

    active   = max(min_load, load / target_util)               # capacity serving now
    needed   = max(active, active * cold_mult, min_cold_load)  # capacity kept loaded

    up:      capacity < needed       -> + ceil((needed - capacity) / assumed perf)
    queue:   queue_time > target_queue_time, with a ready worker, none starting, and
             (when queued is known) queued / ready capacity > target_queue_time
                                     -> at least max(ready + 2, 2 * ready) workers
    down:    the count the ready workers keep when the slowest go while the rest still
             cover needed * (1 + SCALE_DOWN_HEADROOM); once that lower count has held for
             SCALE_DOWN_COOLDOWN_S, idle ready workers are drained toward it (slowest,
             then longest idle, first); busy and starting workers are never drained
    floor:   cold_workers; and 1 until the endpoint has been idle (no request, nothing in
             flight or queued) for a positive inactivity_timeout (0 or negative: never);
             then the load counts as 0, the cooldown is skipped, and min_load,
             min_cold_load and cold_workers alone decide (all 0 allows zero workers)
    cap:     min(max_workers, machine_max_workers); workers over it are drained at once
    target:  min(max(up or down, queue, floor), cap)

``cold_mult`` multiplies the active capacity target (Vast's "multiple of hot capacity
target"); values below 1 act as 1. The target counts Vast's active and inactive workers
together (``cold_workers`` is a floor on both). Of the loaded workers (ready, busy,
inactive) the policy keeps *active* those that cover ``active`` with the drain's headroom
(busy ones always, then those already serving, fastest first; at least one, as the floor
keeps one, until the inactivity timeout; all of them while the queue is over
``target_queue_time``); the others are *inactive*, loaded but out of routing
(:attr:`Recommendation.inactive`): Vast's cold workers, which the simulator and the local
runtime model the same way. An inactive worker is activated at once when the need grows;
a serving one is held inactive only after fewer have sufficed for the scale-down cooldown
(the same hysteresis as draining). ``max_queue_time`` does not move the target: callers
use it to fail fast (:class:`~vastnb.errors.QueueTimeout`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..events import AutoscalerSnapshot, Decision, WorkerSnapshot, WorkerState
from . import _format as fmt
from ._settings import AutoscalingSettings

__all__ = [
    "LOAD_LONG_WINDOW_S",
    "LOAD_SHORT_WINDOW_S",
    "SCALE_DOWN_COOLDOWN_S",
    "SCALE_DOWN_HEADROOM",
    "LoadMeter",
    "PolicyState",
    "Recommendation",
    "ScalingView",
    "WorkerView",
    "decide",
]

#: Seconds the lower target must hold before idle workers are drained (scale-up is immediate).
SCALE_DOWN_COOLDOWN_S = 30.0
#: A worker is drained only if the rest cover ``needed`` with this much to spare (hysteresis).
SCALE_DOWN_HEADROOM = 0.1
#: :class:`LoadMeter` windows: the short one reacts to a step, the long one rides out gaps.
LOAD_SHORT_WINDOW_S = 5.0
LOAD_LONG_WINDOW_S = 30.0

_EPS = 1e-9


@dataclass(frozen=True)
class WorkerView:
    """One worker as the policy sees it.

    ``load`` is the workload in flight or queued on the worker (any unit; zero means
    idle); ``idle_since`` is when it last became idle (None while busy or unknown).
    """

    id: str
    state: WorkerState
    perf_score: float | None = None
    load: float = 0.0
    idle_since: float | None = None

    @classmethod
    def from_snapshot(cls, worker: WorkerSnapshot, idle_since: float | None = None) -> WorkerView:
        return cls(worker.id, worker.state, worker.perf_score, worker.load, idle_since)

    @property
    def idle(self) -> bool:
        """Ready with nothing in flight, or inactive: the only kinds of worker the policy drains."""
        return self.state is WorkerState.INACTIVE or (self.state is WorkerState.READY and self.load <= 0)

    @property
    def loaded(self) -> bool:
        """Its code and contexts are loaded: serving (ready, busy) or held inactive."""
        return self.state.serving or self.state is WorkerState.INACTIVE


@dataclass(frozen=True)
class ScalingView:
    """What the policy needs to know at ``now``.

    ``load`` is the arriving workload in units per second, averaged over a window
    (:class:`LoadMeter` measures it the same way for the runtime and the simulator).
    ``queue_time`` is how long the oldest waiting call has waited (0 when none waits);
    ``queued`` is the workload waiting for a worker, when known: with it, a queue left
    over from a cold start that ready workers will clear within ``target_queue_time``
    does not trigger the aggressive scale-up.
    ``last_request_at`` is None when no request has arrived yet. ``machine_max_workers``
    caps the count by what the machine holds (GPUs, CPU cores); None for no cap.
    ``prior_perf_score`` is assumed for unbenchmarked workers until one has a score.
    """

    now: float
    workers: tuple[WorkerView, ...] = ()
    load: float = 0.0
    queue_time: float = 0.0
    queued: float | None = None
    last_request_at: float | None = None
    machine_max_workers: int | None = None
    prior_perf_score: float | None = None

    @property
    def assumed_perf_score(self) -> float | None:
        """Mean benchmark score of the workers that have one (error ones aside), else the prior."""
        scores = [
            w.perf_score
            for w in self.workers
            if w.perf_score is not None and w.perf_score > 0 and w.state is not WorkerState.ERROR
        ]
        if scores:
            return sum(scores) / len(scores)
        if self.prior_perf_score is not None and self.prior_perf_score > 0:
            return self.prior_perf_score
        return None


@dataclass(frozen=True)
class PolicyState:
    """What :func:`decide` carries from one call to the next (start with ``PolicyState()``)."""

    first_seen: float | None = None
    below_since: float | None = None  # when the wanted count first fell below the current one
    target: int | None = None  # the last recommended target
    fewer_active_since: float | None = None  # when fewer active workers than serve first sufficed


@dataclass(frozen=True)
class Recommendation:
    """What to do now: reach ``target`` workers by starting ``start`` and draining ``stop``.

    ``target == current + start - len(stop)`` always. ``desired`` is what the policy
    wants once the scale-down cooldown allows; the figures explain the reason line.
    ``inactive`` names the loaded workers to keep out of routing (Vast's inactive cold
    workers); ``active`` counts the loaded workers that serve, ``serving_capacity`` their perf.
    """

    target: int
    start: int = 0
    stop: tuple[str, ...] = ()
    inactive: tuple[str, ...] = ()
    active: int = 0
    serving_capacity: float = 0.0
    reason: str = ""
    time: float = 0.0
    current: int = 0
    desired: int = 0
    load: float = 0.0
    capacity: float = 0.0
    needed: float = 0.0
    queue_time: float = 0.0

    def to_decision(self) -> Decision:
        return Decision(time=self.time, current=self.current, target=self.target, reason=self.reason)

    def to_snapshot(self, settings: AutoscalingSettings, decision: Decision | None = None) -> AutoscalerSnapshot:
        """The autoscaler figures a view draws (``decision`` defaults to this one)."""
        return AutoscalerSnapshot(
            load=self.load,
            capacity=self.serving_capacity,
            target_util=settings.target_util,
            queue_time=self.queue_time,
            target_queue_time=settings.effective_target_queue_time,
            target_workers=self.target,
            max_workers=settings.max_workers,
            last_decision=decision if decision is not None else self.to_decision(),
            active_workers=self.active,
            inactive_workers=len(self.inactive),
        )


@dataclass
class LoadMeter:
    """Arriving workload per second: the larger of a short and a long window's average.

    The short window lets a step show within a control period; the long one keeps a
    bursty stream from looking idle between calls (and so slows scale-down). The
    denominator is at least one second, and no more than the time since ``started_at``.
    """

    started_at: float
    short_s: float = LOAD_SHORT_WINDOW_S
    long_s: float = LOAD_LONG_WINDOW_S
    _events: deque[tuple[float, float]] = field(default_factory=deque, init=False, repr=False)

    def record(self, t: float, workload: float) -> None:
        self._events.append((t, workload))

    def rate(self, now: float) -> float:
        while self._events and self._events[0][0] <= now - self.long_s:
            self._events.popleft()
        elapsed = max(1.0, now - self.started_at)
        short = sum(w for t, w in self._events if t > now - self.short_s)
        long = sum(w for _, w in self._events)
        return max(short / min(self.short_s, elapsed), long / min(self.long_s, elapsed))


def decide(view: ScalingView, settings: AutoscalingSettings, state: PolicyState, *,
           scale_down_cooldown: float = SCALE_DOWN_COOLDOWN_S) -> tuple[Recommendation, PolicyState]:
    """The recommendation for ``view.now`` and the state to pass to the next call.

    ``scale_down_cooldown``: seconds the need must stay below the workers before idle ones are drained."""
    now = view.now
    first_seen = state.first_seen if state.first_seen is not None else now
    assumed = view.assumed_perf_score
    counted = [w for w in view.workers if w.state.starting or w.loaded]
    current = len(counted)
    starting = sum(1 for w in counted if w.state.starting)
    ready = [w for w in counted if w.state.serving]
    loaded = [w for w in counted if w.loaded]

    def perf(w: WorkerView) -> float:
        if w.perf_score is not None and w.perf_score > 0:
            return w.perf_score
        return assumed or 0.0

    capacity = sum(perf(w) for w in counted)

    # Idleness: no call arrived since the last request (or since the policy began) and none in flight.
    busy = view.queue_time > 0 or any(w.load > 0 for w in counted)
    idle_for = 0.0 if busy else now - (view.last_request_at if view.last_request_at is not None else first_seen)
    timeout = settings.effective_inactivity_timeout
    timed_out = timeout is not None and idle_for >= timeout
    load = 0.0 if timed_out else view.load

    need = _Need.of(load, settings)
    floor = settings.effective_cold_workers if timed_out else max(settings.effective_cold_workers, 1)
    cap, cap_name = settings.max_workers, "max_workers"
    if view.machine_max_workers is not None and view.machine_max_workers < cap:
        cap, cap_name = max(0, view.machine_max_workers), "machine_max_workers"

    def spare(remaining: float, w: WorkerView) -> bool:
        """Whether the others still cover the need, with headroom, without ``w``."""
        return remaining - perf(w) + _EPS >= need.needed * (1 + SCALE_DOWN_HEADROOM)

    if assumed is None:
        by_load = max(current, 1 if load > 0 else 0)
    elif capacity + _EPS < need.needed:
        by_load = current + math.ceil((need.needed - capacity) / assumed - _EPS)
    else:  # loaded workers the need could spare, slowest first (busy or not: they idle soon enough)
        by_load, remaining = current, capacity
        for w in sorted(loaded, key=perf):
            if not spare(remaining, w):
                break
            remaining -= perf(w)
            by_load -= 1

    tq = settings.effective_target_queue_time
    ready_capacity = sum(perf(w) for w in ready)
    wait = view.queue_time
    if view.queued is not None and ready_capacity > 0:
        wait = min(wait, view.queued / ready_capacity)  # what a call arriving now would wait
    # Aggressive, but once per cold start: not again until the workers already starting are ready.
    by_queue = max(len(ready) + 2, 2 * len(ready)) if ready and not starting and wait > tq else 0

    wanted = max(by_load, by_queue, floor)
    if by_queue == wanted and by_queue > max(by_load, floor):
        source = "queue"
    elif floor == wanted and floor > by_load:
        source = "floor"
    else:
        source = "load"
    desired = min(wanted, cap)
    capped = wanted > cap

    ctx = _Context(view, settings, need, load, capacity, starting, current, idle_for, timeout)
    below_since: float | None = None
    stop: tuple[str, ...] = ()
    start = 0
    if desired > current:
        start = desired - current
        cap_note = f", capped at {cap_name} {cap}" if capped else ""
        reason = f"{ctx.why(source, floor)} → +{fmt.plural(start)} (target {desired}{cap_note})"
    elif desired == current:
        if capped:
            reason = f"holding {current}: {ctx.why(source, floor)} but at {cap_name} {cap}"
        elif assumed is None and current:
            reason = f"holding {current}: no perf score yet (waiting for the first benchmark)"
        elif timed_out:
            reason = f"holding {current}: {ctx.idle_text()}"
        else:
            reason = f"holding {current}: {ctx.load_text('within')}"
    else:
        forced = max(0, current - cap)  # over the cap (max_workers lowered): drain at once
        below_since = state.below_since if state.below_since is not None else now
        held = now - below_since
        settled = timed_out or held >= scale_down_cooldown
        surplus = current - desired if settled else forced
        stop = _drain(counted, surplus, forced, capacity, perf, spare, now)
        after = current - len(stop)
        if not stop and surplus:
            reason = f"holding {current}: no idle worker to drain toward target {desired}"
        elif not stop:
            reason = (
                f"holding {current}: {ctx.load_text('<')}; -{current - desired}"
                f" in {fmt.seconds(scale_down_cooldown - held)} (cooldown {fmt.seconds(scale_down_cooldown)})"
            )
        elif forced and len(stop) <= forced:
            reason = f"{cap_name} {cap} < {fmt.plural(current)} → -{fmt.plural(len(stop))} (target {after})"
        elif timed_out:
            reason = f"{ctx.idle_text()} → {ctx.floor_scale_text(after)}"
        else:
            floor_note = f", {ctx.floor_name(floor)}" if source == "floor" and after == floor else ""
            reason = (
                f"{ctx.load_text('<')} for {fmt.seconds(held)}"
                f" → -{fmt.plural(len(stop))} (target {after}{floor_note})"
            )
        if after <= desired:
            below_since = None
    target = current + start - len(stop)
    keep = [w for w in loaded if w.id not in stop]
    # a starting worker with a score is an inactive one coming back: it covers its share of the active need
    returning = sum(w.perf_score or 0.0 for w in counted if w.state.starting and w.perf_score)
    # with the drain's headroom, so a worker is not held inactive that the load formula would keep loaded
    active = _active(keep, (need.active * (1 + SCALE_DOWN_HEADROOM) - returning) if not by_queue else math.inf, perf,
                     at_least_one=need.active > 0 or not timed_out)
    # serving workers become inactive only once fewer have sufficed for the cooldown (activation is immediate)
    serving_now = {w.id for w in keep if w.state.serving}
    fewer_since: float | None = None
    if serving_now - active:
        if stop and not timed_out:
            active |= serving_now  # a drain changes the workers now: the others serve another cooldown first
        else:
            fewer_since = state.fewer_active_since if state.fewer_active_since is not None else now
            if not (timed_out or now - fewer_since >= scale_down_cooldown):
                active |= serving_now
    rec = Recommendation(
        time=now,
        target=target,
        start=start,
        stop=stop,
        inactive=tuple(sorted(w.id for w in keep if w.id not in active)),
        active=len(active),
        serving_capacity=sum(perf(w) for w in keep if w.id in active),
        reason=reason,
        current=current,
        desired=desired,
        load=load,
        capacity=capacity,
        needed=need.needed,
        queue_time=view.queue_time,
    )
    return rec, PolicyState(first_seen=first_seen, below_since=below_since, target=target,
                            fewer_active_since=fewer_since)


def _active(loaded: list[WorkerView], need: float, perf: Callable[[WorkerView], float], *,
            at_least_one: bool) -> set[str]:
    """The loaded workers that serve: busy ones, then those already serving (fastest first), then inactive ones
    (fastest first), until their perf covers ``need``, and one at least when ``at_least_one`` (Vast keeps an
    active worker until the endpoint has been idle for its ``inactivity_timeout``, unless ``min_load`` needs
    more); a worker without a perf score yet serves (the need cannot be measured against it)."""
    chosen: set[str] = set()
    covered = 0.0
    order = sorted(loaded, key=lambda w: (w.load <= 0, w.state is WorkerState.INACTIVE, -perf(w), w.id))
    for w in order:
        if w.load > 0 or perf(w) <= 0 or covered + _EPS < need or (at_least_one and not chosen):
            chosen.add(w.id)
            covered += perf(w)
    return chosen


def _drain(
    counted: list[WorkerView],
    count: int,
    forced: int,
    capacity: float,
    perf: Callable[[WorkerView], float],
    spare: Callable[[float, WorkerView], bool],
    now: float,
) -> tuple[str, ...]:
    """Up to ``count`` idle workers to drain, slowest and longest idle first.

    The first ``forced`` go regardless (over the cap); the others only while the rest
    still cover the need.
    """
    idle = sorted(
        (w for w in counted if w.idle),
        key=lambda w: (perf(w), w.idle_since if w.idle_since is not None else now, w.id),
    )
    chosen: list[str] = []
    remaining = capacity
    for w in idle:
        if len(chosen) >= count or (len(chosen) >= forced and not spare(remaining, w)):
            break
        chosen.append(w.id)
        remaining -= perf(w)
    return tuple(chosen)


@dataclass(frozen=True)
class _Need:
    """The formula's capacity targets and which term binds."""

    active: float
    needed: float
    source: str  # "load" | "min_load" | "min_cold_load"

    @classmethod
    def of(cls, load: float, s: AutoscalingSettings) -> _Need:
        by_load = load / s.target_util
        active = max(s.min_load, by_load)
        loaded = active * max(1.0, s.cold_mult)
        if s.min_cold_load > loaded:
            return cls(active, s.min_cold_load, "min_cold_load")
        return cls(active, loaded, "load" if by_load >= s.min_load else "min_load")


@dataclass(frozen=True)
class _Context:
    """Builds the one-line reasons from the figures of one decision."""

    view: ScalingView
    settings: AutoscalingSettings
    need: _Need
    load: float
    capacity: float
    starting: int
    current: int
    idle_for: float
    timeout: float | None

    def capacity_text(self) -> str:
        text = f"capacity {fmt.rate(self.capacity)}"
        return f"{text} ({self.starting} starting)" if self.starting else text

    def why(self, source: str, floor: int) -> str:
        """Why more workers are wanted: the queue, a floor, or the load formula."""
        if source == "queue":
            tq = self.settings.effective_target_queue_time
            return f"queue {fmt.seconds(self.view.queue_time)} > target_queue_time {fmt.seconds(tq)}"
        if source == "floor":
            if floor == self.settings.effective_cold_workers:
                return f"cold_workers {floor} > {fmt.plural(self.current)}"
            return self.floor_name(floor)
        return self.load_text(">")

    def floor_name(self, floor: int) -> str:
        """What sets the floor: ``cold_workers N``, or the one worker kept until the inactivity timeout."""
        if floor == self.settings.effective_cold_workers:
            return f"cold_workers {floor}"
        if self.timeout is None:
            return "at least 1 worker without a positive inactivity_timeout"
        return f"at least 1 worker until idle {fmt.seconds(self.timeout)} (inactivity_timeout)"

    def load_text(self, relation: str) -> str:
        """``load 1,840/s > 0.9 × capacity 2,000/s`` and its min_load / min_cold_load / cold_mult forms."""
        s = self.settings
        if relation == "within":
            return f"load {fmt.rate(self.load)} within {self.capacity_text()}"
        mult = f" × cold_mult {s.cold_mult:g}" if s.cold_mult > 1 else ""
        if self.need.source == "min_cold_load":
            lhs = f"min_cold_load {fmt.rate(s.min_cold_load)}"
        elif self.need.source == "min_load":
            lhs = f"min_load {fmt.rate(s.min_load)}{mult}"
        else:
            lhs = f"load {fmt.rate(self.load)}{mult} {relation} {s.target_util:g} ×"
            return f"{lhs} {self.capacity_text()}"
        return f"{lhs} {relation} {self.capacity_text()}"

    def idle_text(self) -> str:
        return f"idle {fmt.seconds(self.idle_for)} ≥ inactivity_timeout {fmt.seconds(self.timeout or 0.0)}"

    def floor_scale_text(self, target: int) -> str:
        s = self.settings
        if target == 0:
            return "scale to zero"
        if target == s.effective_cold_workers:
            return f"scale to cold_workers {target}"
        name = "min_cold_load" if self.need.source == "min_cold_load" else "min_load"
        return f"scale to {fmt.plural(target)} for {name} {fmt.rate(getattr(s, name))}"
