"""Vast's view of an endpoint's workers, in vastnb's state model.

The poller reads the endpoint and its workers through the SDK; frame replies
add what only vastnb knows (which code a worker has, its pid, calls served).
:class:`StatusTracker` merges both into :class:`~vastnb.events.WorkerSnapshot`
objects and publishes the same events as the local runtime, so ``%vast_status``
and the widgets work unchanged.

Vast worker states (docs: IDLE, LOADING, MODEL_LOADING, CREATING, …; UI names
such as Ready, Inactive, Updating) map onto :class:`~vastnb.events.WorkerState`
by :data:`VAST_STATES`; an idle worker with load in flight counts as busy.
``perf`` (measured throughput × reliability, as Vast routes by it) becomes
``perf_score``; the price per hour comes from the worker row when Vast sends one.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ...events import (
    AutoscalerSnapshot,
    DeploymentSnapshot,
    Event,
    EventBus,
    EventKind,
    WorkerSnapshot,
    WorkerState,
)

__all__ = ["StatusTracker", "VAST_STATES", "map_state"]

VAST_STATES: dict[str, WorkerState] = {
    **dict.fromkeys(("creating", "created", "pending", "scheduling", "starting", "rebooting", "update_rebooting",
                     "update_starting", "unknown", "new"), WorkerState.PROVISIONING),
    **dict.fromkeys(("loading", "model_loading", "updating", "update_ready", "downloading"), WorkerState.LOADING),
    **dict.fromkeys(("benchmarking", "benchmark"), WorkerState.BENCHMARKING),
    **dict.fromkeys(("idle", "ready", "loaded"), WorkerState.READY),
    **dict.fromkeys(("running", "busy", "working"), WorkerState.BUSY),
    **dict.fromkeys(("stopping", "destroying", "draining"), WorkerState.DRAINING),
    **dict.fromkeys(("stopped", "inactive", "offline", "destroyed", "exited"), WorkerState.STOPPED),
    **dict.fromkeys(("error", "errored", "failed"), WorkerState.ERROR),
}
REPLY_TRUST = 30.0  # seconds a frame reply outweighs a "still starting" from Vast's worker list
_PRICE_KEYS = ("dph_total", "dph", "price", "price_per_hour", "cost_per_hour")


def map_state(status: str, load: float = 0.0, working: int = 0) -> WorkerState:
    """The vastnb state of a Vast worker status string (unknown ones count as provisioning)."""
    state = VAST_STATES.get(status.strip().lower().replace(" ", "_"), WorkerState.PROVISIONING)
    if state == WorkerState.READY and (load > 0 or working > 0):
        return WorkerState.BUSY
    if state == WorkerState.BUSY and load <= 0 and working <= 0:
        return WorkerState.READY
    return state


def _number(raw: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        value = raw.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


@dataclass
class WorkerView:
    """One worker, merged from Vast's worker list and from vastnb's frame replies."""

    id: str
    state: WorkerState = WorkerState.PROVISIONING
    status: str = ""
    gpu: str | None = None
    perf_score: float | None = None
    load: float = 0.0
    queue: int = 0
    price_per_hour: float | None = None
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    stopped_at: float | None = None
    error: str | None = None
    pid: int | None = None
    calls_done: int = 0
    code: set[str] = field(default_factory=set)
    listed: bool = False  # seen in Vast's worker list (not only in a reply)
    replied_at: float = 0.0  # last frame reply from it (Vast's list can lag behind)

    def snapshot(self, code_version: str) -> WorkerSnapshot:
        return WorkerSnapshot(
            id=self.id, state=self.state, gpu=self.gpu, perf_score=self.perf_score, load=self.load, queue=self.queue,
            code_version=code_version, started_at=self.started_at, ready_at=self.ready_at,
            stopped_at=self.stopped_at, error=self.error, pid=self.pid, calls_done=self.calls_done,
            price_per_hour=self.price_per_hour,
        )


class StatusTracker:
    """Thread-safe merged view of the workers; publishes WORKER / AUTOSCALER / CODE events on ``events``."""

    def __init__(self, events: EventBus) -> None:
        self.events = events
        self.workers: dict[str, WorkerView] = {}
        self.lock = threading.Lock()
        self.history: collections.deque[tuple[float, dict[str, int]]] = collections.deque(maxlen=1200)
        self.endpoint: Any = None  # EndpointData.config of the last poll
        self.code_version: Callable[[WorkerView], str] = lambda view: ""

    # ------------------------------------------------------------------ inputs
    def apply_poll(self, rows: list[tuple[Any, dict[str, Any]]], endpoint: Any = None) -> bool:
        """Fold one poll of Vast's worker list in; True when any worker changed."""
        now = time.time()
        changed: list[WorkerView] = []
        with self.lock:
            if endpoint is not None:
                self.endpoint = endpoint
            seen = set()
            for worker, raw in rows:
                wid = str(worker.id)
                seen.add(wid)
                view = self.workers.get(wid)
                if view is None:
                    view = self.workers[wid] = WorkerView(id=wid, started_at=worker.started_at or now)
                before = view.snapshot("")
                view.listed = True
                view.status = worker.status
                state = map_state(worker.status, worker.cur_load, worker.reqs_working)
                if state.starting and view.state.serving and now - view.replied_at < REPLY_TRUST:
                    state = view.state  # it answered a frame moments ago: Vast's list has not caught up
                view.state = state
                view.perf_score = worker.perf if worker.perf > 0 else (worker.measured_perf or None)
                view.load = worker.cur_load
                view.queue = worker.reqs_working
                view.price_per_hour = _number(raw, _PRICE_KEYS)
                gpu = raw.get("gpu_name")
                if isinstance(gpu, str) and gpu:
                    n = raw.get("num_gpus")
                    view.gpu = f"{n}x {gpu}" if isinstance(n, int) and n > 1 else gpu
                if worker.started_at:
                    view.started_at = worker.started_at
                if view.state.serving and view.ready_at is None:
                    view.ready_at = worker.loaded_at or now
                message = raw.get("error_msg") or raw.get("status_msg")
                view.error = str(message) if view.state == WorkerState.ERROR and message else (
                    f"Vast reports the worker as {worker.status}" if view.state == WorkerState.ERROR else None)
                if view.state in (WorkerState.STOPPED, WorkerState.ERROR) and view.stopped_at is None:
                    view.stopped_at = now
                if view.snapshot("") != before:
                    changed.append(view)
            for view in self.workers.values():  # gone from Vast's list: stopped
                if view.listed and view.id not in seen and view.state.alive:
                    view.state, view.stopped_at = WorkerState.STOPPED, now
                    changed.append(view)
            counts: dict[str, int] = collections.Counter(v.state.value for v in self.workers.values()
                                                         if v.state.alive or (v.stopped_at or now) > now - 60)
            self.history.append((now, dict(counts)))
        for view in changed:
            self._publish(view)
        self.events.publish(Event(EventKind.AUTOSCALER, now, data={"snapshot": self.autoscaler()}))
        return bool(changed)

    def apply_reply(self, worker_id: str, pid: int | None, *, code: set[str] | None = None, call: bool = False) -> None:
        """A frame reply came from ``worker_id``: it serves, it has ``code``, it ran one more call."""
        with self.lock:
            view = self.workers.get(worker_id)
            new = view is None
            if view is None:
                view = self.workers[worker_id] = WorkerView(id=worker_id, state=WorkerState.READY, ready_at=time.time())
            before = view.snapshot(self.code_version(view))
            if not view.state.serving and not new and view.state.alive:
                view.state = WorkerState.READY
                view.ready_at = view.ready_at or time.time()
            view.pid = pid if pid is not None else view.pid
            view.replied_at = time.time()
            if code:
                view.code |= code
            if call:
                view.calls_done += 1
            changed = view.snapshot(self.code_version(view)) != before
        if new or changed:
            self._publish(view)

    def set_perf(self, worker_id: str, score: float) -> None:
        with self.lock:
            view = self.workers.get(worker_id)
            if view is None:
                return
            view.perf_score = score
        self._publish(view)

    def _publish(self, view: WorkerView) -> None:
        self.events.publish(Event(EventKind.WORKER, time.time(), view.snapshot(self.code_version(view))))

    # ------------------------------------------------------------------ outputs
    def serving(self) -> list[WorkerView]:
        with self.lock:
            return [v for v in self.workers.values() if v.state.serving]

    def summary(self) -> str:
        """``2 ready, 1 loading`` plus the last worker error, for messages."""
        with self.lock:
            counts = collections.Counter(v.state.value for v in self.workers.values() if v.state.alive)
            errors = [v.error for v in self.workers.values() if v.state == WorkerState.ERROR and v.error]
        text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none listed by Vast yet"
        if errors:
            text += f"; last worker error: {errors[-1]}"
        return text

    def autoscaler(self) -> AutoscalerSnapshot:
        with self.lock:
            cfg = self.endpoint
            serving = [v for v in self.workers.values() if v.state.serving]
            alive = [v for v in self.workers.values() if v.state.alive]
        return AutoscalerSnapshot(
            load=sum(v.load for v in alive),
            capacity=sum(v.perf_score or 0.0 for v in serving),
            target_util=float(getattr(cfg, "target_util", None) or 0.9),
            target_queue_time=getattr(cfg, "target_queue_time", None),
            target_workers=max(int(getattr(cfg, "cold_workers", None) or 0), len(alive)),
            max_workers=int(getattr(cfg, "max_workers", None) or 0),
        )

    def snapshot(self, name: str, state: str, code_version: str) -> DeploymentSnapshot:
        with self.lock:
            views = list(self.workers.values())
            history = tuple(self.history)
        return DeploymentSnapshot(
            name=name, backend="vast", state=state,
            workers=tuple(v.snapshot(self.code_version(v)) for v in views),
            autoscaler=self.autoscaler(), history=history, code_version=code_version, time=time.time(),
        )

    def cost_per_hour(self) -> float:
        """Sum of the price per hour of workers that are not stopped (those Vast reported a price for)."""
        with self.lock:
            return sum(v.price_per_hour or 0.0 for v in self.workers.values() if v.state.alive)
