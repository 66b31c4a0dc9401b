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
import time
from typing import TYPE_CHECKING, Any

from ...errors import CallTimeout, QueueTimeout, WorkerLost, WorkerStartError
from ...events import WorkerState
from ...spec import FunctionSpec
from ...wire import build_remote_exception
from ...wire import messages as m
from ._handle import Call, WorkerHandle

if TYPE_CHECKING:
    import asyncio

__all__ = ["CallQueue", "Routing", "ServiceTimes", "within"]

SERIAL_WINDOW = 8  # calls in flight per worker for serial functions (one runs, the rest wait on the worker)
PARALLEL_WINDOW = 64


class CallQueue:
    """The runtime's FIFO of calls waiting for a worker, keeping their total workload and, per function, their
    count and workload (what the queue-time estimate needs without walking the queue)."""

    def __init__(self) -> None:
        self._calls: collections.deque[Call] = collections.deque()
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
        self._calls.append(call)
        self._add(call, 1)

    def appendleft(self, call: Call) -> None:
        self._calls.appendleft(call)
        self._add(call, 1)

    def popleft(self) -> Call:
        call = self._calls.popleft()
        self._add(call, -1)
        return call

    def remove(self, call: Call) -> None:
        self._calls.remove(call)
        self._add(call, -1)

    def clear(self) -> None:
        self._calls.clear()
        self.load = 0.0
        self.by_function.clear()

    def waiting(self) -> int:
        """Calls still waiting (cancelled ones leave the queue when they reach its head). Thread-safe."""
        return sum(1 for call in list(self._calls) if not call.future.done())

    def __getitem__(self, i: int) -> Call:
        return self._calls[i]

    def __iter__(self) -> Any:
        return iter(self._calls)

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

    def record(self, name: str, seconds: float) -> None:
        samples = self._samples.setdefault(name, collections.deque())
        if len(samples) == self.SAMPLES:
            self._sums[name] -= samples.popleft()
        samples.append(seconds)
        self._sums[name] = self._sums.get(name, 0.0) + seconds

    def mean(self, name: str) -> float | None:
        samples = self._samples.get(name)
        return max(0.0, self._sums[name] / len(samples)) if samples else None


class Routing:
    """The call-path half of :class:`~vastnb.backends.local.LocalBackend` (runs on the runtime's loop)."""

    # provided by LocalBackend
    workers: dict[str, WorkerHandle]
    pending: CallQueue
    service: ServiceTimes
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
        waiting = [now - self.pending[0].created] if self.pending else []
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

    # ------------------------------------------------------------------ calls
    def _enqueue(self, call: Call) -> None:
        if call.future.done():
            return
        if self.state in ("shut down", "shutting down"):
            self._fail(call, self._shut_down_error())
            return
        start_error = self._start_error(call.fn)
        if start_error is not None:  # no worker serves and starts keep failing: waiting would be in vain
            self._fail(call, start_error)
            return
        wait = self.estimated_wait() if call.kind == "call" else None
        if wait is not None and wait > call.fn.max_queue_time:
            self._fail(call, QueueTimeout(
                f"{call.fn.name}() would wait about {wait:.1f} s in the queue, more than its max_queue_time of "
                f"{call.fn.max_queue_time:g} s. Add workers (app.configure_autoscaling(max_workers=...)), "
                "send fewer calls at once, or raise max_queue_time in @app.remote(...).",
                limit=call.fn.max_queue_time, estimated_wait=wait))
            return
        self.arrival_log.append((time.monotonic(), call.workload))
        self.arrivals_total += 1
        call.timer = self.loop.call_later(call.fn.timeout, self._expire, call)
        self.pending.append(call)
        self._dispatch()

    def _dispatch(self) -> None:
        while self.pending:
            call = self.pending[0]
            if call.future.done():
                self.pending.popleft()
                continue
            handle = self._pick(call.fn)
            if handle is None:
                return
            self.pending.popleft()
            self._send_call(handle, call)

    def _pick(self, fn: FunctionSpec) -> WorkerHandle | None:
        window = PARALLEL_WINDOW if fn.allow_parallel else SERIAL_WINDOW
        best, best_key = None, (float("inf"), 0)
        default = self.default_perf()
        for h in self.workers.values():
            if not h.serving or h.inactive or len(h.inflight) >= window:
                continue
            key = (h.load / (h.perf_score or default), h.calls_done)  # ties go to the less used worker
            if key < best_key:
                best, best_key = h, key
        return best

    def _send_call(self, handle: WorkerHandle, call: Call) -> None:
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
        try:
            handle.conn.send(call.payload, call.id)
        except Exception as exc:  # noqa: BLE001 - connection already gone: the reader will requeue
            handle.log.append(f"[runtime] send failed: {exc!r}")
        if handle.state == WorkerState.READY:
            handle.state = WorkerState.BUSY
            self._publish_worker(handle, immediate=False)

    def _finish_call(self, handle: WorkerHandle, call: Call, result: m.Result) -> None:
        handle.inflight.pop(call.id, None)
        handle.load = max(0.0, handle.load - call.workload)
        handle.calls_done += 1
        now = time.monotonic()
        if handle.service_mark is not None and not result.cancelled:
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
        if not call.future.done():
            if result.ok:
                call.future.set_result(result.value)
            elif result.cancelled:
                call.future.cancel()
            else:
                assert result.error is not None
                call.future.set_exception(build_remote_exception(result.error, f"worker {handle.id} running {call.fn.name}()"))
        self._dispatch()

    def _fail(self, call: Call, exc: BaseException) -> None:
        if call.timer is not None:
            call.timer.cancel()
        if not call.future.done():
            call.future.set_exception(exc)

    def _expire(self, call: Call) -> None:
        if call.future.done():
            return
        where = f"on worker {call.worker.id}" if call.worker is not None else "waiting for a worker"
        self._fail(call, CallTimeout(
            f"{call.fn.name}() did not finish within its timeout of {call.fn.timeout:g} s (it was {where}). "
            "Raise timeout in @app.remote(timeout=...) for long calls."))
        self._cancel_remote(call)

    def _cancel_future(self, future: "concurrent.futures.Future[Any]") -> None:
        for call in list(self.pending):
            if call.future is future:
                self.pending.remove(call)
                if call.timer is not None:
                    call.timer.cancel()
                future.cancel()
                return
        for handle in self.workers.values():
            for call in handle.inflight.values():
                if call.future is future:
                    self._cancel_remote(call)
                    future.cancel()
                    return

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
                self._fail(call, WorkerLost(
                    f"worker {handle.id} died while running {call.fn.name}() ({why}); "
                    + (f"the call was tried {call.attempts} time(s) and not retried further. " if call.fn.retries else
                       "the call was not retried because its function has retries=0 (for non-idempotent code). ")
                    + "Check the worker's log with %vast_logs, or raise retries in @app.remote(retries=...).",
                    worker_id=handle.id, attempts=call.attempts))
        for fut in list(handle.replies.values()):
            if not fut.done():
                fut.set_exception(WorkerLost(f"worker {handle.id} died ({why})", worker_id=handle.id))
        handle.replies.clear()


def within(entries: "collections.deque[tuple[float, float]]", since: float) -> "itertools.takewhile[tuple[float, float]]":
    """The newest ``(time, value)`` entries recorded at ``since`` or later (entries are in time order)."""
    return itertools.takewhile(lambda entry: entry[0] >= since, reversed(entries))
