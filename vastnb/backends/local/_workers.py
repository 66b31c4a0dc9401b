"""Worker processes of the local runtime: starting them, reading what they say, health, draining, failures.

Each worker is a ``python -m vastnb.worker`` process in its own session, pinned to
a GPU when the machine has matching ones, listening on 127.0.0.1 for the runtime's
authenticated connection. What it reports (typed :mod:`vastnb.wire.messages`)
moves its :class:`~vastnb.backends.local._handle.WorkerHandle` through the states
of :class:`vastnb.events.WorkerState` and out as events.

Health: a thread in the worker answers pings on its stdin/stdout pipes, off its
event loop, so a call that blocks the loop for minutes leaves the worker busy,
not hung. A worker is replaced when it stops answering for ``health_check_timeout``
(a stopped or frozen process) or reports its loop stuck that long with nothing
running (a deadlock in the worker).

Start failures: workers that fail before serving are respawned with a growing
delay. After ``FAILING_AFTER`` failures in a row with no worker serving, calls
fail at once with the start error; after ``START_ATTEMPTS`` no more starts are
made until the code changes (``update``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ...errors import WorkerStartError
from ...events import Event, EventBus, EventKind, WorkerState
from ...spec import DeploymentSpec, FunctionSpec
from ...wire import Connection, build_remote_exception, sweep_segments
from ...wire import messages as m
from ._handle import Call, WorkerHandle

__all__ = ["FAILING_AFTER", "START_ATTEMPTS", "WorkerProcesses", "close_pipes"]

FAILING_AFTER = 3  # start failures in a row (none serving) after which waiting calls fail with the start error
START_ATTEMPTS = 6  # start failures in a row after which no worker is started until the code changes
MAX_START_DELAY = 30.0  # seconds between start attempts, at most (0.5 s, doubling)
_START_PHASES = {WorkerState.PROVISIONING: "process start", WorkerState.LOADING: "loading",
                 WorkerState.BENCHMARKING: "benchmark"}


def close_pipes(process: asyncio.subprocess.Process) -> None:
    """Release a finished worker's pipes now rather than at garbage collection."""
    if process.stdin is not None:
        process.stdin.close()
    transport = getattr(process, "_transport", None)
    if transport is not None:
        transport.close()


