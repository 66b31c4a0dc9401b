"""The embedded local cluster: worker processes on loopback, routing, scaling and failure handling.

The runtime is declared as a spec (functions, contexts, benchmark, settings,
GPUs) and a control loop makes reality match it: it starts workers the
autoscaler asks for, replaces dead ones, drains idle ones. Everything happens
on one private asyncio loop in a daemon thread; the public methods are
thread-safe and return ``concurrent.futures.Future`` objects, so the notebook
can await them, block on them, or poll them.

Routing: a call waits in one queue in the runtime and goes to the serving
worker with the lowest expected wait (workload in flight ÷ perf score), a few
calls deep per worker so workers never idle between calls. A worker that dies
hands its calls back to the queue (up to each function's ``retries``).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import itertools
import json
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .._remote_errors import build_remote_exception
from ..errors import (
    CallTimeout,
    DeploymentShutDown,
    QueueTimeout,
    WorkerLost,
    WorkerStartError,
)
from ..events import (
    AutoscalerSnapshot,
    Decision,
    DeploymentSnapshot,
    Event,
    EventBus,
    EventKind,
    WorkerState,
)
from ..wire import Connection, Payload, dumps_payload
from ._handle import Call, ContextSpec, FunctionSpec, WorkerHandle
from ._loop import LoopThread

__all__ = ["LocalRuntime", "RuntimeSpec", "ScalePolicy"]

SERIAL_WINDOW = 8  # calls in flight per worker for serial functions (one runs, the rest wait on the worker)
PARALLEL_WINDOW = 64
START_TIMEOUT = 60.0
CONTROL_PERIOD = 0.5
CPU_WORKER_CAP = 8  # workers on a machine without GPUs (they share its cores)


@dataclass
class RuntimeSpec:
    name: str
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    contexts: dict[str, ContextSpec] = field(default_factory=dict)
    benchmark: bytes | None = None  # pickled worker.core.BenchmarkSpec
    env: dict[str, str] = field(default_factory=dict)
    gpus: list[Any] = field(default_factory=list)  # vastnb.gpus.LocalGpu that match the image
    workers_per_gpu: int = 1
    health_timeout: float = 30.0
    cwd: str | None = None


# A scaling policy sees the runtime and the time and returns (target worker count, one-line reason).
ScalePolicy = Callable[["LocalRuntime", float], "tuple[int, str]"]


def fixed_policy(count: int) -> ScalePolicy:
    def policy(runtime: "LocalRuntime", now: float) -> tuple[int, str]:
        return count, f"fixed at {count} worker(s)"

    return policy


class _CallQueue:
    """The runtime's FIFO of calls waiting for a worker, keeping their total workload."""

    def __init__(self) -> None:
        self._calls: collections.deque[Call] = collections.deque()
        self.load = 0.0

    def append(self, call: Call) -> None:
        self._calls.append(call)
        self.load += call.workload

    def appendleft(self, call: Call) -> None:
        self._calls.appendleft(call)
        self.load += call.workload

    def popleft(self) -> Call:
        call = self._calls.popleft()
        self.load = max(0.0, self.load - call.workload) if self._calls else 0.0
        return call

    def remove(self, call: Call) -> None:
        self._calls.remove(call)
        self.load = max(0.0, self.load - call.workload) if self._calls else 0.0

    def clear(self) -> None:
        self._calls.clear()
        self.load = 0.0

    def __getitem__(self, i: int) -> Call:
        return self._calls[i]

    def __iter__(self) -> Any:
        return iter(self._calls)

    def __len__(self) -> int:
        return len(self._calls)


def _close_pipes(process: asyncio.subprocess.Process) -> None:
    """Release a finished worker's pipes now rather than at garbage collection."""
    if process.stdin is not None:
        process.stdin.close()
    transport = getattr(process, "_transport", None)
    if transport is not None:
        transport.close()


