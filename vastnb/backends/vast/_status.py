"""Vast's view of an endpoint's workers, in vastnb's state model.

The poller reads the endpoint and its workers through the SDK; frame replies
add what only vastnb knows (which code a worker has, its pid, calls served).
:class:`StatusTracker` merges both into :class:`~vastnb.events.WorkerSnapshot`
objects and publishes the same events as the local runtime, so ``%vast_status``
and the widgets work unchanged.

Vast worker states (docs: IDLE, LOADING, MODEL_LOADING, CREATING, …; UI names
such as Ready, Inactive, Updating) map onto :class:`~vastnb.events.WorkerState`
by :data:`VAST_STATES`; an idle worker with load in flight counts as busy. A
cold worker Vast keeps stopped with its model on disk (STOPPED, "Inactive") is
:attr:`~vastnb.events.WorkerState.INACTIVE`: alive, counted toward
``cold_workers``, not serving.
``perf`` (measured throughput × reliability, as Vast routes by it) becomes
``perf_score``; the price per hour comes from the worker row when Vast sends one
(None, "unknown", when it does not).

Rows are read as they come (:meth:`WorkerRow.of`): the SDK's fields, or the
OpenAPI file's (``id``, ``status``, ``url``, ``created_at``), or fewer; a
missing number is 0 or unknown, a missing status "unknown", a row without an
``id`` is skipped.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ...events import (
    AutoscalerSnapshot,
    Decision,
    DeploymentSnapshot,
    Event,
    EventBus,
    EventKind,
    WorkerSnapshot,
    WorkerState,
)

__all__ = ["BILLED", "StatusTracker", "VAST_STATES", "WorkerRow", "map_state"]

VAST_STATES: dict[str, WorkerState] = {
    **dict.fromkeys(("creating", "created", "pending", "scheduling", "starting", "rebooting", "update_rebooting",
                     "update_starting", "unknown", "new"), WorkerState.PROVISIONING),
    **dict.fromkeys(("loading", "model_loading", "updating", "update_ready", "downloading"), WorkerState.LOADING),
    **dict.fromkeys(("benchmarking", "benchmark"), WorkerState.BENCHMARKING),
    **dict.fromkeys(("idle", "ready", "loaded"), WorkerState.READY),
    **dict.fromkeys(("running", "busy", "working"), WorkerState.BUSY),
    **dict.fromkeys(("stopping", "destroying", "draining"), WorkerState.DRAINING),
    **dict.fromkeys(("stopped", "inactive", "cold"), WorkerState.INACTIVE),
    **dict.fromkeys(("offline", "destroyed", "exited", "deleted"), WorkerState.STOPPED),
    **dict.fromkeys(("error", "errored", "failed"), WorkerState.ERROR),
}
REPLY_TRUST = 30.0  # seconds a frame reply outweighs a "still starting" from Vast's worker list
_PRICE_KEYS = ("dph_total", "dph", "price", "price_per_hour", "cost_per_hour")
#: States whose GPU time Vast bills (pricing docs: Ready and Loading; Creating and Inactive bill storage only).
BILLED = (WorkerState.READY, WorkerState.BUSY, WorkerState.LOADING, WorkerState.BENCHMARKING, WorkerState.DRAINING)


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
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                continue
    return None


def _timestamp(value: Any) -> float | None:
    """Unix seconds from a number or an ISO 8601 string (the OpenAPI file's ``created_at``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) or None
    if isinstance(value, str) and value:
        from datetime import datetime, timezone

        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()
    return None


@dataclass(frozen=True)
class WorkerRow:
    """One row of Vast's worker list, whatever fields it came with."""

    id: str
    status: str
    cur_load: float = 0.0
    reqs_working: int = 0
    perf: float | None = None
    started_at: float | None = None
    loaded_at: float | None = None
    price_per_hour: float | None = None
    gpu: str | None = None
    message: str | None = None

    @classmethod
    def of(cls, raw: dict[str, Any]) -> "WorkerRow | None":
        """The row of a raw ``/get_endpoint_workers/`` entry; None when it has no ``id``."""
        wid = raw.get("id")
        if wid is None or isinstance(wid, bool) or str(wid).strip() == "":
            return None
        perf = _number(raw, ("perf",))
        if not perf:
            perf = _number(raw, ("measured_perf",))
        gpu = raw.get("gpu_name")
        n = raw.get("num_gpus")
        status = raw.get("status")
        message = raw.get("error_msg") or raw.get("status_msg")
        return cls(
            id=str(wid), status=str(status) if status else "unknown",
            cur_load=_number(raw, ("cur_load",)) or 0.0, reqs_working=int(_number(raw, ("reqs_working",)) or 0),
            perf=perf if perf and perf > 0 else None,
            started_at=_timestamp(raw.get("started_at")) or _timestamp(raw.get("created_at")),
            loaded_at=_timestamp(raw.get("loaded_at")), price_per_hour=_number(raw, _PRICE_KEYS),
            gpu=(f"{n}x {gpu}" if isinstance(n, int) and n > 1 else gpu) if isinstance(gpu, str) and gpu else None,
            message=str(message) if message else None)


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
        self.route_status = ""  # what Vast's /route/ said last (waiting reason or failure)
        self.route_at = 0.0
        self.code_version: Callable[[WorkerView], str] = lambda view: ""

    # ------------------------------------------------------------------ inputs
    def apply_poll(self, raw_rows: list[dict[str, Any]], endpoint: Any = None) -> bool:
        """Fold one poll of Vast's worker list (raw rows, any documented shape) in; True when any worker changed."""
        now = time.time()
        changed: list[WorkerView] = []
        rows = [r for r in (WorkerRow.of(raw) for raw in raw_rows) if r is not None]
        with self.lock:
            if endpoint is not None:
                self.endpoint = endpoint
            seen = set()
            for row in rows:
                wid = row.id
                seen.add(wid)
                view = self.workers.get(wid)
                if view is None:
                    view = self.workers[wid] = WorkerView(id=wid, started_at=row.started_at or now)
                before = view.snapshot("")
                view.listed = True
                view.status = row.status
                state = map_state(row.status, row.cur_load, row.reqs_working)
                if ((state.starting or state == WorkerState.INACTIVE) and view.state.serving
                        and now - view.replied_at < REPLY_TRUST):
                    state = view.state  # it answered a frame moments ago: Vast's list has not caught up
                view.state = state
                view.perf_score = row.perf if row.perf is not None else view.perf_score
                view.load = row.cur_load
                view.queue = row.reqs_working
                view.price_per_hour = row.price_per_hour if row.price_per_hour is not None else view.price_per_hour
                view.gpu = row.gpu or view.gpu
                if row.started_at:
                    view.started_at = row.started_at
                if view.state.serving and view.ready_at is None:
                    view.ready_at = row.loaded_at or now
                view.error = (row.message or f"Vast reports the worker as {row.status}"
                              if view.state == WorkerState.ERROR else None)
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
    def set_route_status(self, line: str) -> None:
        with self.lock:
            self.route_status, self.route_at = line, time.time()
        self.events.publish(Event(EventKind.AUTOSCALER, time.time(), data={"snapshot": self.autoscaler()}))

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
        """Vast's engine as the views draw it; its "decision" line is what ``/route/`` said last."""
        with self.lock:
            cfg = self.endpoint
            serving = [v for v in self.workers.values() if v.state.serving]
            alive = [v for v in self.workers.values() if v.state.alive]
            route = self.route_status
            stamp = self.route_at if route else 0.0
        target = max(int(getattr(cfg, "cold_workers", None) or 0), len(alive))
        return AutoscalerSnapshot(
            load=sum(v.load for v in alive),
            capacity=sum(v.perf_score or 0.0 for v in serving),
            target_util=float(getattr(cfg, "target_util", None) or 0.9),
            target_queue_time=getattr(cfg, "target_queue_time", None),
            target_workers=target,
            max_workers=int(getattr(cfg, "max_workers", None) or 0),
            last_decision=Decision(stamp, len(alive), target, f"Vast {route}") if route else None,
            active_workers=len(serving),
            inactive_workers=sum(1 for v in alive if v.state == WorkerState.INACTIVE),
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

    def cost_per_hour(self) -> float | None:
        """GPU cost per hour of the workers in billed states; None when Vast gave no price for one of them."""
        with self.lock:
            billed = [v.price_per_hour for v in self.workers.values() if v.state in BILLED]
        if any(p is None for p in billed):
            return None
        return sum(p for p in billed if p is not None)
