"""A simulated endpoint on a simulated clock, scaled by the same :func:`decide` the runtime uses.

The model: a worker started at ``t`` is provisioning for the first 20 % of
``cold_start_s``, loading until 80 %, benchmarking until 100 %, then ready and serving
``perf_score`` workload units per second (its score becomes known then). A loaded worker
the policy names in :attr:`~vastnb.autoscaling.Recommendation.inactive` stops serving at
once and is inactive (Vast's cold worker: loaded, GPU not billed); activated again, it
loads for ``activation_s`` (default: the last 80 % of a cold start, the container
restarts with its model on disk) before it serves. ``worker_seconds`` counts the GPU time
Vast bills (every worker but the inactive ones); ``inactive_seconds`` the rest. Requests join
one FIFO queue as a fluid: rate traces arrive evenly within each step, recorded calls at
their exact times, and ready workers drain the queue at their summed perf (so calls are
worked through one after another; a call waits until its first unit is served). Work goes to
the quickest ready workers first, so a lightly loaded endpoint has idle workers the
policy may drain. The queue time is how long the oldest waiting work has waited. The policy runs every ``control_period_s``, sees the arriving load through
:class:`LoadMeter`, and its starts and drains apply at once.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, NamedTuple

from ..errors import ConfigurationError
from ..events import Decision, WorkerState
from . import _format as fmt
from ._policy import LoadMeter, PolicyState, ScalingView, WorkerView, decide
from ._settings import AutoscalingSettings
from ._trace import LoadTrace

__all__ = ["Comparison", "SimulationResult", "SimulationStep", "compare", "simulate"]

_EPS = 1e-9


class SimulationStep(NamedTuple):
    """One control period: the state at ``time`` and the load arriving until the next step."""

    time: float
    workers: dict[str, int]  # WorkerState value -> count, alive workers only
    load: float  # workload units/s arriving during this step
    capacity: float  # perf of ready workers at ``time`` (units/s)
    queue_time: float  # wait of the oldest waiting work at ``time`` (s)
    target: int
    reason: str | None  # the decision's reason when the target changed at this step


@dataclass
class _SimWorker:
    id: str
    started_at: float
    ready_at: float
    perf: float
    assigned: float = 0.0
    idle_since: float | None = None
    inactive: bool = False
    active_at: float = 0.0  # when an activated inactive worker serves again

    def serving(self, t: float) -> bool:
        return t + _EPS >= self.ready_at and not self.inactive and t + _EPS >= self.active_at

    def state(self, t: float, cold_start_s: float) -> WorkerState:
        if t + _EPS >= self.ready_at:
            if self.inactive:
                return WorkerState.INACTIVE
            if t + _EPS < self.active_at:
                return WorkerState.LOADING
            return WorkerState.BUSY if self.assigned > _EPS else WorkerState.READY
        elapsed = t - self.started_at
        if elapsed < 0.2 * cold_start_s:
            return WorkerState.PROVISIONING
        if elapsed < 0.8 * cold_start_s:
            return WorkerState.LOADING
        return WorkerState.BENCHMARKING


class _FluidQueue:
    """One FIFO queue of work as a fluid, drained at the ready workers' summed perf.

    ``points`` are the breakpoints of the cumulative arrivals A(t); a recorded call is a
    vertical pair ``(t, c), (t, c + workload)``. A call waits until its first unit is
    served; work from a rate trace is a fluid whose every unit waits on its own.
    """

    def __init__(self) -> None:
        self.points: deque[tuple[float, float]] = deque([(0.0, 0.0)])
        self.arrived = 0.0
        self.served = 0.0

    @property
    def backlog(self) -> float:
        return max(0.0, self.arrived - self.served)

    def arrive_point(self, t: float, amount: float) -> None:
        self.points.append((t, self.arrived))
        self.arrived += amount
        self.points.append((t, self.arrived))

    def run(self, a: float, b: float, rate: float, capacity: float) -> float:
        """Arrivals at ``rate`` and service at ``capacity`` over ``[a, b)``; the longest wait that ended in it."""
        self._prune()
        h, start, backlog = b - a, self.served, self.backlog
        if capacity <= 0:
            served, busy_until = 0.0, a
        elif rate >= capacity or backlog > (capacity - rate) * h:
            served, busy_until = capacity * h, b
        else:  # the queue empties within the step
            served, busy_until = backlog + rate * h, a + backlog / (capacity - rate)
        if rate > 0:
            self.points.append((a, self.arrived))
            self.arrived += rate * h
            self.points.append((b, self.arrived))
        self.served = min(self.arrived, start + served)
        if busy_until <= a:
            return 0.0
        return self._longest_wait(a, start, start + capacity * (busy_until - a), capacity)

    def _longest_wait(self, a: float, start: float, end: float, capacity: float) -> float:
        """Longest wait of the work whose service began in ``[start, end)`` (served at ``capacity`` from ``a``)."""
        longest = 0.0
        for (t0, c0), (t1, c1) in pairwise(self.points):
            if c0 >= end:
                break
            if c1 <= start or c1 == c0:
                continue
            if t0 == t1:  # a call: it waited until its first unit was served
                if c0 >= start:
                    longest = max(longest, a + (c0 - start) / capacity - t0)
                continue
            for x in (max(c0, start), min(c1, end)):  # fluid: the wait is linear between the ends
                longest = max(longest, a + (x - start) / capacity - (t0 + (x - c0) / (c1 - c0) * (t1 - t0)))
        return longest

    def _prune(self) -> None:
        while len(self.points) > 2 and self.points[1][1] <= self.served:
            self.points.popleft()

    def head_age(self, t: float) -> float:
        """How long the oldest work not yet started has waited at ``t`` (0 when none waits)."""
        self._prune()
        if self.backlog <= _EPS * max(1.0, self.arrived):
            return 0.0
        for (t0, c0), (t1, c1) in pairwise(self.points):
            if c1 <= self.served or c1 == c0:
                continue
            if t0 == t1:
                if self.served <= c0 + _EPS:
                    return max(0.0, t - t0)
                continue  # this call is being served; the next arrival is the head
            x = max(self.served, c0)
            return max(0.0, t - (t0 + (x - c0) / (c1 - c0) * (t1 - t0)))
        return 0.0


@dataclass
class SimulationResult:
    """What a simulated run did: a step per control period, the decisions, and key figures."""

    trace: LoadTrace
    settings: AutoscalingSettings
    perf_score: float
    cold_start_s: float
    control_period_s: float
    timeline: list[SimulationStep] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    max_queue_time: float = 0.0
    worker_seconds: float = 0.0  # GPU time Vast bills: every worker but the inactive ones
    inactive_seconds: float = 0.0  # time workers spent inactive (storage billed, GPU not)
    arrived: float = 0.0
    served: float = 0.0

    @property
    def peak_workers(self) -> int:
        return max((sum(s.workers.values()) for s in self.timeline), default=0)

    @property
    def backlog(self) -> float:
        """Workload still queued when the trace ended."""
        return max(0.0, self.arrived - self.served)

    def time_to_capacity(self, after_s: float) -> float | None:
        """Seconds from ``after_s`` until ready capacity first covers the arriving load; None if never."""
        for step in self.timeline:
            if step.time + _EPS >= after_s and step.capacity + _EPS >= step.load:
                return max(0.0, step.time - after_s)
        return None

    def summary(self) -> dict[str, Any]:
        """The key figures, for tables and tests."""
        mark = self.trace.marks[0] if self.trace.marks else None
        return {
            "peak workers": self.peak_workers,
            "worker-s": self.worker_seconds,
            "max queue s": self.max_queue_time,
            "to capacity s": self.time_to_capacity(mark) if mark is not None else None,
            "decisions": len(self.decisions),
            "backlog": self.backlog,
        }

    def to_text(self, rows: int = 30) -> str:
        from ._report import result_text

        return result_text(self, rows)

    def _repr_html_(self) -> str:
        from ._report import result_html

        return result_html(self)

    def __repr__(self) -> str:
        return (
            f"<SimulationResult {self.trace.name!r}: peak {self.peak_workers} workers, "
            f"{fmt.number(self.worker_seconds)} worker-s, max queue {fmt.seconds(self.max_queue_time)}>"
        )


def simulate(
    trace: LoadTrace,
    settings: AutoscalingSettings | None = None,
    *,
    perf_score: float,
    cold_start_s: float,
    control_period_s: float = 1.0,
    workload_per_request: float = 100.0,
    initial_workers: int | None = None,
    machine_max_workers: int | None = None,
    prior_perf_score: float | None = None,
    activation_s: float | None = None,
) -> SimulationResult:
    """Run ``trace`` through a simulated endpoint scaled by :func:`decide` with ``settings``.

    ``perf_score`` is each worker's throughput (workload units/s); ``initial_workers``
    start ready with a known score (None: start from nothing, as a fresh deployment
    does). ``prior_perf_score`` is what the policy assumes before any benchmark.
    ``activation_s`` is how long an inactive worker takes to serve again (default: 80 %
    of ``cold_start_s``: everything but recruiting a machine).
    """
    settings = settings if settings is not None else AutoscalingSettings()
    _check_positive("perf_score", perf_score)
    _check_positive("control_period_s", control_period_s)
    _check_positive("workload_per_request", workload_per_request)
    if not (math.isfinite(cold_start_s) and cold_start_s >= 0):
        raise ConfigurationError(f"`cold_start_s` must be a non-negative number. Instead got {cold_start_s!r}.")
    if activation_s is None:
        activation_s = 0.8 * cold_start_s
    elif isinstance(activation_s, bool) or not isinstance(activation_s, (int, float)) or not (
            math.isfinite(activation_s) and activation_s >= 0):
        raise ConfigurationError(f"`activation_s` must be a non-negative number or None. Instead got {activation_s!r}.")
    sim = _Simulation(trace, settings, perf_score, cold_start_s, control_period_s, workload_per_request)
    sim.activation_s = float(activation_s)
    for _ in range(initial_workers or 0):
        sim.start(0.0, ready=True)
    return sim.run(machine_max_workers, prior_perf_score)


def _check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"`{name}` must be a positive number. Instead got {value!r}.")


class _Simulation:
    def __init__(
        self,
        trace: LoadTrace,
        settings: AutoscalingSettings,
        perf: float,
        cold_start_s: float,
        period: float,
        workload_per_request: float,
    ) -> None:
        self.trace, self.settings, self.perf = trace, settings, perf
        self.cold_start_s, self.period, self.wpr = cold_start_s, period, workload_per_request
        self.workers: dict[str, _SimWorker] = {}
        self.queue = _FluidQueue()
        self.meter = LoadMeter(started_at=0.0)
        self.last_request_at: float | None = None
        self.calls_done = 0
        self.serial = 0
        self.max_queue_time = 0.0
        self.activation_s = 0.0

    def start(self, t: float, *, ready: bool = False) -> None:
        self.serial += 1
        ready_at = t if ready else t + self.cold_start_s
        self.workers[f"w{self.serial}"] = _SimWorker(f"w{self.serial}", t, ready_at, self.perf, idle_since=ready_at)

    def run(self, machine_max_workers: int | None, prior: float | None) -> SimulationResult:
        result = SimulationResult(self.trace, self.settings, self.perf, self.cold_start_s, self.period)
        state = PolicyState()
        previous: int | None = None
        steps = math.ceil(self.trace.duration_s / self.period - _EPS)
        for k in range(steps):
            t = k * self.period
            queue_time = self.queue.head_age(t)
            view = ScalingView(
                now=t,
                workers=tuple(self._view(w, t) for w in self.workers.values()),
                load=self.meter.rate(t),
                queue_time=queue_time,
                queued=self.queue.backlog,
                last_request_at=self.last_request_at,
                machine_max_workers=machine_max_workers,
                prior_perf_score=prior,
            )
            rec, state = decide(view, self.settings, state)
            for wid in rec.stop:
                del self.workers[wid]
            for _ in range(rec.start):
                self.start(t)
            self._hold(rec.inactive, t)
            changed = rec.target != previous
            if changed:
                result.decisions.append(rec.to_decision())
            previous = rec.target
            capacity = sum(w.perf for w in self.workers.values() if w.serving(t))
            counts: dict[str, int] = {}
            for w in self.workers.values():
                key = w.state(t, self.cold_start_s).value
                counts[key] = counts.get(key, 0) + 1
            arrived_before = self.queue.arrived
            end = min((k + 1) * self.period, self.trace.duration_s)
            self._advance(t, end)
            held = sum(1 for w in self.workers.values() if w.inactive)
            result.worker_seconds += (len(self.workers) - held) * (end - t)
            result.inactive_seconds += held * (end - t)
            load = (self.queue.arrived - arrived_before) / (end - t) if end > t else 0.0
            result.timeline.append(
                SimulationStep(t, counts, load, capacity, queue_time, rec.target, rec.reason if changed else None)
            )
        result.max_queue_time = self.max_queue_time
        result.arrived, result.served = self.queue.arrived, self.queue.served
        return result

    def _hold(self, inactive: tuple[str, ...], t: float) -> None:
        """Apply the policy's inactive set: those stop serving now, the others serve (after ``activation_s``)."""
        held = set(inactive)
        for w in self.workers.values():
            if w.id in held and w.ready_at <= t + _EPS:
                w.inactive, w.assigned, w.idle_since = True, 0.0, None
            elif w.inactive:
                w.inactive, w.active_at = False, t + self.activation_s
                w.idle_since = w.active_at

    def _view(self, w: _SimWorker, t: float) -> WorkerView:
        ready = w.ready_at <= t + _EPS
        return WorkerView(
            w.id,
            w.state(t, self.cold_start_s),
            perf_score=w.perf if ready else None,
            load=w.assigned,
            idle_since=w.idle_since if ready else None,
        )

    def _advance(self, t0: float, t1: float) -> None:
        trace, queue = self.trace, self.queue
        cuts = {t0, t1}
        cuts.update(w.ready_at for w in self.workers.values() if t0 < w.ready_at < t1)
        cuts.update(w.active_at for w in self.workers.values() if t0 < w.active_at < t1)
        if trace.rps:
            k = math.floor(t0 / trace.step_s + _EPS) + 1
            while k * trace.step_s < t1 - _EPS:
                cuts.add(k * trace.step_s)
                k += 1
        calls = trace.calls
        i = self.calls_done
        while i < len(calls) and calls[i][0] < t1:
            cuts.add(max(calls[i][0], t0))
            i += 1
        served_before = queue.served
        edges = sorted(cuts)
        for a, b in pairwise(edges):
            while self.calls_done < len(calls) and calls[self.calls_done][0] <= a + _EPS:
                workload = calls[self.calls_done][1]
                queue.arrive_point(a, workload)
                self.meter.record(a, workload)
                self.last_request_at = a
                self.calls_done += 1
            rate = trace.rps_at(a + _EPS) * self.wpr
            capacity = sum(w.perf for w in self.workers.values() if w.serving(a))
            waited = queue.run(a, b, rate, capacity)
            if rate > 0:
                self.meter.record(b, rate * (b - a))
                self.last_request_at = b
            self.max_queue_time = max(self.max_queue_time, waited, queue.head_age(b))
        self._assign(queue.served - served_before, t0, t1)

    def _assign(self, served: float, t0: float, t1: float) -> None:
        """Hand the period's work to the quickest ready workers first (ties: oldest first)."""
        ready = sorted(
            (w for w in self.workers.values() if w.serving(t1 - 2 * _EPS)), key=lambda w: (-w.perf, w.started_at, w.id)
        )
        left = served
        for w in ready:
            share = min(left, w.perf * (t1 - max(t0, w.ready_at, w.active_at)))
            left -= share
            if share > _EPS:
                w.assigned, w.idle_since = share / (t1 - t0), None
            else:
                if w.assigned > _EPS or w.idle_since is None:
                    w.idle_since = max(t0, w.ready_at)
                w.assigned = 0.0


@dataclass
class Comparison:
    """Key figures of one trace under several candidate settings (``rows`` in candidate order)."""

    trace: LoadTrace
    results: dict[str, SimulationResult]

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [{"settings": name, **r.summary()} for name, r in self.results.items()]

    def to_text(self) -> str:
        from ._report import comparison_text

        return comparison_text(self)

    def _repr_html_(self) -> str:
        from ._report import comparison_html

        return comparison_html(self)

    def __repr__(self) -> str:
        return self.to_text()


def compare(
    trace: LoadTrace,
    candidates: Mapping[str, AutoscalingSettings | Mapping[str, Any]],
    **simulate_kwargs: Any,
) -> Comparison:
    """Simulate ``trace`` once per candidate; a mapping of parameters is merged onto the defaults."""
    results = {}
    for name, candidate in candidates.items():
        settings = candidate if isinstance(candidate, AutoscalingSettings) else AutoscalingSettings().merged(**candidate)
        results[name] = simulate(trace, settings, **simulate_kwargs)
    return Comparison(trace, results)
