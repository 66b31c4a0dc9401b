"""The worker process: a :class:`WorkerCore` behind an authenticated frame server on 127.0.0.1.

Start-up: the parent writes one JSON line on stdin (``{"id", "secret"}``) and
keeps stdin open; the worker binds an ephemeral port on 127.0.0.1, prints
``VASTNB_WORKER_PORT=<port>`` and serves. When stdin closes (the parent died,
kernel restart included) the worker exits: no orphans.

Health checks travel on the same pipes, answered by a thread of their own: the
parent writes ``ping`` lines on stdin and the heartbeat thread answers each with
one JSON line on stdout (``{"lag": s, "busy": n}``: how long the event loop has
not run, and how many requests are running). User code that blocks the event
loop for minutes (a training step, a model load) leaves the heartbeat answering,
so the parent sees a busy worker, not a hung one; a stopped process (SIGSTOP)
answers nothing, and a loop stuck with no request running says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

from ..errors import SerializationError
from ..spec import BenchmarkSpec
from ..wire import (
    Connection,
    PayloadError,
    ProtocolError,
    dumps_small,
    format_remote_error,
    sweep_segments,
    unlink_created_segments,
)
from ..wire import messages as m
from ._batches import SerialBatch, run_serial, unpack
from .core import WorkerCore, install_output_routing
from .core import log_to_stderr as _log

_TRACE = os.environ.get("VASTNB_TRACE_CALLS") == "1"  # stamp each call's hop times into its Result

__all__ = ["main", "WorkerServer"]

TICK_S = 0.2  # how often the event loop marks that it runs (the heartbeat reports the time since)


class _Output:
    """Batches a request's output into few frames (one per loop iteration)."""

    __slots__ = ("session", "req_id", "pending", "scheduled")

    def __init__(self, session: "_Session", req_id: int) -> None:
        self.session = session
        self.req_id = req_id
        self.pending: list[tuple[str, str]] = []
        self.scheduled = False

    def write(self, stream: str, text: str) -> None:
        self.pending.append((stream, text))
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        if self.pending:
            chunks, self.pending = self.pending, []
            self.session.send(m.Output(chunks), self.req_id)


