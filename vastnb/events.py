"""The state model every backend publishes and every view reads.

A backend (local runtime or Vast) owns the truth; it publishes :class:`Event`
objects on an :class:`EventBus` whenever a worker changes state, a benchmark run
completes, the autoscaler decides, or the deployment shuts down. Views (widgets,
``%vast_status``) subscribe to the bus and redraw from
:meth:`DeploymentSnapshot` objects; they never reach into a backend's internals.

Snapshots are immutable, so a view may keep one while the backend moves on.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = [
    "BUSY_WINDOW_S",
    "AutoscalerSnapshot",
    "Decision",
    "DeploymentSnapshot",
    "Event",
    "EventBus",
    "EventKind",
    "WorkerSnapshot",
    "WorkerState",
]


#: Seconds of the recent past a worker's :attr:`WorkerSnapshot.busy_share` covers.
BUSY_WINDOW_S = 10.0


class WorkerState(str, enum.Enum):
    """Where a worker is in its life: provisioning → loading → benchmarking → ready ⇄ busy → draining → stopped, or error.

    ``inactive`` is a loaded worker kept out of routing: Vast's cold workers (stopped with the model on disk,
    GPU not billed, restarted when load needs them), and locally a worker the autoscaler holds in reserve.
    It is alive (it counts toward ``cold_workers``) but not serving."""

    PROVISIONING = "provisioning"
    LOADING = "loading"
    BENCHMARKING = "benchmarking"
    READY = "ready"
    BUSY = "busy"
    INACTIVE = "inactive"
    DRAINING = "draining"
    STOPPED = "stopped"
    ERROR = "error"

    @property
    def serving(self) -> bool:
        """True when the worker takes calls (ready or busy)."""
        return self in (WorkerState.READY, WorkerState.BUSY)

    @property
    def starting(self) -> bool:
        """True while the worker is on its way to ready."""
        return self in (WorkerState.PROVISIONING, WorkerState.LOADING, WorkerState.BENCHMARKING)

    @property
    def alive(self) -> bool:
        """True for every state but stopped and error."""
        return self not in (WorkerState.STOPPED, WorkerState.ERROR)


class EventKind(str, enum.Enum):
    WORKER = "worker"  # a worker's snapshot changed (state, load, score, code version, error)
    BENCHMARK = "benchmark"  # one benchmark run finished on a worker (data: run, throughput)
    DECISION = "decision"  # the autoscaler decided (data: decision)
    AUTOSCALER = "autoscaler"  # load/capacity/queue figures updated
    CODE = "code"  # remote code or contexts changed (data: functions, version)
    LOG = "log"  # a line from a worker's log (data: line)
    SHUTDOWN = "shutdown"  # the deployment is shut down; no events follow


@dataclass(frozen=True)
class WorkerSnapshot:
    """One worker as a view sees it.

    ``perf_score`` is the benchmark throughput in workload units per second (the
    best run, as Vast scores it). ``load`` is the workload of calls in flight or
    queued on the worker, ``queue`` their count. ``phases`` maps a cold-start
    phase name (``"process start"``, ``"installs"``, ``"context Model"``,
    ``"benchmark"``) to seconds spent in it, in the order they happened.
    """

    id: str
    state: WorkerState
    gpu: str | None = None  # e.g. "H100_SXM #0", None for a CPU worker
    perf_score: float | None = None
    load: float = 0.0
    queue: int = 0
    code_version: str = ""
    started_at: float = 0.0
    ready_at: float | None = None
    stopped_at: float | None = None
    phases: tuple[tuple[str, float], ...] = ()
    benchmark_runs: tuple[float, ...] = ()
    error: str | None = None
    pid: int | None = None
    gpu_memory_mb: float | None = None
    calls_done: int = 0
    price_per_hour: float | None = None  # Vast workers; None locally
    busy_share: float | None = None  # share of the recent past (BUSY_WINDOW_S) spent running calls: how busy, truly
    failed_phase: str | None = None  # the start-up phase that failed ("process start", "context Model", "benchmark")

    def uptime(self, now: float | None = None) -> float:
        end = self.stopped_at if self.stopped_at is not None else (time.time() if now is None else now)
        return max(0.0, end - self.started_at)


@dataclass(frozen=True)
class Decision:
    """One autoscaler decision: the target worker count and the reason, in one line."""

    time: float
    current: int
    target: int
    reason: str


@dataclass(frozen=True)
class AutoscalerSnapshot:
    """Load and capacity (of serving workers) in workload units per second; queue times in seconds."""

    load: float = 0.0
    capacity: float = 0.0
    target_util: float = 0.9
    queue_time: float = 0.0
    target_queue_time: float | None = None
    target_workers: int = 0
    max_workers: int = 0
    last_decision: Decision | None = None
    active_workers: int | None = None  # loaded workers that serve (None: not known)
    inactive_workers: int | None = None  # loaded workers held out of routing (Vast's inactive cold workers)


@dataclass(frozen=True)
class DeploymentSnapshot:
    """Everything a view draws, at one instant."""

    name: str
    backend: str
    state: str  # "declared" | "starting" | "running" | "failing" (workers cannot start) | "shut down"
    workers: tuple[WorkerSnapshot, ...] = ()
    autoscaler: AutoscalerSnapshot = field(default_factory=AutoscalerSnapshot)
    decisions: tuple[Decision, ...] = ()  # most recent last
    history: tuple[tuple[float, dict[str, int]], ...] = ()  # (time, {state: count}) samples
    code_version: str = ""
    time: float = 0.0
    endpoint_id: int | None = None  # the Vast endpoint serving the deployment (backend vast)
    queued: int = 0  # calls waiting for a worker
    benchmark_function: str | None = None  # the function whose benchmark the perf scores (and capacity) come from
    start_failures: int = 0  # workers that failed to start since the last one that did
    start_error: str | None = None  # why the last one failed (first line of the error)


@dataclass(frozen=True)
class Event:
    kind: EventKind
    time: float
    worker: WorkerSnapshot | None = None
    data: dict[str, Any] = field(default_factory=dict)


class EventBus:
    """Thread-safe publish/subscribe. Subscribers run in the publisher's thread and must not block."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[Event], None]] = []

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; returns a function that unsubscribes."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:  # a broken view must not break the runtime
                import logging

                logging.getLogger("vastnb").exception("event subscriber failed")
