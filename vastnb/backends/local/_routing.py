"""The call path of the local runtime: one queue, routing to the quickest worker, results, timeouts, cancels.

A call waits in one queue in the runtime and goes to the serving worker with
the lowest expected wait (workload in flight ÷ perf score), a few calls deep per
worker so workers never idle between calls. A worker that dies hands its calls
back to the queue (up to each function's ``retries``).

A call that would wait longer than its ``max_queue_time`` is refused at once
(``QueueTimeout``). The wait is estimated from what the workers really do: the
worker time each function's calls took lately (:class:`ServiceTimes`), or, before
any finished, the benchmark's perf score for the benchmarked function. A call
whose cost nothing has measured yet counts as free, so no call is refused on a
made-up figure.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable

from ...errors import CallTimeout, QueueTimeout, WorkerLost, WorkerStartError
from ...events import WorkerState
from ...spec import FunctionSpec
from ...wire import build_remote_exception, dumps_small
from ...wire import messages as m
from .._protocol import CallRequest
from ._handle import Call, GroupTimer, WorkerHandle

if TYPE_CHECKING:
    import asyncio

__all__ = ["CallQueue", "Routing", "ServiceTimes", "within"]

SERIAL_WINDOW = 8  # calls in flight per worker for serial functions (one runs, the rest wait on the worker)
PARALLEL_WINDOW = 64
MAX_WINDOW = 1024  # calls one worker may hold for a function whose calls are fast
BATCH_PAYLOAD_MAX = 16 * 1024  # calls larger than this travel alone (the largest through shared memory)


class CallQueue:
    """The runtime's FIFO of calls waiting for a worker, keeping their total workload and, per function, their
    count and workload (what the queue-time estimate needs without walking the queue). Every operation is O(1):
    a map of 100,000 calls queues, cancels and drains without walking the queue per call."""

    def __init__(self) -> None:
        self._calls: collections.OrderedDict[int, Call] = collections.OrderedDict()
        self.load = 0.0
        self.by_function: dict[str, list[float]] = {}  # name -> [calls, workload]

    def _add(self, call: Call, sign: int) -> None:
        entry = self.by_function.setdefault(call.fn.name, [0.0, 0.0])
        entry[0] += sign
        entry[1] += sign * call.workload
        if entry[0] <= 0:
            del self.by_function[call.fn.name]
        self.load = max(0.0, self.load + sign * call.workload) if self._calls else 0.0

    def append(self, call: Call) -> None:
        self._calls[call.id] = call
        self._add(call, 1)

    def appendleft(self, call: Call) -> None:
        self._calls[call.id] = call
        self._calls.move_to_end(call.id, last=False)
        self._add(call, 1)

    def popleft(self) -> Call:
        _, call = self._calls.popitem(last=False)
        self._add(call, -1)
        return call

    def remove(self, call: Call) -> bool:
        """Take ``call`` out of the queue; False when it was not waiting there."""
        if self._calls.pop(call.id, None) is None:
            return False
        self._add(call, -1)
        return True

    def clear(self) -> None:
        self._calls.clear()
        self.load = 0.0
        self.by_function.clear()

    def first(self) -> Call | None:
        """The call at the head of the queue, or None. Thread-safe (views read it from their threads)."""
        try:
            return next(iter(self._calls.values()))
        except (StopIteration, RuntimeError):  # empty, or changed by the runtime thread meanwhile
            return None

    def waiting(self) -> int:
        """Calls waiting for a worker (a call leaves the queue when it is cancelled or expires). Thread-safe."""
        return len(self._calls)

    def __iter__(self) -> Any:
        return iter(list(self._calls.values()))

    def __len__(self) -> int:
        return len(self._calls)


class ServiceTimes:
    """Worker time per call, per function, as observed: on each finished call, the time since the worker's
    previous call finished (or since it got work). For a serial function that is the call's run time; for
    parallel calls it is run time ÷ concurrency: what one more call costs the worker, either way."""

    SAMPLES = 64

    def __init__(self) -> None:
        self._samples: dict[str, collections.deque[float]] = {}
        self._sums: dict[str, float] = {}
        self._lock = threading.Lock()  # the runtime's thread and direct callers record

    def record(self, name: str, seconds: float) -> None:
        with self._lock:
            samples = self._samples.setdefault(name, collections.deque())
            if len(samples) == self.SAMPLES:
                self._sums[name] -= samples.popleft()
            samples.append(seconds)
            self._sums[name] = self._sums.get(name, 0.0) + seconds

    def mean(self, name: str) -> float | None:
        samples = self._samples.get(name)
        return max(0.0, self._sums.get(name, 0.0) / len(samples)) if samples else None


class Routing:
    """The call-path half of :class:`~vastnb.backends.local.LocalBackend` (runs on the runtime's loop)."""

    # provided by LocalBackend
    workers: dict[str, WorkerHandle]
    pending: CallQueue
    call_ids: "itertools.count[int]"
    direct: Any  # ._direct.DirectPath
    live: "dict[concurrent.futures.Future[Any], Call]"  # every call queued or running, by its future
    service: ServiceTimes
    traces: "collections.deque[dict[str, float]] | None"  # finished calls' hop times (VASTNB_TRACE_CALLS=1)
    spec: Any  # vastnb.spec.DeploymentSpec
    arrival_log: collections.deque[tuple[float, float]]
    queue_times: collections.deque[tuple[float, float]]
    arrivals_total: int
    state: str

    if TYPE_CHECKING:
        @property
        def loop(self) -> asyncio.AbstractEventLoop: ...

        def _send(self, handle: WorkerHandle, msg: m.Message, req_id: int = 0) -> None: ...
        def _publish_worker(self, handle: WorkerHandle, immediate: bool = True) -> None: ...
        def _shut_down_error(self) -> Exception: ...
        def _start_error(self, fn: FunctionSpec) -> WorkerStartError | None: ...
        def _thread_call(self, fn: Callable[..., Any], *args: Any) -> None: ...

    # ------------------------------------------------------------------ figures
    def serving(self) -> list[WorkerHandle]:
        return [h for h in list(self.workers.values()) if h.serving]  # list(): views call this from their threads

    def default_perf(self) -> float:
        known = [h.perf_score for h in list(self.workers.values()) if h.perf_score]
        return sum(known) / len(known) if known else 100.0

    def capacity(self) -> float:
        return sum(h.perf_score or self.default_perf() for h in self.serving())

    def load_rate(self, window: float = 10.0) -> float:
        """Workload units per second that arrived over the last ``window`` seconds."""
        now = time.monotonic()
        total = sum(w for _, w in within(self.arrival_log, now - window))
        return total / window

    def recent_queue_time(self, window: float = 10.0) -> float:
        now = time.monotonic()
        recent = [q for _, q in within(self.queue_times, now - window)]
        head = self.pending.first()
        waiting = [now - head.created] if head is not None else []
        return max(recent + waiting, default=0.0)

    def last_activity(self) -> float | None:
        return self.arrival_log[-1][0] if self.arrival_log else None

    def seconds_per_call(self, name: str, workload: float = 0.0, calls: float = 1.0) -> float:
        """Worker seconds that ``calls`` calls of function ``name`` (together ``workload`` units) will take:
        observed, else the benchmark's perf score for the benchmarked function, else 0 (not measured yet)."""
        seen = self.service.mean(name)
        if seen is not None:
            return calls * seen
        if name == self.spec.benchmark:
            scores = [h.perf_score for h in self.serving() if h.perf_score]
            if scores:
                return workload / (sum(scores) / len(scores))
        return 0.0

    def estimated_wait(self) -> float | None:
        """Seconds a call arriving now would wait for a worker: the measured work queued and on the workers,
        spread over the serving workers (None when none serves)."""
        serving = self.serving()
        if not serving:
            return None
        work = sum(self.seconds_per_call(name, workload, calls) for name, (calls, workload) in self.pending.by_function.items())
        for h in serving:
            work += sum(self.seconds_per_call(c.fn.name, c.workload) for c in h.inflight.values())
        return work / len(serving)

    # ------------------------------------------------------------------ the notebook's side (any thread)
    def call_direct(self, request: CallRequest) -> tuple[bool, Any]:
        """Run a blocking call from the caller's thread when a worker is free for it (see ``_direct``)."""
        return self.direct.call(request)

    async def call_direct_async(self, request: CallRequest) -> tuple[bool, Any]:
        """The same for ``await fn(x)``, on the caller's event loop."""
        return await self.direct.call_async(request)

    def submit(self, request: CallRequest) -> "concurrent.futures.Future[Any]":
        """Queue one call (thread-safe); the future fails at once when it cannot run (see ``_enqueue``)."""
        return self.submit_many([request])[0]

    def submit_many(self, requests: Sequence[CallRequest]) -> "list[concurrent.futures.Future[Any]]":
        """Queue calls together (a map): one hand-over to the runtime's thread for all of them."""
        calls = [Call(id=next(self.call_ids), fn=r.function, payload=r.payload, workload=r.workload,
                      future=concurrent.futures.Future(), sink=r.sink, kind=r.kind) for r in requests]
        if self.traces is not None:
            now = time.perf_counter()
            for call in calls:
                call.stamps = {"submitted": now}
        if self.state == "shut down":
            for call in calls:
                call.future.set_exception(self._shut_down_error())
        elif calls:
            self.direct.handing_over(len(calls))  # queued ahead of any direct call made after this
            try:
                self._thread_call(self._enqueue_many, calls)
            except BaseException:
                self.direct.handing_over(-len(calls))
                raise
        return [call.future for call in calls]

    def cancel(self, future: "concurrent.futures.Future[Any]") -> None:
        self._thread_call(self._cancel_future, future)

    def cancel_many(self, futures: "Sequence[concurrent.futures.Future[Any]]") -> None:
        if futures:
            self._thread_call(self._cancel_many, list(futures))

    def call_traces(self) -> list[dict[str, float]]:
        """Hop times (``time.perf_counter()``, one clock for the notebook and its workers) of the calls finished
        since the deployment started, when it was made with ``VASTNB_TRACE_CALLS=1`` in the environment:
        submitted (the caller handed it over), queued (the runtime took it), sent, received/started/finished
        (on the worker), read (the result reached the runtime), settled (its future resolved). Else empty."""
        return list(self.traces) if self.traces is not None else []

    # ------------------------------------------------------------------ calls (the runtime's thread)
    def _enqueue(self, call: Call) -> bool:
        """Queue ``call`` (its timer is the caller's to set); False when it failed at once or was cancelled."""
        if call.future.done():
            return False
        if self.state in ("shut down", "shutting down"):
            self._fail(call, self._shut_down_error())
            return False
        start_error = self._start_error(call.fn)
        if start_error is not None:  # no worker serves and starts keep failing: waiting would be in vain
            self._fail(call, start_error)
            return False
        wait = self.estimated_wait() if call.kind == "call" else None
        if wait is not None and wait > call.fn.max_queue_time:
            self._fail(call, QueueTimeout(
                f"{call.fn.name}() would wait about {wait:.1f} s in the queue, more than its max_queue_time of "
                f"{call.fn.max_queue_time:g} s. Add workers (app.configure_autoscaling(max_workers=...)), "
                "send fewer calls at once, or raise max_queue_time in @app.remote(...).",
                limit=call.fn.max_queue_time, estimated_wait=wait))
            return False
        if call.stamps is not None:
            call.stamps["queued"] = time.perf_counter()
        self.arrival_log.append((time.monotonic(), call.workload))
        self.arrivals_total += 1
        self.live[call.future] = call
        self.pending.append(call)
        return True

    def _enqueue_many(self, calls: "list[Call]") -> None:
        """Queue calls handed over together (one thread hop for a whole map), then dispatch once. Calls with
        the same timeout share one timer (each still times out on its own, from the same start)."""
        self.direct.handing_over(-len(calls))
        groups: dict[float, list[Call]] = {}
        for call in calls:
            if self._enqueue(call):
                groups.setdefault(call.fn.timeout, []).append(call)
        for timeout, group in groups.items():
            if len(group) == 1:
                group[0].timer = self.loop.call_later(timeout, self._expire, group[0])
            else:
                shared = GroupTimer(self.loop.call_later(timeout, self._expire_group, group), len(group))
                for call in group:
                    call.timer = shared
        self._dispatch()

    def _expire_group(self, calls: "list[Call]") -> None:
        for call in calls:
            self._expire(call)

    def _cancel_many(self, futures: "list[concurrent.futures.Future[Any]]") -> None:
        for future in futures:
            self._cancel_future(future)

    def _dispatch(self) -> None:
        """Hand waiting calls to workers with room for them. The small calls one worker gets in one round travel
        in one frame (a :class:`~vastnb.wire.messages.CallBatch`), and its results come back together."""
        rounds: dict[str, list[Call]] = {}
        while self.pending:
            call = self.pending.first()
            assert call is not None
            if call.future.done():
                self.pending.popleft()
                continue
            handle = self._pick(call.fn)
            if handle is None:
                break
            self.pending.popleft()
            self._assign(handle, call)
            if call.payload.size < BATCH_PAYLOAD_MAX:
                rounds.setdefault(handle.id, []).append(call)
            else:
                self._send_calls(handle, [call])
        for worker_id, calls in rounds.items():
            self._send_calls(self.workers[worker_id], calls)

    @staticmethod
    def _window(fn: FunctionSpec, handle: WorkerHandle, now: float) -> int:
        """Calls one worker may hold for ``fn``: the fixed window, plus the calls it finished over the last
        BATCH_SECONDS once those were at least a window's worth. A worker that turns fast calls around gets enough
        to stay busy between round trips (and its calls travel in large batches); one running long calls holds no
        more than the fixed window, so new workers can take the rest."""
        floor = PARALLEL_WINDOW if fn.allow_parallel else SERIAL_WINDOW
        recent = handle.recent_done.total(now)
        return min(MAX_WINDOW, floor + recent) if recent >= floor else floor  # grows for a fast stream only

    def _pick(self, fn: FunctionSpec) -> WorkerHandle | None:
        now = time.monotonic()
        best, best_key = None, (float("inf"), 0)
        default = self.default_perf()
        for h in self.workers.values():
            if (not h.serving or h.inactive or h.id in self.direct.claimed
                    or len(h.inflight) >= self._window(fn, h, now)):
                continue
            key = (h.load / (h.perf_score or default), h.calls_done)  # ties go to the less used worker
            if key < best_key:
                best, best_key = h, key
        return best

    def _assign(self, handle: WorkerHandle, call: Call) -> None:
        assert handle.conn is not None
        if call.fn.hash not in handle.code:
            self._send(handle, m.Install((m.InstallFunction.of(call.fn),)))
            handle.code.add(call.fn.hash)
        call.attempts += 1
        call.worker = handle
        handle.inflight[call.id] = call
        handle.idle_since = None
        handle.load += call.workload
        now = time.monotonic()
        handle.mark_busy(now)
        self.queue_times.append((now, now - call.created))
        if handle.state == WorkerState.READY:
            handle.state = WorkerState.BUSY
            self._publish_worker(handle, immediate=False)

    def _send_calls(self, handle: WorkerHandle, calls: "list[Call]") -> None:
        assert handle.conn is not None
        try:
            if len(calls) == 1:
                handle.conn.send(calls[0].payload, calls[0].id)
            else:
                handle.conn.send(dumps_small(m.CallBatch(tuple((c.id, c.payload.to_bytes()) for c in calls))), 0)
        except Exception as exc:  # noqa: BLE001 - connection already gone: the reader will requeue
            handle.log.append(f"[runtime] send failed: {exc!r}")
        if calls[0].stamps is not None:
            now = time.perf_counter()
            for call in calls:
                if call.stamps is not None:
                    call.stamps["sent"] = now

    def _finish_batch(self, handle: WorkerHandle, results: "tuple[tuple[int, m.Result], ...]") -> None:
        """Results that came back together: the worker time since its previous result is shared among them."""
        now = time.monotonic()
        share = (now - handle.service_mark) / len(results) if handle.service_mark is not None and results else None
        handle.recent_done.add(now, len(results))
        for req_id, result in results:
            call = handle.inflight.get(req_id)
            if call is not None:
                self._finish_call(handle, call, result, dispatch=False, service=share)
        self._dispatch()

    def _finish_call(self, handle: WorkerHandle, call: Call, result: m.Result, *, dispatch: bool = True,
                     service: float | None = None) -> None:
        read = time.perf_counter() if call.stamps is not None else 0.0
        handle.inflight.pop(call.id, None)
        self.live.pop(call.future, None)
        handle.load = max(0.0, handle.load - call.workload)
        handle.calls_done += 1
        now = time.monotonic()
        if dispatch:  # (a batch counts its calls at once)
            handle.recent_done.add(now, 1)
        if service is not None and not result.cancelled:
            self.service.record(call.fn.name, service)
        elif handle.service_mark is not None and not result.cancelled:
            self.service.record(call.fn.name, now - handle.service_mark)
        handle.service_mark = now
        if not handle.inflight:
            handle.idle_since = now
            handle.mark_idle(now)
        if not handle.inflight and handle.state == WorkerState.BUSY:
            handle.state = WorkerState.READY
            self._publish_worker(handle, immediate=False)
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        if not call.future.done():
            if result.ok:
                call.future.set_result(result.value)
            elif result.cancelled:
                call.future.cancel()
            else:
                assert result.error is not None
                call.future.set_exception(build_remote_exception(result.error, f"worker {handle.id} running {call.fn.name}()"))
        if call.stamps is not None and self.traces is not None:
            if result.stamps is not None and len(result.stamps) == 3:
                call.stamps.update(zip(("received", "started", "finished"), result.stamps))
            call.stamps.update(read=read, settled=time.perf_counter())
            self.traces.append(call.stamps)
        if dispatch:
            self._dispatch()

    def _fail(self, call: Call, exc: BaseException) -> None:
        self.live.pop(call.future, None)
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        if not call.future.done():
            call.future.set_exception(exc)

    def _expire(self, call: Call) -> None:
        if call.future.done():
            return
        self.pending.remove(call)
        where = f"on worker {call.worker.id}" if call.worker is not None else "waiting for a worker"
        self._fail(call, CallTimeout(
            f"{call.fn.name}() did not finish within its timeout of {call.fn.timeout:g} s (it was {where}). "
            "Raise timeout in @app.remote(timeout=...) for long calls."))
        self._cancel_remote(call)

    def _cancel_future(self, future: "concurrent.futures.Future[Any]") -> None:
        call = self.live.pop(future, None)
        if call is None:
            return
        if self.pending.remove(call):
            if call.timer is not None:
                call.timer.cancel()
                call.timer = None
        elif call.worker is not None and call.id in call.worker.inflight:
            self._cancel_remote(call)
        future.cancel()

    def _cancel_remote(self, call: Call) -> None:
        handle = call.worker
        if handle is not None and handle.conn is not None and not handle.conn.closed and call.id in handle.inflight:
            self._send(handle, m.Cancel(call.id))

    def _lose_calls(self, handle: WorkerHandle, why: str) -> None:
        """A worker is gone: its calls go back to the queue (up to their retries) or fail with WorkerLost."""
        calls, handle.inflight = list(handle.inflight.values()), {}
        handle.load = 0.0
        handle.mark_idle(time.monotonic())
        for call in reversed(calls):
            if call.future.done():
                continue
            if call.attempts <= call.fn.retries:
                call.worker = None
                self.pending.appendleft(call)
            else:
                self._fail(call, worker_lost(handle.id, call.fn, call.attempts, why))
        for fut in list(handle.replies.values()):
            if not fut.done():
                fut.set_exception(WorkerLost(f"worker {handle.id} died ({why})", worker_id=handle.id))
        handle.replies.clear()


def worker_lost(worker_id: str, fn: FunctionSpec, attempts: int, why: str) -> WorkerLost:
    return WorkerLost(
        f"worker {worker_id} died while running {fn.name}() ({why}); "
        + (f"the call was tried {attempts} time(s) and not retried further. " if fn.retries else
           "the call was not retried because its function has retries=0 (for non-idempotent code). ")
        + "Check the worker's log with %vast_logs, or raise retries in @app.remote(retries=...).",
        worker_id=worker_id, attempts=attempts)


def within(entries: "collections.deque[tuple[float, float]]", since: float) -> "itertools.takewhile[tuple[float, float]]":
    """The newest ``(time, value)`` entries recorded at ``since`` or later (entries are in time order)."""
    return itertools.takewhile(lambda entry: entry[0] >= since, reversed(entries))