class _Session:
    """One authenticated connection from the runtime."""

    def __init__(self, server: "WorkerServer", conn: Connection) -> None:
        self.server = server
        self.core = server.core
        self.conn = conn
        self.tasks: dict[int, asyncio.Task] = {}
        self.serial = asyncio.Lock()  # serial functions run one at a time, in arrival order (the lock is FIFO)
        self.queued: dict[int, SerialBatch] = {}  # calls of batches not answered yet -> their batch
        self.batches: set[asyncio.Task] = set()

    def send(self, msg: m.Message, req_id: int = 0, what: str = "the result") -> None:
        if self.conn.closed:
            return
        if not (isinstance(msg, m.Result) and msg.ok):
            self.conn.send_message(msg, req_id)
            return
        try:  # a value that cannot be pickled fails its request as a SerializationError, as arguments do
            payload = dumps_small(msg, f"{what} on worker {self.core.worker_id}")
        except SerializationError as exc:
            self.conn.send_message(m.Result(ok=False, error=format_remote_error(exc)), req_id)
            return
        self.conn.send(payload, req_id)

    def reply_error(self, req_id: int, exc: BaseException) -> None:
        self.send(m.Result(ok=False, error=format_remote_error(exc)), req_id)

    async def run(self) -> None:
        try:
            while True:
                try:
                    req_id, msg = await self.conn.recv()
                except PayloadError as exc:
                    err = format_remote_error(exc.error)
                    err = dataclasses.replace(err, message=f"the worker could not load the request: {err.message}")
                    self.send(m.Result(ok=False, error=err), exc.req_id)
                    continue
                if not isinstance(msg, m.Message):
                    raise ProtocolError(f"not a vastnb message: {type(msg).__name__}")
                self.dispatch(req_id, msg)
                del msg  # its arrays are views lent by the runtime: the call holds them, not this loop
        except EOFError:
            pass
        except (ProtocolError, ConnectionError) as exc:
            _log(f"dropping connection: {exc}")
        finally:
            self.conn.close()
            for task in [*self.tasks.values(), *self.batches]:
                task.cancel()

    # ------------------------------------------------------------------ dispatch
    def dispatch(self, req_id: int, msg: m.Message) -> None:
        if isinstance(msg, m.CallFunction):
            received = time.perf_counter() if _TRACE else 0.0
            if self._parallel(msg):
                self._spawn(req_id, self._call(req_id, msg, received))
            else:
                self._spawn(req_id, self._serial_call(req_id, msg, received))
        elif isinstance(msg, m.CallBatch):
            self._call_batch(msg)
        elif isinstance(msg, m.Cancel):
            task = self.tasks.get(msg.target)
            if task is not None:
                task.cancel()
            elif msg.target in self.queued:
                self.queued[msg.target].cancel(msg.target)
        elif isinstance(msg, m.Ping):
            self.send(self.server.stats(self), req_id)
        elif isinstance(msg, m.Install):
            self.server.requests += 1  # loading code may import modules for seconds: busy, not hung
            try:
                for item in msg.functions:
                    self.core.install(item)
                self.send(m.Ack(), req_id)
            except Exception as exc:  # noqa: BLE001
                self.send(m.Ack(error=format_remote_error(exc)), req_id)
            finally:
                self.server.requests -= 1
        elif isinstance(msg, m.Init):
            self._spawn(req_id, self._init(req_id, msg))
        elif isinstance(msg, m.EnterContexts):
            self._spawn(req_id, self._contexts(req_id, msg))
        elif isinstance(msg, m.RunCell):
            self._spawn(req_id, self._run_cell(req_id, msg))
        elif isinstance(msg, m.RunBenchmark):
            self._spawn(req_id, self._bench(req_id, msg))
        elif isinstance(msg, m.Stop):
            self._spawn(req_id, self._stop(req_id, msg))
        else:
            raise ProtocolError(f"unexpected message {type(msg).__name__}")

    def _spawn(self, req_id: int, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks[req_id] = task
        self.server.requests += 1
        task.add_done_callback(functools.partial(self._forget, req_id))

    def _forget(self, req_id: int, task: asyncio.Task) -> None:
        self.tasks.pop(req_id, None)
        self.server.requests -= 1
        if task.cancelled():  # cancelled before its first step (its Cancel came in the same read): it never answered
            self.send(m.Result(ok=False, cancelled=True), req_id)

    async def _serial_call(self, req_id: int, msg: m.CallFunction, received: float = 0.0) -> None:
        try:
            await self.serial.acquire()
        except asyncio.CancelledError:
            self.send(m.Result(ok=False, cancelled=True), req_id)
            return
        try:
            await self._call(req_id, msg, received)
        finally:
            self.serial.release()

    # ------------------------------------------------------------------ handlers
    async def _call(self, req_id: int, msg: m.CallFunction, received: float = 0.0) -> None:
        result = await self.run_one(req_id, msg, received)
        entry = self.core.functions.get(msg.fn)
        self.send(result, req_id, f"the result of {entry.name if entry else 'the function'}()")

    async def run_one(self, req_id: int, msg: m.CallFunction, received: float = 0.0) -> m.Result:
        """Run one call; its outcome as a Result (a cancelled call's too, unless the connection is gone)."""
        out = _Output(self, req_id)
        self.server.inflight += 1
        started = time.perf_counter() if _TRACE else 0.0
        try:
            value = await self.core.call(msg.fn, msg.args, msg.kwargs, out.write)
        except asyncio.CancelledError:
            out.flush()
            if self.conn.closed:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # this call is cancelled; the task (a batch) may go on with the next
            return m.Result(ok=False, cancelled=True)
        except BaseException as exc:  # noqa: BLE001 - every user error travels back
            out.flush()
            return m.Result(ok=False, error=format_remote_error(exc),
                            stamps=(received, started, time.perf_counter()) if _TRACE else None)
        finally:
            self.server.inflight -= 1
            self.server.calls_done += 1
        out.flush()
        return m.Result(ok=True, value=value, stamps=(received, started, time.perf_counter()) if _TRACE else None)

    def _call_batch(self, batch: m.CallBatch) -> None:
        received = time.perf_counter() if _TRACE else 0.0
        serial = []
        for req_id, call in unpack(self, batch):
            if self._parallel(call):
                self._spawn(req_id, self._call(req_id, call, received))
            else:
                serial.append((req_id, call))
        if serial:
            run = SerialBatch(serial, received)
            for req_id, _ in serial:
                self.queued[req_id] = run
            run.task = asyncio.create_task(run_serial(self, run))
            self.batches.add(run.task)
            self.server.requests += 1
            run.task.add_done_callback(self._batch_done)

    def _parallel(self, call: m.CallFunction) -> bool:
        entry = self.core.functions.get(call.fn)
        return entry is not None and entry.allow_parallel

    def _batch_done(self, task: asyncio.Task) -> None:
        self.batches.discard(task)
        self.server.requests -= 1

    async def _enter(self, context: Any, failed: list[str]) -> float:
        try:
            return await self.core.enter_context(context)
        except BaseException:
            failed.append(context.name)
            raise

    async def _init(self, req_id: int, msg: m.Init) -> None:
        phases: list[tuple[str, float]] = []
        failed: list[str] = []
        try:
            for item in msg.functions:
                self.core.install(item)
            self.send(m.StateChanged("loading", phases), req_id)
            if msg.contexts:
                t0 = time.perf_counter()
                spent = await asyncio.gather(*(self._enter(c, failed) for c in msg.contexts))
                for c, secs in zip(msg.contexts, spent):
                    phases.append((f"context {c.name}", secs))
                _log(f"entered {len(msg.contexts)} context(s) in {time.perf_counter() - t0:.3f}s")
        except BaseException as exc:  # noqa: BLE001
            phase = f"context {failed[0]}" if failed else "loading"  # which phase the views mark as failed
            self.send(m.StartFailed(phase, format_remote_error(exc), phases), req_id)
            return
        score = None
        if msg.benchmark is not None:
            self.send(m.StateChanged("benchmarking", phases), req_id)
            t0 = time.perf_counter()
            try:
                score = await self._run_benchmark(msg.benchmark, req_id)
            except BaseException as exc:  # noqa: BLE001
                self.send(m.StartFailed("benchmarking", format_remote_error(exc), phases), req_id)
                return
            phases.append(("benchmark", time.perf_counter() - t0))
            _log(f"benchmark complete: perf score {score:,.1f} workload units/s")
        self.send(m.Ready(score, phases), req_id)

    async def _run_benchmark(self, spec: BenchmarkSpec, req_id: int) -> float:
        def on_run(run: int, throughput: float) -> None:
            self.send(m.BenchmarkRun(run, throughput), req_id)

        return await self.core.benchmark(spec, on_run)

    async def _bench(self, req_id: int, msg: m.RunBenchmark) -> None:
        try:
            score = await self._run_benchmark(msg.benchmark, req_id)
        except BaseException as exc:  # noqa: BLE001
            self.reply_error(req_id, exc)
            return
        self.send(m.Result(ok=True, value=score), req_id)

    async def _contexts(self, req_id: int, msg: m.EnterContexts) -> None:
        try:
            spent = [await self.core.enter_context(c) for c in msg.contexts]
        except BaseException as exc:  # noqa: BLE001
            self.reply_error(req_id, exc)
            return
        self.send(m.Result(ok=True, value=spent), req_id)

    async def _run_cell(self, req_id: int, msg: m.RunCell) -> None:
        out = _Output(self, req_id)
        try:
            value = await self.core.run_cell(msg.source, msg.filename, dict(msg.push), list(msg.pull), out.write)
        except BaseException as exc:  # noqa: BLE001
            out.flush()
            self.reply_error(req_id, exc)
            return
        out.flush()
        self.send(m.Result(ok=True, value=value), req_id, "the values the cell returns and pulls")

    async def _stop(self, req_id: int, msg: m.Stop) -> None:
        deadline = time.monotonic() + float(msg.grace)
        while self.tasks.keys() - {req_id} and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self.core.exit_contexts()
        self.send(m.Bye(), req_id)
        await self.conn.drain()
        self.server.stop()


class WorkerServer:
    def __init__(self, worker_id: str, secret: bytes) -> None:
        self.core = WorkerCore(worker_id).activate()
        self.secret = secret
        self.inflight = 0
        self.calls_done = 0
        self.refused = 0
        self.requests = 0  # requests running (calls, cells, contexts, benchmarks, installs): user code
        self.tick = time.monotonic()  # the event loop's last mark that it runs
        self._stopped: asyncio.Event | None = None

    def health(self) -> dict[str, float]:
        """What the heartbeat thread answers: seconds since the event loop last ran, and requests running."""
        return {"lag": round(max(0.0, time.monotonic() - self.tick), 3), "busy": self.requests}

    def _mark(self, loop: asyncio.AbstractEventLoop) -> None:
        self.tick = time.monotonic()
        if self._stopped is not None and not self._stopped.is_set():
            loop.call_later(TICK_S, self._mark, loop)

    def stats(self, session: _Session) -> m.Pong:
        gpu_memory_mb = None
        torch = sys.modules.get("torch")
        if torch is not None:
            try:
                if torch.cuda.is_available() and torch.cuda.is_initialized():
                    gpu_memory_mb = torch.cuda.memory_reserved() / 1e6
            except Exception:  # noqa: BLE001
                pass
        return m.Pong(self.inflight, max(0, len(session.tasks) - self.inflight), self.calls_done, gpu_memory_mb)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = await Connection.accept(reader, writer, self.secret)
        if conn is None:
            self.refused += 1
            if self.refused <= 5 or self.refused % 1000 == 0:
                _log(f"refused a connection without the cluster's secret ({self.refused} so far)")
            return
        await _Session(self, conn).run()

    def stop(self) -> None:
        if self._stopped is not None:
            self._stopped.set()

    async def serve(self, announce: Any) -> None:
        self._stopped = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=1 << 16)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        self._mark(loop)
        announce(port)
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop)
            except (NotImplementedError, RuntimeError):
                pass
        async with server:
            await self._stopped.wait()
        await asyncio.wait_for(self.core.exit_contexts(), 5.0)