class WorkerProcesses:
    """The process half of :class:`~vastnb.backends.local.LocalBackend` (runs on the runtime's loop)."""

    # provided by LocalBackend
    spec: DeploymentSpec
    events: EventBus
    workers: dict[str, WorkerHandle]
    secret: bytes
    gpus: list[Any]
    env: dict[str, str]
    cwd: str
    workers_per_gpu: int
    health_check_timeout: float
    start_timeout: float
    start_failures: int
    stopped_kept: int
    last_start_error: str | None
    last_start_cause: BaseException | None
    start_summary: str | None
    next_start_at: float
    state: str
    pending: Any  # ._routing.CallQueue
    _worker_seq: Iterator[int]
    _health_at: float

    if TYPE_CHECKING:
        @property
        def loop(self) -> asyncio.AbstractEventLoop: ...
        def _dispatch(self) -> None: ...
        def _finish_call(self, handle: WorkerHandle, call: Call, result: m.Result, *, dispatch: bool = True,
                         service: float | None = None) -> None: ...
        def _finish_batch(self, handle: WorkerHandle, results: tuple[tuple[int, m.Result], ...]) -> None: ...
        def _lose_calls(self, handle: WorkerHandle, why: str) -> None: ...
        def _fail(self, call: Call, exc: BaseException) -> None: ...
        def _resolve_waiters(self) -> None: ...
        def _next_id(self) -> int: ...
        def _code_version(self, handle: WorkerHandle) -> str: ...

    # ------------------------------------------------------------------ capacity of the machine
    def _machine_slots(self) -> list[Any]:
        return [g for g in self.gpus for _ in range(max(1, self.workers_per_gpu))] if self.gpus else []

    def _pick_gpu(self) -> Any:
        slots = self._machine_slots()
        if not slots:
            return None
        used: dict[int, int] = {}
        for h in self.workers.values():
            if h.state.alive and h.gpu is not None:
                used[h.gpu.index] = used.get(h.gpu.index, 0) + 1
        return min(self.gpus, key=lambda g: used.get(g.index, 0))

    # ------------------------------------------------------------------ starting
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
            self._send(handle, self._init_message(handle))
        except Exception as exc:  # noqa: BLE001
            self._worker_failed(handle, f"could not start the worker process: {exc}\n" + "\n".join(list(handle.log)[-20:]),
                                summary=f"could not start the worker process: {exc}")

    def _init_message(self, handle: WorkerHandle) -> m.Init:
        handle.code |= {f.hash for f in self.spec.functions.values()}
        handle.contexts = {n: c.hash for n, c in self.spec.contexts.items()}
        return m.Init(
            functions=tuple(m.InstallFunction.of(f) for f in self.spec.functions.values()),
            contexts=tuple(self.spec.contexts.values()),
            benchmark=self.spec.benchmark_spec,
        )

    async def _spawn(self, handle: WorkerHandle) -> None:
        env = dict(os.environ)
        env.update(self.env)
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env["VASTNB_WORKER_ID"] = handle.id
        env["PYTHONUNBUFFERED"] = "1"
        if handle.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(handle.gpu.uuid or handle.gpu.index)
        creating = asyncio.ensure_future(asyncio.create_subprocess_exec(
            sys.executable, "-m", "vastnb.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env, cwd=self.cwd, start_new_session=True,
        ))
        try:
            process = await asyncio.shield(creating)
        except asyncio.CancelledError:  # shut down while the process was being made: end it, do not leak it
            process = await creating
            handle.process = process
            self._kill(handle)
            await process.wait()
            close_pipes(process)
            raise
        handle.process = process
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        process.stdin.write((json.dumps({"id": handle.id, "secret": self.secret.hex()}) + "\n").encode())
        await process.stdin.drain()
        handle.tasks.append(asyncio.create_task(self._read_log(handle, process.stderr)))
        handle.tasks.append(asyncio.create_task(self._watch_exit(handle, process)))
        line = await asyncio.wait_for(process.stdout.readline(), self.start_timeout)
        text = line.decode(errors="replace").strip()
        if not text.startswith("VASTNB_WORKER_PORT="):
            await asyncio.sleep(0.2)  # let the log reader collect the crash
            raise RuntimeError(f"the worker process exited before serving (said {text!r})")
        port = int(text.split("=", 1)[1])
        handle.conn = await Connection.connect("127.0.0.1", port, self.secret)
        handle.port = port
        handle.state = WorkerState.LOADING
        handle.heartbeat_at = time.monotonic()
        handle.tasks.append(asyncio.create_task(self._read(handle)))
        handle.tasks.append(asyncio.create_task(self._read_heartbeats(handle, process.stdout)))

    # ------------------------------------------------------------------ listening
    async def _read_log(self, handle: WorkerHandle, stream: asyncio.StreamReader) -> None:
        while True:
            line = await stream.readline()
            if not line:
                return
            text = line.decode(errors="replace").rstrip("\n")
            handle.log.append(text)
            self.events.publish(Event(EventKind.LOG, time.time(), data={"worker": handle.id, "line": text}))

    async def _read_heartbeats(self, handle: WorkerHandle, stream: asyncio.StreamReader) -> None:
        """The worker's heartbeat answers: one JSON line per ping, ``{"lag": s, "busy": n}``."""
        while True:
            line = await stream.readline()
            if not line:
                return
            try:
                health = json.loads(line)
                handle.loop_lag, handle.busy_requests = float(health["lag"]), int(health["busy"])
            except (ValueError, KeyError, TypeError):
                handle.log.append(f"[runtime] unreadable heartbeat: {line[:200]!r}")
                continue
            handle.heartbeat_at = time.monotonic()

    async def _watch_exit(self, handle: WorkerHandle, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        await asyncio.sleep(0.05)  # let the reader see EOF and the log reader drain
        close_pipes(process)
        sweep_segments([process.pid])  # results it sent that nobody mapped
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
                req_id, msg = await conn.recv()
                handle.last_seen = time.monotonic()
                self._on_message(handle, req_id, msg)
                del msg  # a result's arrays are views lent by the worker: the caller holds them, not this loop
        except (EOFError, ConnectionError):
            pass
        except Exception as exc:  # noqa: BLE001
            handle.log.append(f"[runtime] connection error: {exc!r}")
        conn.close()
        if not handle.stopping and handle.state.alive:
            await asyncio.sleep(0.2)  # the exit watcher usually explains why
            if handle.state.alive:
                self._worker_failed(handle, "the connection to the worker was lost")

    def _on_message(self, handle: WorkerHandle, req_id: int, msg: Any) -> None:
        if isinstance(msg, m.Result):
            call = handle.inflight.get(req_id)
            if call is not None:
                self._finish_call(handle, call, msg)
                return
            self._answer(handle, req_id, msg)
        elif isinstance(msg, m.ResultBatch):
            self._finish_batch(handle, msg.results)
        elif isinstance(msg, m.Output):
            call = handle.inflight.get(req_id)
            sink = call.sink if call is not None else handle.sinks.get(req_id)
            if sink is not None:
                for stream, text in msg.chunks:
                    try:
                        sink(stream, text)
                    except Exception:  # noqa: BLE001 - a broken sink must not stop the worker's other calls
                        pass
        elif isinstance(msg, m.Pong):
            handle.ping_sent = None
            handle.gpu_memory_mb = msg.gpu_memory_mb if msg.gpu_memory_mb is not None else handle.gpu_memory_mb
        elif isinstance(msg, (m.Ack, m.Bye)):
            self._answer(handle, req_id, msg)
        elif isinstance(msg, m.StateChanged):
            handle.state = WorkerState(msg.state)
            handle.phases.extend(p for p in msg.phases if p not in handle.phases)
            self._publish_worker(handle)
        elif isinstance(msg, m.BenchmarkRun):
            handle.bench_runs.append(msg.throughput)
            self.events.publish(Event(EventKind.BENCHMARK, time.time(), handle.snapshot(self._code_version(handle)),
                                      {"run": msg.run, "throughput": msg.throughput}))
        elif isinstance(msg, m.Ready):
            handle.perf_score = msg.score
            handle.phases.extend(p for p in msg.phases if p not in handle.phases)
            handle.state = WorkerState.READY
            handle.ready_at = time.time()
            handle.idle_since = handle.serving_since = time.monotonic()
            self.start_failures = 0
            if self.state == "starting":
                self.state = "running"
            self._publish_worker(handle)
            self._resolve_waiters()
            self._dispatch()
        elif isinstance(msg, m.StartFailed):
            handle.phases.extend(p for p in msg.phases if p not in handle.phases)
            err = build_remote_exception(msg.error, f"worker {handle.id}")
            phase = "benchmark" if msg.phase == "benchmarking" else msg.phase
            said = "loading" if phase.startswith("context ") else msg.phase  # "context Model" failed while loading
            last = f"{msg.error.type.rsplit('.', 1)[-1]}: {msg.error.message}" if msg.error.message else msg.error.type
            self._worker_failed(handle, f"{said} failed:{err.__cause__}", phase=phase, cause=err,
                                summary=f"{phase} failed: {last}")

    @staticmethod
    def _answer(handle: WorkerHandle, req_id: int, msg: m.Message) -> None:
        fut = handle.replies.pop(req_id, None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    # ------------------------------------------------------------------ requests to a worker
    def _send(self, handle: WorkerHandle, msg: m.Message, req_id: int = 0) -> None:
        assert handle.conn is not None
        handle.conn.send_message(msg, req_id)

    async def _request(self, handle: WorkerHandle, msg: m.Message, sink: Any = None) -> m.Message:
        req_id = self._next_id()
        fut = self.loop.create_future()
        handle.replies[req_id] = fut
        if sink is not None:
            handle.sinks[req_id] = sink
        try:
            self._send(handle, msg, req_id)
            return await fut  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            if handle.conn is not None and not handle.conn.closed:  # e.g. an interrupted %%vast_run cell
                self._send(handle, m.Cancel(req_id))
            raise
        finally:
            handle.sinks.pop(req_id, None)
            handle.replies.pop(req_id, None)

    async def _request_ok(self, handle: WorkerHandle, msg: m.Message, sink: Any = None) -> Any:
        """Send a request and return its result's value; a remote failure raises as the remote exception."""
        reply = await self._request(handle, msg, sink)
        error = reply.error if isinstance(reply, (m.Result, m.Ack)) else None
        if error is not None:
            raise build_remote_exception(error, f"worker {handle.id}")
        return reply.value if isinstance(reply, m.Result) else None

    # ------------------------------------------------------------------ health
    async def _health_checks(self) -> None:
        """Ping every worker's heartbeat thread; replace a worker that stopped answering (a stopped or frozen
        process) or whose event loop is stuck with no request running (a deadlock in the worker). A worker whose
        loop is blocked by a running call is busy: it answers, and keeps its calls."""
        now = time.monotonic()
        limit = self.health_check_timeout
        runtime_stalled = now - self._health_at > limit / 2  # this loop was late: answers may be unread
        self._health_at = now
        period = min(1.0, limit / 3)
        for handle in list(self.workers.values()):
            if not handle.state.alive or handle.stopping or handle.heartbeat_at is None:
                continue
            proc = handle.process
            if proc is not None and proc.stdin is not None and not proc.stdin.is_closing() and now - handle.ping_written >= period:
                handle.ping_written = now
                try:
                    proc.stdin.write(b"ping\n")
                except (ConnectionError, RuntimeError):  # the process is gone: its exit watcher reports it
                    pass
            if runtime_stalled:
                handle.heartbeat_at = max(handle.heartbeat_at, now - period)
            elif now - handle.heartbeat_at > limit:
                self._worker_failed(handle, f"worker stopped answering health checks for {limit:g} s; replaced")
                continue
            elif handle.loop_lag > limit and handle.busy_requests == 0:
                self._worker_failed(handle, f"worker's event loop has not run for {handle.loop_lag:.0f} s with no "
                                            "request running (stuck); replaced")
                continue
            if handle.conn is not None and not handle.conn.closed and handle.ping_sent is None and now - handle.last_seen > 2.0:
                handle.ping_sent = now  # figures only (GPU memory); answered when the loop is free
                self._send(handle, m.Ping())

    # ------------------------------------------------------------------ state changes
    def _publish_worker(self, handle: WorkerHandle, immediate: bool = True) -> None:
        if immediate:
            self.events.publish(Event(EventKind.WORKER, time.time(), handle.snapshot(self._code_version(handle))))
            return
        self._dirty.add(handle.id)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_later(0.1, self._flush_dirty)

    _dirty: set[str]
    _flush_scheduled: bool

    def _flush_dirty(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, set()
        for wid in dirty:
            handle = self.workers.get(wid)
            if handle is not None:
                self._publish_worker(handle)

    def _worker_failed(self, handle: WorkerHandle, error: str, *, phase: str | None = None,
                       cause: BaseException | None = None, summary: str | None = None) -> None:
        if handle.state == WorkerState.ERROR:
            return
        was_serving = handle.ready_at is not None
        starting_phase = _START_PHASES.get(handle.state)
        handle.state = WorkerState.ERROR
        handle.error = error
        handle.stopped_at = time.time()
        if not was_serving:
            handle.failed_phase = phase or starting_phase or "process start"
            self._start_failed(handle, error, cause, summary or error.splitlines()[0])
        self._publish_worker(handle)
        self._lose_calls(handle, error.splitlines()[0] if error else "it failed")
        self._kill(handle)
        if self.failing():
            self._fail_waiting_calls()
        self._resolve_waiters()
        self._dispatch()

    def _start_failed(self, handle: WorkerHandle, error: str, cause: BaseException | None, summary: str) -> None:
        """Count a worker that never served; back off before the next start, stop after START_ATTEMPTS."""
        self.start_failures += 1
        self.last_start_error, self.last_start_cause, self.start_summary = error, cause, summary
        if self.start_failures >= START_ATTEMPTS:
            self.next_start_at = float("inf")
            note = (f"{self.start_failures} workers in a row failed to start; no more starts until the code changes "
                    f"(last: {summary})")
        else:
            delay = min(MAX_START_DELAY, 0.5 * 2 ** (self.start_failures - 1))
            self.next_start_at = time.monotonic() + delay
            note = f"start failed ({self.start_failures} in a row: {summary}); next start in {delay:g} s"
        self._runtime_log(handle, note)

    def _runtime_log(self, handle: WorkerHandle, text: str) -> None:
        line = f"[runtime] {text}"
        handle.log.append(line)
        self.events.publish(Event(EventKind.LOG, time.time(), data={"worker": handle.id, "line": line}))

    def failing(self) -> bool:
        """True when no worker serves and starts have failed ``FAILING_AFTER`` times in a row."""
        return self.start_failures >= FAILING_AFTER and not any(h.serving for h in list(self.workers.values()))

    def _start_error(self, fn: FunctionSpec | None = None) -> WorkerStartError | None:
        """The error for a call (or ``ensure_ready``) while :meth:`failing`, with the last start error as cause."""
        if not self.failing() or self.last_start_error is None:
            return None
        who = f"{fn.name}() cannot run: " if fn is not None else ""
        exc = WorkerStartError(
            f"{who}no worker of deployment {self.spec.name!r} could start ({self.start_failures} attempts; fix the "
            f"error and run its cell again: changed code starts workers again). The last one failed with:\n"
            f"{self.last_start_error}")
        exc.__cause__ = self.last_start_cause
        return exc

    def _fail_waiting_calls(self) -> None:
        for call in list(self.pending):
            if not call.future.done():
                error = self._start_error(call.fn)
                if error is not None:
                    self._fail(call, error)
        self.pending.clear()

    def _prune_stopped(self) -> None:
        """Keep the last ``stopped_kept`` stopped workers (views show them); drop older ones and their logs."""
        gone = [h for h in self.workers.values() if not h.state.alive and (h.process is None or h.process.returncode
                is not None) and not h.inflight and all(t.done() for t in h.tasks)]
        gone.sort(key=lambda h: h.stopped_at or 0.0)
        for h in gone[: max(0, len(gone) - self.stopped_kept)]:
            del self.workers[h.id]

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
                await asyncio.wait_for(self._request(handle, m.Stop(grace)), grace + 5)
            except Exception:  # noqa: BLE001
                pass
        proc = handle.process
        if proc is not None:
            if handle.conn is None:  # still starting: nothing to finish, nothing to say goodbye to
                self._kill(handle)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                self._kill(handle)
        self._finish_stop(handle)