class LocalRuntime:
    """Worker processes for one deployment. Create, :meth:`start`, submit calls, :meth:`shutdown`."""

    def __init__(self, spec: RuntimeSpec, policy: ScalePolicy | None = None, events: EventBus | None = None) -> None:
        self.spec = spec
        self.policy = policy or fixed_policy(1)
        self.events = events or EventBus()
        self.secret = secrets.token_bytes(32)
        self.workers: dict[str, WorkerHandle] = {}
        self.pending = _CallQueue()
        self._ids = itertools.count(1)
        self._worker_seq = itertools.count(1)
        self._thread: LoopThread | None = None
        self.state = "declared"
        self.target = 0
        self.reason = ""
        self.decisions: collections.deque[Decision] = collections.deque(maxlen=200)
        self.history: collections.deque[tuple[float, dict[str, int]]] = collections.deque(maxlen=1200)
        self.arrivals: collections.deque[tuple[float, float]] = collections.deque(maxlen=100_000)
        self.queue_times: collections.deque[tuple[float, float]] = collections.deque(maxlen=10_000)
        self.start_failures = 0
        self.next_start_at = 0.0
        self.last_start_error: str | None = None
        self.ready_waiters: list[asyncio.Future] = []
        self._dirty: set[str] = set()
        self._flush_scheduled = False
        self._control_task: asyncio.Task | None = None
        self.arrivals_total = 0
        self.drain_hint: tuple[str, ...] = ()  # which idle workers the policy would drain first
        self.autoscaler: AutoscalerSnapshot | None = None  # the policy's latest figures

    # ================================================================== public, thread-safe
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._thread is not None
        return self._thread.loop

    def start(self) -> None:
        """Start the control loop (non-blocking); workers begin provisioning."""
        if self._thread is not None:
            return
        self._thread = LoopThread(f"vastnb-{self.spec.name}")
        self.state = "starting"
        self._thread.run(self._start())

    def wait_ready(self, min_ready: int = 1) -> "concurrent.futures.Future[None]":
        """A future that resolves when ``min_ready`` workers serve, or fails when none can start."""
        return self._submit(self._wait_ready(min_ready))

    def submit(self, fn: FunctionSpec, payload: Payload, workload: float, sink: Any = None, kind: str = "call") -> "concurrent.futures.Future[Any]":
        """Queue one call. ``kind="map"`` skips the max_queue_time fail-fast (a batch is meant to queue)."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        call = Call(id=next(self._ids), fn=fn, payload=payload, workload=workload, future=future, sink=sink, kind=kind)
        if self.state == "shut down":
            future.set_exception(self._shut_down_error())
            return future
        self._thread_call(self._enqueue, call)
        return future

    def cancel(self, future: "concurrent.futures.Future[Any]") -> None:
        self._thread_call(self._cancel_future, future)

    def update(self, functions: dict[str, FunctionSpec], contexts: dict[str, ContextSpec], benchmark: bytes | None) -> "concurrent.futures.Future[None]":
        """Swap code on warm workers (no restart); re-enter only contexts whose spec changed."""
        return self._submit(self._update(functions, contexts, benchmark))

    def run_cell(self, worker_ids: list[str] | None, message: dict, sink_for: Callable[[str], Any]) -> "concurrent.futures.Future[dict[str, Any]]":
        """Run a ``%%vast_run`` cell on the given workers (None: one ready worker)."""
        return self._submit(self._run_cell(worker_ids, message, sink_for))

    def benchmark(self, benchmark: bytes) -> "concurrent.futures.Future[dict[str, float]]":
        return self._submit(self._benchmark(benchmark))

    def snapshot(self) -> DeploymentSnapshot:
        workers = tuple(h.snapshot(self._code_version(h)) for h in list(self.workers.values()))
        last = self.decisions[-1] if self.decisions else None
        figures = self.autoscaler
        if figures is not None and last is not None and figures.last_decision != last:
            figures = dataclasses.replace(figures, last_decision=last)
        return DeploymentSnapshot(
            name=self.spec.name,
            backend="local",
            state=self.state,
            workers=workers,
            autoscaler=figures or AutoscalerSnapshot(
                load=self.load_rate(),
                capacity=self.capacity(),
                target_util=0.9,
                queue_time=self.recent_queue_time(),
                target_queue_time=None,
                target_workers=self.target,
                max_workers=self.target,
                last_decision=last,
            ),
            decisions=tuple(self.decisions),
            history=tuple(self.history),
            code_version=self.code_version(),
            time=time.time(),
        )

    def logs(self, worker_id: str | None = None) -> dict[str, list[str]]:
        handles = [self.workers[worker_id]] if worker_id else list(self.workers.values())
        return {h.id: list(h.log) for h in handles}

    def kill_worker(self, worker_id: str, sig: int = signal.SIGKILL) -> None:
        """Send a signal to a worker process (fault drills and ``%vast_down WORKER``)."""
        handle = self.workers[worker_id]
        if handle.process is not None and handle.process.returncode is None:
            os.kill(handle.process.pid, sig)

    def shutdown(self, timeout: float = 15.0) -> None:
        """Drain and stop every worker, fail calls still waiting, stop the loop. Idempotent."""
        if self._thread is None or self.state == "shut down":
            self.state = "shut down"
            return
        try:
            self._thread.run(self._shutdown(timeout), timeout + 5)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass
        self._thread.stop()
        self.state = "shut down"

    # ================================================================== figures
    def code_version(self) -> str:
        import hashlib

        h = hashlib.sha256()
        for name in sorted(self.spec.functions):
            h.update(self.spec.functions[name].hash.encode())
        for name in sorted(self.spec.contexts):
            h.update(self.spec.contexts[name].hash.encode())
        return h.hexdigest()[:8]

    def _code_version(self, handle: WorkerHandle) -> str:
        wanted = {f.hash for f in self.spec.functions.values()}
        if wanted <= handle.code and all(handle.contexts.get(n) == c.hash for n, c in self.spec.contexts.items()):
            return self.code_version()
        return "stale" if handle.code else ""

    def serving(self) -> list[WorkerHandle]:
        return [h for h in self.workers.values() if h.serving]

    def default_perf(self) -> float:
        known = [h.perf_score for h in self.workers.values() if h.perf_score]
        return sum(known) / len(known) if known else 100.0

    def capacity(self) -> float:
        return sum(h.perf_score or self.default_perf() for h in self.serving())

    def load_rate(self, window: float = 10.0) -> float:
        """Workload units per second that arrived over the last ``window`` seconds."""
        now = time.monotonic()
        total = sum(w for _, w in _within(self.arrivals, now - window))
        return total / window

    def recent_queue_time(self, window: float = 10.0) -> float:
        now = time.monotonic()
        recent = [q for _, q in _within(self.queue_times, now - window)]
        waiting = [now - self.pending[0].created] if self.pending else []
        return max(recent + waiting, default=0.0)

    def last_activity(self) -> float | None:
        return self.arrivals[-1][0] if self.arrivals else None

    def estimated_wait(self, extra: float = 0.0) -> float | None:
        serving = self.serving()
        if not serving:
            return None
        queued = self.pending.load + sum(h.load for h in serving) + extra
        return queued / max(self.capacity(), 1e-9)

    # ================================================================== loop side
    def _thread_call(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._thread is None:
            raise RuntimeError("the runtime is not started")
        self._thread.call_soon(fn, *args)

    def _submit(self, coro: Any) -> "concurrent.futures.Future[Any]":
        if self._thread is None:
            raise RuntimeError("the runtime is not started")
        return self._thread.submit(coro)

    def _shut_down_error(self) -> DeploymentShutDown:
        return DeploymentShutDown(
            f"deployment {self.spec.name!r} is shut down; create a new vastnb.Deployment (or run "
            "%vast_deployment again) to start workers."
        )

    async def _start(self) -> None:
        self._control_task = asyncio.create_task(self._control_loop())

    async def _control_loop(self) -> None:
        last_sample = 0.0
        while self.state not in ("shut down", "shutting down"):
            try:
                self._control_step()
                now = time.monotonic()
                if now - last_sample >= 1.0:
                    last_sample = now
                    self._sample_history()
                await self._health_checks()
            except Exception:  # noqa: BLE001 - the loop must survive a bug in one step
                import traceback

                traceback.print_exc()
            await asyncio.sleep(CONTROL_PERIOD)

    def _control_step(self) -> None:
        now = time.monotonic()
        target, reason = self.policy(self, now)
        if target != self.target or reason != self.reason:
            current = sum(1 for h in self.workers.values() if h.state.alive)
            decision = Decision(time=time.time(), current=current, target=target, reason=reason)
            if target != self.target:
                self.decisions.append(decision)
                self.events.publish(Event(EventKind.DECISION, time.time(), data={"decision": decision}))
            self.target, self.reason = target, reason
        alive = [h for h in self.workers.values() if h.state.alive and not h.stopping]
        if len(alive) < self.target and now >= self.next_start_at:
            for _ in range(self.target - len(alive)):
                self._launch()
        elif len(alive) > self.target:
            idle = [h for h in alive if h.state.serving and not h.inflight]
            idle.sort(key=lambda h: (h.id not in self.drain_hint, h.perf_score or 0.0))
            for handle in idle[: len(alive) - self.target]:
                asyncio.create_task(self._drain(handle))
        if self.state == "starting" and any(h.serving for h in self.workers.values()):
            self.state = "running"

    def _sample_history(self) -> None:
        counts: dict[str, int] = {}
        for h in self.workers.values():
            if h.state in (WorkerState.STOPPED,) and h.stopped_at and time.time() - h.stopped_at > 60:
                continue
            counts[h.state.value] = counts.get(h.state.value, 0) + 1
        self.history.append((time.time(), counts))
        self.events.publish(Event(EventKind.AUTOSCALER, time.time(), data={"snapshot": self.snapshot().autoscaler}))

    # ------------------------------------------------------------------ workers
    def _machine_slots(self) -> list[Any]:
        if self.spec.gpus:
            return [g for g in self.spec.gpus for _ in range(max(1, self.spec.workers_per_gpu))]
        return []

    def machine_max_workers(self) -> int | None:
        """GPU slots when the machine has GPUs; without one, a bound that keeps a laptop usable."""
        if self.spec.gpus:
            return len(self._machine_slots())
        return max(CPU_WORKER_CAP, os.cpu_count() or 1)

    def _pick_gpu(self) -> Any:
        slots = self._machine_slots()
        if not slots:
            return None
        used: dict[int, int] = {}
        for h in self.workers.values():
            if h.state.alive and h.gpu is not None:
                used[h.gpu.index] = used.get(h.gpu.index, 0) + 1
        return min(self.spec.gpus, key=lambda g: used.get(g.index, 0))

    def _launch(self) -> WorkerHandle:
        n = next(self._worker_seq)
        gpu = self._pick_gpu()
        label = f"{gpu.constant or gpu.name} #{gpu.index}" if gpu is not None else None
        handle = WorkerHandle(id=f"w{n}", index=n, gpu=gpu, gpu_label=label)
        self.workers[handle.id] = handle
        self._publish_worker(handle)
        handle.tasks.append(asyncio.create_task(self._run_worker(handle)))
        return handle

    async def _run_worker(self, handle: WorkerHandle) -> None:
        t0 = time.perf_counter()
        try:
            await self._spawn(handle)
            handle.phases.append(("process start", time.perf_counter() - t0))
            self._publish_worker(handle)
            self._send(handle, {"op": "init", "id": 0, **self._init_message(handle)})
        except Exception as exc:  # noqa: BLE001
            self._worker_failed(handle, f"could not start the worker process: {exc}\n" + "".join(list(handle.log)[-20:]))

    def _init_message(self, handle: WorkerHandle) -> dict[str, Any]:
        functions = [self._install_item(f) for f in self.spec.functions.values()]
        handle.code |= {f.hash for f in self.spec.functions.values()}
        handle.contexts = {n: c.hash for n, c in self.spec.contexts.items()}
        return {
            "functions": functions,
            "contexts": [c.message() for c in self.spec.contexts.values()],
            "benchmark": self.spec.benchmark,
        }

    @staticmethod
    def _install_item(f: FunctionSpec) -> tuple[str, bytes, dict[str, list[str]], str, bool]:
        return (f.hash, f.blob.data, f.blob.sources, f.name, f.allow_parallel)

    async def _spawn(self, handle: WorkerHandle) -> None:
        env = dict(os.environ)
        env.update(self.spec.env)
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env["VASTNB_WORKER_ID"] = handle.id
        env["PYTHONUNBUFFERED"] = "1"
        if handle.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(handle.gpu.uuid or handle.gpu.index)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vastnb.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env, cwd=self.spec.cwd or os.getcwd(), start_new_session=True,
        )
        handle.process = process
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        process.stdin.write((json.dumps({"id": handle.id, "secret": self.secret.hex()}) + "\n").encode())
        await process.stdin.drain()
        handle.tasks.append(asyncio.create_task(self._read_log(handle, process.stderr)))
        handle.tasks.append(asyncio.create_task(self._watch_exit(handle, process)))
        line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        text = line.decode(errors="replace").strip()
        if not text.startswith("VASTNB_WORKER_PORT="):
            await asyncio.sleep(0.2)  # let the log reader collect the crash
            raise RuntimeError(f"the worker process exited before serving (said {text!r})")
        port = int(text.split("=", 1)[1])
        handle.conn = await Connection.connect("127.0.0.1", port, self.secret)
        handle.state = WorkerState.LOADING
        handle.tasks.append(asyncio.create_task(self._read(handle)))

    async def _read_log(self, handle: WorkerHandle, stream: asyncio.StreamReader) -> None:
        while True:
            line = await stream.readline()
            if not line:
                return
            text = line.decode(errors="replace").rstrip("\n")
            handle.log.append(text)
            self.events.publish(Event(EventKind.LOG, time.time(), data={"worker": handle.id, "line": text}))

    async def _watch_exit(self, handle: WorkerHandle, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        await asyncio.sleep(0.05)  # let the reader see EOF and the log reader drain
        _close_pipes(process)
        if handle.stopping and code == 0:
            self._finish_stop(handle)
            return
        if handle.state in (WorkerState.STOPPED, WorkerState.ERROR):
            self._lose_calls(handle, f"its process exited with code {code}")
            return
        tail = "\n".join(list(handle.log)[-15:])
        why = f"signal {-code}" if code < 0 else f"code {code}"
        self._worker_failed(handle, f"worker process exited with {why}" + (f"\n{tail}" if tail else ""))

    async def _read(self, handle: WorkerHandle) -> None:
        conn = handle.conn
        assert conn is not None
        try:
            while True:
                msg = await conn.recv()
                handle.last_seen = time.monotonic()
                self._on_message(handle, msg)
        except (EOFError, ConnectionError):
            pass
        except Exception as exc:  # noqa: BLE001
            handle.log.append(f"[runtime] connection error: {exc!r}")
        conn.close()
        if not handle.stopping and handle.state.alive:
            await asyncio.sleep(0.2)  # the exit watcher usually explains why
            if handle.state.alive:
                self._worker_failed(handle, "the connection to the worker was lost")

    # ------------------------------------------------------------------ messages
    def _on_message(self, handle: WorkerHandle, msg: dict[str, Any]) -> None:
        op = msg["op"]
        if op == "result":
            call = handle.inflight.get(msg["id"])
            if call is not None:
                self._finish_call(handle, call, msg)
                return
            fut = handle.replies.pop(msg["id"], None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif op == "out":
            call = handle.inflight.get(msg["id"])
            sink = call.sink if call is not None else handle.sinks.get(msg["id"])
            if sink is not None:
                for stream, text in msg["chunks"]:
                    try:
                        sink(stream, text)  # type: ignore[operator]
                    except Exception:  # noqa: BLE001
                        pass
        elif op in ("ack", "pong", "bye"):
            if op == "pong":
                handle.ping_sent = None
                handle.gpu_memory_mb = msg.get("gpu_memory_mb", handle.gpu_memory_mb)
            fut = handle.replies.pop(msg.get("id", 0), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif op == "state":
            handle.state = WorkerState(msg["state"])
            handle.phases.extend(p for p in msg.get("phases", []) if p not in handle.phases)
            self._publish_worker(handle)
        elif op == "bench_run":
            handle.bench_runs.append(msg["throughput"])
            self.events.publish(Event(EventKind.BENCHMARK, time.time(), handle.snapshot(self._code_version(handle)),
                                      {"run": msg["run"], "throughput": msg["throughput"]}))
        elif op == "ready":
            handle.perf_score = msg.get("score")
            handle.phases.extend(p for p in msg.get("phases", []) if p not in handle.phases)
            handle.state = WorkerState.READY
            handle.ready_at = time.time()
            handle.idle_since = time.monotonic()
            self.start_failures = 0
            if self.state == "starting":
                self.state = "running"
            self._publish_worker(handle)
            self._resolve_waiters()
            self._dispatch()
        elif op == "failed":
            handle.phases.extend(p for p in msg.get("phases", []) if p not in handle.phases)
            err = build_remote_exception(msg["error"], f"worker {handle.id}")
            self._worker_failed(handle, f"{msg['phase']} failed:{err.__cause__}")

    # ------------------------------------------------------------------ state changes
    def _publish_worker(self, handle: WorkerHandle, immediate: bool = True) -> None:
        if immediate:
            self.events.publish(Event(EventKind.WORKER, time.time(), handle.snapshot(self._code_version(handle))))
            return
        self._dirty.add(handle.id)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_later(0.1, self._flush_dirty)

    def _flush_dirty(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, set()
        for wid in dirty:
            handle = self.workers.get(wid)
            if handle is not None:
                self._publish_worker(handle)

    def _worker_failed(self, handle: WorkerHandle, error: str) -> None:
        if handle.state == WorkerState.ERROR:
            return
        was_serving = handle.ready_at is not None
        handle.state = WorkerState.ERROR
        handle.error = error
        handle.stopped_at = time.time()
        if not was_serving:
            self.start_failures += 1
            self.last_start_error = error
            delay = min(60.0, 0.5 * 2 ** (self.start_failures - 1))
            self.next_start_at = time.monotonic() + delay
        self._publish_worker(handle)
        self._lose_calls(handle, error.splitlines()[0] if error else "it failed")
        self._kill(handle)
        self._resolve_waiters()
        self._dispatch()

    def _lose_calls(self, handle: WorkerHandle, why: str) -> None:
        calls, handle.inflight = list(handle.inflight.values()), {}
        handle.load = 0.0
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

    def _kill(self, handle: WorkerHandle) -> None:
        if handle.conn is not None:
            handle.conn.close()
        proc = handle.process
        if proc is not None and proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _finish_stop(self, handle: WorkerHandle) -> None:
        if handle.state != WorkerState.STOPPED:
            handle.state = WorkerState.STOPPED
            handle.stopped_at = time.time()
            self._publish_worker(handle)
        self._lose_calls(handle, "it was stopped")
        self._dispatch()

    async def _drain(self, handle: WorkerHandle, grace: float = 10.0) -> None:
        if handle.stopping:
            return
        handle.stopping = True
        handle.state = WorkerState.DRAINING
        self._publish_worker(handle)
        deadline = time.monotonic() + grace
        while handle.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if handle.conn is not None and not handle.conn.closed:
            try:
                await asyncio.wait_for(self._request(handle, {"op": "stop", "grace": grace}), grace + 5)
            except Exception:  # noqa: BLE001
                pass
        proc = handle.process
        if proc is not None:
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                self._kill(handle)
        self._finish_stop(handle)

    # ------------------------------------------------------------------ calls
    def _enqueue(self, call: Call) -> None:
        if call.future.done():
            return
        if self.state in ("shut down", "shutting down"):
            self._fail(call, self._shut_down_error())
            return
        wait = self.estimated_wait(call.workload)
        if wait is not None and wait > call.fn.max_queue_time and call.kind == "call":
            self._fail(call, QueueTimeout(
                f"{call.fn.name}() would wait about {wait:.1f} s in the queue, more than its max_queue_time of "
                f"{call.fn.max_queue_time:g} s. Add workers (app.configure_autoscaling(max_workers=...)), "
                "send fewer calls at once, or raise max_queue_time in @app.remote(...).",
                limit=call.fn.max_queue_time, estimated_wait=wait))
            return
        self.arrivals.append((time.monotonic(), call.workload))
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
            if not h.serving or len(h.inflight) >= window:
                continue
            key = (h.load / (h.perf_score or default), h.calls_done)  # ties go to the less used worker
            if key < best_key:
                best, best_key = h, key
        return best

    def _send_call(self, handle: WorkerHandle, call: Call) -> None:
        assert handle.conn is not None
        if call.fn.hash not in handle.code:
            self._send(handle, {"op": "install", "id": 0, "functions": [self._install_item(call.fn)]})
            handle.code.add(call.fn.hash)
        call.attempts += 1
        call.worker = handle
        handle.inflight[call.id] = call
        handle.idle_since = None
        handle.load += call.workload
        self.queue_times.append((time.monotonic(), time.monotonic() - call.created))
        try:
            handle.conn.send(call.payload, call.id)
        except Exception as exc:  # noqa: BLE001 - connection already gone: the reader will requeue
            handle.log.append(f"[runtime] send failed: {exc!r}")
        if handle.state == WorkerState.READY:
            handle.state = WorkerState.BUSY
            self._publish_worker(handle, immediate=False)

    def _finish_call(self, handle: WorkerHandle, call: Call, msg: dict[str, Any]) -> None:
        handle.inflight.pop(call.id, None)
        handle.load = max(0.0, handle.load - call.workload)
        handle.calls_done += 1
        if not handle.inflight:
            handle.idle_since = time.monotonic()
        if not handle.inflight and handle.state == WorkerState.BUSY:
            handle.state = WorkerState.READY
            self._publish_worker(handle, immediate=False)
        if call.timer is not None:
            call.timer.cancel()
        if not call.future.done():
            if msg.get("ok"):
                call.future.set_result(msg.get("value"))
            elif msg.get("cancelled"):
                call.future.cancel()
            else:
                call.future.set_exception(build_remote_exception(msg["error"], f"worker {handle.id} running {call.fn.name}()"))
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
            self._send(handle, {"op": "cancel", "id": 0, "target": call.id})

    # ------------------------------------------------------------------ control requests
    def _send(self, handle: WorkerHandle, msg: dict[str, Any]) -> None:
        assert handle.conn is not None
        handle.conn.send(dumps_payload(msg, "message"), msg.get("id", 0))

    async def _request(self, handle: WorkerHandle, msg: dict[str, Any], sink: Any = None) -> dict[str, Any]:
        req_id = next(self._ids)
        fut = self.loop.create_future()
        handle.replies[req_id] = fut
        if sink is not None:
            handle.sinks[req_id] = sink
        try:
            self._send(handle, {**msg, "id": req_id})
            return await fut
        except asyncio.CancelledError:
            if handle.conn is not None and not handle.conn.closed:  # e.g. an interrupted %%vast_run cell
                self._send(handle, {"op": "cancel", "id": 0, "target": req_id})
            raise
        finally:
            handle.sinks.pop(req_id, None)
            handle.replies.pop(req_id, None)

    async def _health_checks(self) -> None:
        now = time.monotonic()
        for handle in list(self.workers.values()):
            if not handle.state.alive or handle.conn is None or handle.conn.closed or handle.stopping:
                continue
            if handle.ping_sent is not None and now - handle.ping_sent > self.spec.health_timeout:
                self._worker_failed(handle, f"worker stopped answering health checks for {self.spec.health_timeout:g} s; replaced")
                continue
            if handle.ping_sent is None and now - handle.last_seen > 2.0:
                handle.ping_sent = now
                self._send(handle, {"op": "ping", "id": 0})

    async def _wait_ready(self, min_ready: int) -> None:
        while True:
            serving = [h for h in self.workers.values() if h.serving]
            if len(serving) >= min_ready:
                return
            starting = [h for h in self.workers.values() if h.state.starting]
            if serving and not starting and self.start_failures > 0:
                return  # some workers serve and the others keep failing: go on with what there is
            if not starting and self.start_failures >= 3 and self.last_start_error:
                raise WorkerStartError(
                    f"no worker of deployment {self.spec.name!r} could start ({self.start_failures} attempts). "
                    f"The last one failed with:\n{self.last_start_error}"
                )
            if self.state in ("shut down", "shutting down"):
                raise self._shut_down_error()
            fut = self.loop.create_future()
            self.ready_waiters.append(fut)
            try:
                await asyncio.wait_for(fut, 1.0)
            except asyncio.TimeoutError:
                pass

    def _resolve_waiters(self) -> None:
        waiters, self.ready_waiters = self.ready_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _update(self, functions: dict[str, FunctionSpec], contexts: dict[str, ContextSpec], benchmark: bytes | None) -> None:
        changed_contexts = [c for n, c in contexts.items() if self.spec.contexts.get(n, None) is None or self.spec.contexts[n].hash != c.hash]
        self.spec.functions = dict(functions)
        self.spec.contexts = dict(contexts)
        self.spec.benchmark = benchmark
        waits = []
        for handle in self.workers.values():
            if not handle.state.alive or handle.conn is None or handle.conn.closed:
                continue
            missing = [f for f in functions.values() if f.hash not in handle.code]
            if missing:
                handle.code |= {f.hash for f in missing}
                waits.append(self._request(handle, {"op": "install", "functions": [self._install_item(f) for f in missing]}))
            stale = [c for c in changed_contexts if handle.contexts.get(c.name) != c.hash]
            if stale:
                for c in stale:
                    handle.contexts[c.name] = c.hash
                waits.append(self._request_ok(handle, {"op": "context", "contexts": [c.message() for c in stale]}))
        results = await asyncio.gather(*waits, return_exceptions=True)
        for h in self.workers.values():
            self._publish_worker(h)
        self.events.publish(Event(EventKind.CODE, time.time(), data={"version": self.code_version(), "functions": sorted(functions)}))
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def _request_ok(self, handle: WorkerHandle, msg: dict[str, Any], sink: Any = None) -> Any:
        reply = await self._request(handle, msg, sink)
        if reply.get("op") == "result" and not reply.get("ok"):
            raise build_remote_exception(reply["error"], f"worker {handle.id}")
        if reply.get("error"):
            raise build_remote_exception(reply["error"], f"worker {handle.id}")
        return reply.get("value")

    async def _run_cell(self, worker_ids: list[str] | None, message: dict, sink_for: Callable[[str], Any]) -> dict[str, Any]:
        if worker_ids is None:
            await self._wait_ready(1)
            candidates = sorted(self.serving(), key=lambda h: h.load / (h.perf_score or self.default_perf()))
            handles = candidates[:1]
        else:
            handles = []
            for wid in worker_ids:
                handle = self.workers.get(wid)
                if handle is None or not handle.serving:
                    known = ", ".join(h.id for h in self.serving()) or "none"
                    raise LookupError(f"worker {wid!r} is not serving; serving workers: {known}.")
                handles.append(handle)
        results = await asyncio.gather(
            *(self._request_ok(h, {"op": "run", **message}, sink_for(h.id)) for h in handles), return_exceptions=True)
        return {h.id: r for h, r in zip(handles, results)}

    async def _benchmark(self, benchmark: bytes) -> dict[str, float]:
        handles = self.serving()
        results = await asyncio.gather(*(self._request_ok(h, {"op": "bench", "benchmark": benchmark}) for h in handles))
        out = {}
        for h, score in zip(handles, results):
            h.perf_score = score
            self._publish_worker(h)
            out[h.id] = score
        return out

    async def _shutdown(self, timeout: float) -> None:
        self.state = "shutting down"
        if self._control_task is not None:
            self._control_task.cancel()
        for call in list(self.pending):
            self._fail(call, self._shut_down_error())
        self.pending.clear()
        handles = [h for h in self.workers.values() if h.state.alive]
        await asyncio.gather(*(self._drain(h, grace=timeout / 2) for h in handles), return_exceptions=True)
        for h in self.workers.values():
            self._kill(h)
        for h in self.workers.values():
            if h.process is not None:
                try:
                    await asyncio.wait_for(h.process.wait(), 5)
                except asyncio.TimeoutError:
                    pass
                _close_pipes(h.process)
            if h.conn is not None:
                try:
                    await asyncio.wait_for(h.conn.writer.wait_closed(), 1)
                except (asyncio.TimeoutError, ConnectionError, OSError):
                    pass
        tasks = [t for h in self.workers.values() for t in h.tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.state = "shut down"
        self.events.publish(Event(EventKind.SHUTDOWN, time.time()))
        self._resolve_waiters()

    def kill_all_now(self) -> None:
        """Last resort at interpreter exit: SIGKILL every worker process group."""
        for h in list(self.workers.values()):
            proc = h.process
            if proc is not None and proc.returncode is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def _within(entries: "collections.deque[tuple[float, float]]", since: float) -> "itertools.takewhile[tuple[float, float]]":
    """The newest ``(time, value)`` entries recorded at ``since`` or later (entries are in time order)."""
    return itertools.takewhile(lambda entry: entry[0] >= since, reversed(entries))
