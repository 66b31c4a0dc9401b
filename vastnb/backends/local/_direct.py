"""The direct path: a blocking call made from the caller's thread straight to an idle worker.

``fn.call(x)`` through the runtime crosses two threads of the notebook process
both ways (caller -> runtime thread -> worker -> runtime thread -> caller); on
a small machine each wake-up costs tens of microseconds. When a call is small,
nothing waits in the queue and a worker that already has the function is idle,
the caller's thread claims that worker, sends the call on a socket of its own
(one per thread and worker, authenticated like the runtime's, carrying
everything inline) and reads the result itself. The runtime never routes to a
claimed worker; it learns of direct calls (load, service time, idleness) at
its next control step.

Everything a call promises holds on this path too: its timeout (the call is
cancelled on the worker), Ctrl-C (the same), remote output written as it comes,
remote exceptions with their tracebacks, and a worker that dies mid-call counts
as a try (retried through the queue when the function allows retries, else
``WorkerLost``). A function whose results turn out large goes the runtime's
way from then on (shared memory carries large results there).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from ...errors import CallTimeout
from ...events import WorkerState
from ...wire import (
    HANDSHAKE_DIRECT,
    HEADER,
    KIND_MSG,
    SHM_THRESHOLD,
    build_remote_exception,
    dumps_small,
    frame,
    loads_payload,
)
from ...wire import messages as m
from .._protocol import CallRequest
from ._handle import WorkerHandle
from ._routing import BATCH_PAYLOAD_MAX, worker_lost

if TYPE_CHECKING:
    from ._runtime import LocalBackend

__all__ = ["DirectPath"]

CANCEL_GRACE_S = 2.0  # how long a cancelled direct call may take to confirm before its socket is dropped


class _Lost(Exception):
    """The worker's socket closed before the call's result arrived."""


class DirectPath:
    """Claims idle workers for blocking calls and runs those calls from the caller's thread."""

    def __init__(self, backend: "LocalBackend") -> None:
        self.backend = backend
        self.lock = threading.Lock()
        self.claimed: set[str] = set()  # worker ids in use by a direct call (the router leaves them alone)
        self.large: set[str] = set()  # functions whose results were large: they take the runtime's path
        self.finished: collections.deque[tuple[str, str, float, float, float]] = collections.deque()
        self._local = threading.local()
        self._sockets: set[socket.socket] = set()
        self._ids = itertools.count(1)
        self.closed = False
        self.in_transit = 0  # calls submitted to the runtime's thread that it has not queued yet

    def handing_over(self, calls: int) -> None:
        with self.lock:
            self.in_transit += calls

    # ------------------------------------------------------------------ the caller's side
    def call(self, request: CallRequest) -> tuple[bool, Any]:
        """``(True, result)`` when the call ran directly (its exception raised as usual), ``(False, None)`` when
        it should take the runtime's queue instead."""
        fn = request.function
        handle = self._claim(request)
        if handle is None:
            return False, None
        try:
            sock = self._socket(handle)
            if sock is None:
                return False, None
            try:
                return True, self._run(sock, handle, request)
            except _Lost:
                self._drop(handle)
                if fn.retries >= 1:
                    return False, None  # one try used; the queue retries it on a worker that is alive
                raise worker_lost(handle.id, fn, 1, "the connection to the worker was lost") from None
        finally:
            self._release(handle)

    async def call_async(self, request: CallRequest) -> tuple[bool, Any]:
        """The same for ``await fn(x)``, on the caller's event loop (its own sockets, non-blocking)."""
        handle = self._claim(request)
        if handle is None:
            return False, None
        fn, payload = request.function, request.payload
        cache: dict[tuple[str, int], socket.socket] = self._local.__dict__.setdefault("async_sockets", {})
        key = (handle.id, handle.port or 0)
        loop = asyncio.get_running_loop()
        sock = cache.pop(key, None)  # held by this call alone: a call cancelled mid-way never leaves it half-read
        try:
            if sock is None:
                sock = self._socket(handle, cache={})
                if sock is None:
                    return False, None
                sock.setblocking(False)
            req_id = next(self._ids)
            started, submitted = time.monotonic(), time.perf_counter()
            try:
                async with asyncio.timeout(fn.timeout):
                    data = frame(payload, req_id)
                    sent = time.perf_counter()
                    await loop.sock_sendall(sock, data)
                    while True:
                        rid, msg, size = await _aread_message(loop, sock)
                        if _is_result(request, req_id, rid, msg):
                            break
            except TimeoutError:
                self._forget(sock)  # closing the socket ends the call on the worker
                sock = None
                raise _timed_out(fn, handle) from None
            except _Lost:
                self._forget(sock)
                sock = None
                if fn.retries >= 1:
                    return False, None
                raise worker_lost(handle.id, fn, 1, "the connection to the worker was lost") from None
            except BaseException:  # cancelled (or interrupted): closing the socket cancels the call on the worker
                self._forget(sock)
                sock = None
                raise
            cache[key] = sock
            self._trace(submitted, sent, msg)
            # (no service time from here: while this call awaited, the caller's loop ran other code)
            return True, self._finish(handle, request, msg, size, started, measured=False)
        finally:
            self._release(handle)

    def _forget(self, sock: socket.socket | None) -> None:
        if sock is not None:
            with self.lock:
                self._sockets.discard(sock)
            sock.close()

    def _claim(self, request: CallRequest) -> WorkerHandle | None:
        b, fn = self.backend, request.function
        if (self.closed or b.state != "running" or len(b.pending) or fn.name in self.large
                or request.payload.size >= BATCH_PAYLOAD_MAX):
            return None
        with self.lock:
            if self.in_transit:  # calls submitted before this one go first
                return None
            for h in list(b.workers.values()):
                if (h.serving and not h.inactive and not h.stopping and not h.inflight and h.port is not None
                        and fn.hash in h.code and h.id not in self.claimed):
                    self.claimed.add(h.id)
                    # while claimed, the router leaves the worker alone, so its busy figures are this thread's
                    # to keep: busy (never stopped as idle by the autoscaler) until the call ends
                    h.idle_since, h.busy_since = None, time.monotonic()
                    if h.state == WorkerState.READY:
                        h.state = WorkerState.BUSY  # what snapshots show (no event: a view polls)
                    return h
        return None

    def _release(self, handle: WorkerHandle) -> None:
        now = time.monotonic()
        if handle.busy_since is not None:
            handle.busy_spans.append((handle.busy_since, now))
        handle.busy_since, handle.idle_since = None, now
        if handle.state == WorkerState.BUSY and not handle.inflight:
            handle.state = WorkerState.READY
        with self.lock:
            self.claimed.discard(handle.id)
        if len(self.backend.pending):  # calls queued meanwhile wait for this worker: route them now
            try:
                self.backend._thread_call(self.backend._dispatch)
            except RuntimeError:
                pass  # the runtime is stopping

    def _socket(self, handle: WorkerHandle, cache: "dict[tuple[str, int], socket.socket] | None" = None
                ) -> socket.socket | None:
        if cache is None:
            cache = self._local.__dict__.setdefault("sockets", {})
        key = (handle.id, handle.port or 0)
        sock = cache.get(key)
        if sock is not None:
            return sock
        try:
            sock = socket.create_connection(("127.0.0.1", key[1]), timeout=5.0)
        except OSError:
            return None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(HANDSHAKE_DIRECT + self.backend.secret)
            if _read_exactly(sock, 2) != b"OK":
                raise ConnectionError("handshake refused")
        except (OSError, _Lost):
            sock.close()
            return None
        cache[key] = sock
        with self.lock:
            self._sockets.add(sock)
        return sock

    def _drop(self, handle: WorkerHandle) -> None:
        cache: dict[tuple[str, int], socket.socket] = self._local.__dict__.get("sockets", {})
        sock = cache.pop((handle.id, handle.port or 0), None)
        if sock is not None:
            with self.lock:
                self._sockets.discard(sock)
            sock.close()

    def _run(self, sock: socket.socket, handle: WorkerHandle, request: CallRequest) -> Any:
        fn, payload = request.function, request.payload
        req_id = next(self._ids)
        submitted = time.perf_counter()
        started = time.monotonic()
        deadline = started + fn.timeout
        try:
            sock.settimeout(None)
            data = frame(payload, req_id)
            sent = time.perf_counter()  # (written next: sending wakes the worker, and that may take a while)
            sock.sendall(data)
            while True:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                try:
                    rid, msg, size = _read_message(sock)
                except socket.timeout:
                    self._cancel(sock, handle, req_id)
                    raise _timed_out(fn, handle) from None
                if _is_result(request, req_id, rid, msg):
                    break
        except KeyboardInterrupt:
            self._cancel(sock, handle, req_id)
            raise
        self._trace(submitted, sent, msg)
        return self._finish(handle, request, msg, size, started)

    def _trace(self, submitted: float, sent: float, msg: m.Result) -> None:
        traces = self.backend.traces
        if traces is not None:
            stamps = dict(submitted=submitted, queued=submitted, sent=sent)
            if msg.stamps is not None and len(msg.stamps) == 3:
                stamps.update(zip(("received", "started", "finished"), msg.stamps))
            stamps.update(read=time.perf_counter(), settled=time.perf_counter())
            traces.append(stamps)

    def _finish(self, handle: WorkerHandle, request: CallRequest, msg: m.Result, size: int, started: float,
                measured: bool = True) -> Any:
        fn = request.function
        ended = time.monotonic()
        if measured:  # at once: the next call's queue estimate uses it
            self.backend.service.record(fn.name, ended - started)
        self.finished.append((handle.id, fn.name, request.workload, started, ended))
        if size >= SHM_THRESHOLD:
            self.large.add(fn.name)
        if msg.ok:
            return msg.value
        if msg.cancelled:  # (the worker cancelled it itself: as a cancelled call through the runtime)
            raise asyncio.CancelledError()
        assert msg.error is not None
        raise build_remote_exception(msg.error, f"worker {handle.id} running {fn.name}()")

    def _cancel(self, sock: socket.socket, handle: WorkerHandle, req_id: int) -> None:
        """Cancel ``req_id`` on the worker and wait (briefly) for it to confirm; drop the socket if it does not."""
        try:
            sock.settimeout(CANCEL_GRACE_S)
            sock.sendall(frame(dumps_small(m.Cancel(req_id))))
            deadline = time.monotonic() + CANCEL_GRACE_S
            while time.monotonic() < deadline:
                rid, msg, _ = _read_message(sock)
                if rid == req_id and isinstance(msg, m.Result):
                    return
        except (Exception, KeyboardInterrupt):  # noqa: BLE001 - a socket in doubt is dropped, never reused
            pass
        self._drop(handle)  # the worker ends the call when its connection closes

    # ------------------------------------------------------------------ the runtime's side
    def account(self) -> None:
        """Record the direct calls finished since the last control step (runtime thread)."""
        b = self.backend
        now = time.monotonic()
        while self.finished:
            worker_id, name, workload, started, ended = self.finished.popleft()
            b.arrival_log.append((now, workload))
            b.arrivals_total += 1
            b.queue_times.append((now, 0.0))
            h = b.workers.get(worker_id)
            if h is not None:
                h.calls_done += 1

    def close(self) -> None:
        self.closed = True
        with self.lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            try:
                sock.close()
            except OSError:
                pass


