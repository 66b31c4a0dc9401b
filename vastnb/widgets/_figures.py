"""The dashboard's numbers, each computed from one snapshot: what the HTML, the text and the charts show.

Kept apart from the drawing so that every figure a user reads is tested on snapshots alone
(``tests/widgets/test_figures.py``). The rules:

* **Used** is the truthful "how busy": the share of the recent past
  (:data:`vastnb.events.BUSY_WINDOW_S`) the serving workers spent running calls, whatever the
  functions are. ``None`` means not known (drawn as ``–``, never as 0 %).
* **Load** and **capacity** are what Vast's autoscaler sees: workload units per second, with
  capacity the serving workers' benchmark scores (workers still starting add nothing), all from
  *one* function's benchmark. They can disagree with *used* when other functions are called.
* A shut-down deployment reads stopped and zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..events import BUSY_WINDOW_S, DeploymentSnapshot, WorkerSnapshot, WorkerState

__all__ = ["ErrorGroup", "Figures", "error_groups", "error_line", "failures", "figures", "live_history", "stopped"]

LIVE_STATES = tuple(s.value for s in WorkerState if s.alive)


def stopped(snapshot: DeploymentSnapshot) -> bool:
    """True once the deployment is shut down (or shutting down): its figures read zero."""
    return snapshot.state in ("shut down", "shutting down")


@dataclass(frozen=True)
class Figures:
    """The headline numbers of one snapshot."""

    state: str
    alive: int  # workers not stopped or failed
    serving: int  # ready or busy
    busy: int  # serving workers running a call right now
    used: float | None  # mean share of the last BUSY_WINDOW_S s serving workers spent running calls; None: not known
    queued: int  # calls waiting for a worker
    load: float  # Vast's autoscaler: workload units per second arriving
    capacity: float  # Vast's autoscaler: serving workers' benchmark throughput, units per second
    load_share: float | None  # load ÷ capacity (None without capacity)
    target_util: float
    benchmark_function: str | None  # whose benchmark the scores, load and capacity are in
    queue_time: float
    target_queue_time: float | None
    calls: int
    cost: float | None  # dollars per hour of the billed workers (Vast); None when unknown or nothing is priced
    cost_unknown: bool  # Vast bills a worker whose price it did not report: say "unknown", never $0
    start_failures: int
    start_error: str | None

    @property
    def window(self) -> float:
        return BUSY_WINDOW_S

    @property
    def units_disagree(self) -> bool:
        """Used and load ÷ capacity tell different stories: the calls running are not the benchmarked function."""
        if self.used is None or self.load_share is None or self.benchmark_function is None:
            return False
        return abs(self.used - min(self.load_share, 1.0)) >= 0.4


# States whose GPU time Vast bills (its pricing page: Ready and Loading; Creating and Inactive bill storage only).
BILLED = (WorkerState.READY, WorkerState.BUSY, WorkerState.LOADING, WorkerState.BENCHMARKING, WorkerState.DRAINING)


def capacity(snapshot: DeploymentSnapshot) -> float:
    """Serving workers' perf scores summed (units/s); the autoscaler's own figure when no serving worker has a score."""
    if stopped(snapshot):
        return 0.0
    serving = [w for w in snapshot.workers if w.state.serving]
    if not serving:
        return 0.0
    scores = [w.perf_score for w in serving if w.perf_score is not None]
    return sum(scores) if scores else snapshot.autoscaler.capacity


def used_share(snapshot: DeploymentSnapshot) -> float | None:
    """The mean busy share of the serving workers that report one; 0 when shut down, None when not known."""
    if stopped(snapshot):
        return 0.0
    shares = [w.busy_share for w in snapshot.workers if w.state.serving and w.busy_share is not None]
    if not shares:
        return None
    return max(0.0, min(1.0, sum(shares) / len(shares)))


def figures(snapshot: DeploymentSnapshot) -> Figures:
    a = snapshot.autoscaler
    off = stopped(snapshot)
    cap = capacity(snapshot)
    load = 0.0 if off else a.load
    billed = [w.price_per_hour for w in snapshot.workers if w.state in BILLED]
    unknown = snapshot.backend == "vast" and any(p is None for p in billed)
    return Figures(
        state=snapshot.state,
        alive=sum(1 for w in snapshot.workers if w.state.alive),
        serving=sum(1 for w in snapshot.workers if w.state.serving),
        busy=sum(1 for w in snapshot.workers if w.state is WorkerState.BUSY),
        used=used_share(snapshot),
        queued=0 if off else snapshot.queued,
        load=load,
        capacity=cap,
        load_share=(load / cap) if cap > 0 else None,
        target_util=a.target_util,
        benchmark_function=snapshot.benchmark_function,
        queue_time=0.0 if off else a.queue_time,
        target_queue_time=a.target_queue_time,
        calls=sum(w.calls_done for w in snapshot.workers),
        cost=None if unknown or not any(p is not None for p in billed) else sum(p for p in billed if p is not None),
        cost_unknown=unknown,
        start_failures=0 if off else snapshot.start_failures,
        start_error=None if off else snapshot.start_error,
    )


# --- failures --------------------------------------------------------------------------------


def error_line(error: str) -> str:
    """The last non-empty line of a traceback: usually ``Type: message``."""
    lines = [ln.strip() for ln in error.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "error"


@dataclass(frozen=True)
class ErrorGroup:
    """Workers that failed the same way, told once."""

    summary: str  # "FileNotFoundError: [Errno 2] No such file or directory: 'weights.bin'"
    text: str  # the full error of the most recent one (the traceback)
    workers: tuple[str, ...]  # oldest first
    phase: str | None  # the start-up phase that failed, when known
    last: float  # when the most recent one failed

    @property
    def count(self) -> int:
        return len(self.workers)


def _failed_at(w: WorkerSnapshot) -> float:
    return w.stopped_at if w.stopped_at is not None else w.started_at


def error_groups(snapshot: DeploymentSnapshot) -> list[ErrorGroup]:
    """Failed workers grouped by what they said (and the phase they failed in), most recent group first."""
    groups: dict[tuple[str, str | None], list[WorkerSnapshot]] = {}
    for w in sorted((w for w in snapshot.workers if w.error), key=lambda w: (_failed_at(w), w.id)):
        groups.setdefault((error_line(w.error or ""), w.failed_phase), []).append(w)
    out = [
        ErrorGroup(summary=key[0], text=(ws[-1].error or "").rstrip(), workers=tuple(w.id for w in ws), phase=key[1],
                   last=_failed_at(ws[-1]))
        for key, ws in groups.items()
    ]
    return sorted(out, key=lambda g: -g.last)


def failures(snapshot: DeploymentSnapshot, since: float) -> list[tuple[float, str]]:
    """(time, "w3: Type: message") for each worker that failed at or after ``since``, oldest first."""
    out = [(_failed_at(w), f"{w.id}: {error_line(w.error or '')}") for w in snapshot.workers
           if w.state is WorkerState.ERROR and _failed_at(w) >= since]
    return sorted(out)


# --- history ---------------------------------------------------------------------------------


def live_history(snapshot: DeploymentSnapshot) -> list[tuple[float, dict[str, int]]]:
    """The worker-count history, counting live workers only (failed and stopped ones are not workers any more).

    It ends with the snapshot's own workers, so the chart's "now" agrees with the table; a shut-down
    deployment's history ends with zero workers at the moment it stopped.
    """
    out = [(t, {s: n for s, n in counts.items() if s in LIVE_STATES and n}) for t, counts in snapshot.history]
    if not out:
        return out
    if stopped(snapshot):
        if any(out[-1][1].values()):
            ends = [w.stopped_at for w in snapshot.workers if w.stopped_at is not None]
            end = max(ends) if ends else (snapshot.time or out[-1][0])
            out.append((max(end, out[-1][0]), {}))
        return out
    now: dict[str, int] = {}
    for w in snapshot.workers:
        if w.state.alive:
            now[w.state.value] = now.get(w.state.value, 0) + 1
    if now != out[-1][1] and snapshot.time > out[-1][0]:
        out.append((snapshot.time, now))
    return out