def _heartbeat(loop: asyncio.AbstractEventLoop, server: WorkerServer, out: Any) -> None:
    """Answer each ``ping`` line on stdin with the server's health on ``out``, off the event loop; exit when the
    parent closes our stdin (it died, or shut us down)."""
    try:
        for line in sys.stdin:
            if line.strip() == "ping":
                out.write(json.dumps(server.health()) + "\n")
                out.flush()
    except Exception:  # noqa: BLE001 - the parent is gone
        pass
    try:
        loop.call_soon_threadsafe(server.stop)
    except RuntimeError:  # the loop already closed
        pass
    time.sleep(6.0)
    _exit(0)


_PARENT = 0  # the process that started this worker (set in main)


def _exit(code: int) -> None:
    """Leave no shared memory behind: ours, and the parent's that we never read if the parent died."""
    unlink_created_segments()
    if _PARENT and os.getppid() != _PARENT:  # re-parented: the parent is dead
        sweep_segments([_PARENT])
    os._exit(code)


def _set_parent_death_signal() -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except Exception:  # noqa: BLE001
            pass


def main() -> None:
    global _PARENT
    _PARENT = os.getppid()
    _set_parent_death_signal()
    config = json.loads(sys.stdin.readline())
    server = WorkerServer(config["id"], bytes.fromhex(config["secret"]))
    real_stdout = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything printed outside a call lands in the worker's log
    sys.stdout = os.fdopen(1, "w", buffering=1)
    install_output_routing()

    def announce(port: int) -> None:
        real_stdout.write(f"VASTNB_WORKER_PORT={port}\n")
        real_stdout.flush()  # from here on only the heartbeat thread writes there
        threading.Thread(target=_heartbeat, args=(asyncio.get_running_loop(), server, real_stdout), daemon=True,
                         name="vastnb-heartbeat").start()
        _log(f"worker {config['id']} (pid {os.getpid()}) serving on 127.0.0.1:{port}")

    async def run() -> None:
        await server.serve(announce)

    from .._aio import new_event_loop

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(run())
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        _exit(1)
    _log("worker stopped")
    _exit(0)