def _is_result(request: CallRequest, req_id: int, rid: int, msg: Any) -> bool:
    """Whether ``msg`` is the call's result; its output is written as it comes."""
    if rid != req_id:
        return False
    if isinstance(msg, m.Output) and request.sink is not None:
        for stream, text in msg.chunks:
            request.sink(stream, text)
    return isinstance(msg, m.Result)


def _timed_out(fn: Any, handle: WorkerHandle) -> CallTimeout:
    return CallTimeout(f"{fn.name}() did not finish within its timeout of {fn.timeout:g} s (it was on worker "
                       f"{handle.id}). Raise timeout in @app.remote(timeout=...) for long calls.")


def _read_exactly(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise _Lost()
        got += k
    return buf


async def _aread_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        try:
            k = await loop.sock_recv_into(sock, view[got:])
        except ConnectionError:
            raise _Lost() from None
        if k == 0:
            raise _Lost()
        got += k
    return buf


def _header(head: bytearray) -> tuple[int, int]:
    """``(request id, body length)`` of a frame header; a direct socket carries messages only."""
    kind, _flags, _r, req_id, length = HEADER.unpack(head)
    if kind != KIND_MSG:
        raise _Lost()
    return req_id, length


async def _aread_message(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> tuple[int, Any, int]:
    req_id, length = _header(await _aread_exactly(loop, sock, HEADER.size))
    return req_id, loads_payload(await _aread_exactly(loop, sock, length)), length


def _read_message(sock: socket.socket) -> tuple[int, Any, int]:
    """``(request id, message, body size)`` of the next frame on a direct socket."""
    try:
        req_id, length = _header(_read_exactly(sock, HEADER.size))
        return req_id, loads_payload(_read_exactly(sock, length)), length
    except ConnectionError:
        raise _Lost() from None
