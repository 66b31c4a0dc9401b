"""One worker process as the runtime sees it: its process, connection, state and calls in flight."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ...events import BUSY_WINDOW_S, WorkerSnapshot, WorkerState
from ...spec import FunctionSpec
from ...wire import Connection, Payload

__all__ = ["BATCH_SECONDS", "Call", "GroupTimer", "RecentCount", "WorkerHandle"]


Sink = Callable[[str, str], None]


class GroupTimer:
    """One timer for calls queued together with the same timeout (a map's): when it fires it expires those still
    open, each as its own timer would have; it is cancelled when the last of them is done."""

    __slots__ = ("handle", "open")

    def __init__(self, handle: asyncio.TimerHandle, calls: int) -> None:
        self.handle = handle
        self.open = calls

    def cancel(self) -> None:
        self.open -= 1
        if self.open <= 0:
            self.handle.cancel()


BATCH_SECONDS = 0.01  # the window of recent completions that sizes a worker's share of a map


class RecentCount:
    """How many calls a worker finished over the last BATCH_SECONDS (O(1) per call, amortized)."""

    __slots__ = ("marks", "sum")

    def __init__(self) -> None:
        self.marks: collections.deque[tuple[float, int]] = collections.deque()
        self.sum = 0

    def add(self, now: float, count: int) -> None:
        self.marks.append((now, count))
        self.sum += count

    def total(self, now: float) -> int:
        while self.marks and self.marks[0][0] < now - BATCH_SECONDS:
            self.sum -= self.marks.popleft()[1]
        return self.sum


@dataclass(eq=False)
class Call:
    id: int
    fn: FunctionSpec
    payload: Payload
    workload: float
    future: "concurrent.futures.Future[Any]"
    sink: Sink | None = None
    attempts: int = 0
    worker: "WorkerHandle | None" = None
    timer: "asyncio.TimerHandle | GroupTimer | None" = None
    created: float = field(default_factory=time.monotonic)
    kind: str = "call"
    stamps: "dict[str, float] | None" = None  # hop -> time.perf_counter(), with VASTNB_TRACE_CALLS=1


@dataclass(eq=False)
class WorkerHandle:
    id: str
    index: int
    gpu: Any = None  # vastnb.gpus.LocalGpu or None
    gpu_label: str | None = None
    state: WorkerState = WorkerState.PROVISIONING
    process: asyncio.subprocess.Process | None = None
    conn: Connection | None = None
    port: int | None = None  # where it serves on 127.0.0.1 (the direct path connects there too)
    perf_score: float | None = None
    inflight: dict[int, Call] = field(default_factory=dict)
    load: float = 0.0
    code: set[str] = field(default_factory=set)
    contexts: dict[str, str] = field(default_factory=dict)
    phases: list[tuple[str, float]] = field(default_factory=list)
    bench_runs: list[float] = field(default_factory=list)
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    stopped_at: float | None = None
    last_seen: float = field(default_factory=time.monotonic)
    calls_done: int = 0
    gpu_memory_mb: float | None = None
    replies: dict[int, asyncio.Future] = field(default_factory=dict)  # control requests waiting for their answer
    sinks: dict[int, Any] = field(default_factory=dict)  # output of control requests (cells)
    log: collections.deque = field(default_factory=lambda: collections.deque(maxlen=2000))
    stopping: bool = False
    inactive: bool = False  # loaded but kept out of routing: the autoscaler's Recommendation.inactive
    ping_sent: float | None = None  # a stats Ping on the connection waits for its Pong (never a hang verdict)
    idle_since: float | None = None  # monotonic time the worker last became idle; None while busy
    tasks: list[asyncio.Task] = field(default_factory=list)
    # health: the worker's heartbeat thread answers pings on its stdin/stdout pipes, off its event loop
    heartbeat_at: float | None = None  # monotonic time of the last heartbeat answer (None before serving)
    ping_written: float = 0.0
    loop_lag: float = 0.0  # seconds the worker's event loop had not run, as of the last heartbeat
    busy_requests: int = 0  # requests running on the worker, as of the last heartbeat
    failed_phase: str | None = None  # the start-up phase that failed
    # how busy: spans of time with calls on the worker (monotonic), kept for BUSY_WINDOW_S
    busy_since: float | None = None
    busy_spans: collections.deque = field(default_factory=lambda: collections.deque(maxlen=4096))
    serving_since: float | None = None  # monotonic time the worker became ready
    service_mark: float | None = None  # monotonic time its current call began taking the worker's time
    recent_done: RecentCount = field(default_factory=RecentCount)  # calls finished lately (sizes its window)

    def mark_busy(self, now: float) -> None:
        """A call went to the worker (start of a busy span if it was idle)."""
        if self.busy_since is None:
            self.busy_since = now
            self.service_mark = now

    def mark_idle(self, now: float) -> None:
        """The worker has no call left (end of its busy span)."""
        if self.busy_since is not None:
            self.busy_spans.append((self.busy_since, now))
            self.busy_since = None
        self.service_mark = None
        cutoff = now - BUSY_WINDOW_S
        while self.busy_spans and self.busy_spans[0][1] < cutoff:
            self.busy_spans.popleft()

    def busy_share(self, now: float) -> float | None:
        """Share of the last BUSY_WINDOW_S seconds (or of the time since it became ready, if shorter) with calls
        on the worker: 1.0 while one call runs the whole time, however long it blocks."""
        if self.serving_since is None:
            return None if self.state.alive else 0.0
        if not self.state.alive:
            return 0.0
        start = max(now - BUSY_WINDOW_S, self.serving_since)
        span = now - start
        if span <= 0:
            return 1.0 if self.busy_since is not None else 0.0
        since = self.busy_since
        busy = sum(max(0.0, min(e, now) - max(b, start)) for b, e in list(self.busy_spans))  # views' threads too
        if since is not None:
            busy += max(0.0, now - max(since, start))
        return min(1.0, busy / span)

    @property
    def serving(self) -> bool:
        return self.state.serving and self.conn is not None and not self.conn.closed and not self.stopping

    @property
    def shown_state(self) -> WorkerState:
        """Its state as views and the autoscaler see it: a ready worker held out of routing is inactive."""
        return WorkerState.INACTIVE if self.inactive and self.state is WorkerState.READY else self.state

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def snapshot(self, code_version: str = "", now: float | None = None) -> WorkerSnapshot:
        return WorkerSnapshot(
            id=self.id,
            state=self.shown_state,
            gpu=self.gpu_label,
            perf_score=self.perf_score,
            load=self.load,
            queue=len(self.inflight),
            code_version=code_version,
            started_at=self.started_at,
            ready_at=self.ready_at,
            stopped_at=self.stopped_at,
            phases=tuple(self.phases),
            benchmark_runs=tuple(self.bench_runs),
            error=self.error,
            pid=self.pid,
            gpu_memory_mb=self.gpu_memory_mb,
            calls_done=self.calls_done,
            busy_share=self.busy_share(time.monotonic() if now is None else now),
            failed_phase=self.failed_phase,
        )
