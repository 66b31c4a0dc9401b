"""vastnb's interactive mode on Vast, worker side: the frames an official deployment's worker runs.

Iterating in a notebook must not cost a redeploy per edited cell, but the
official SDK deploys a fixed ``.py`` file. So vastnb deploys its own worker core
once, as an ordinary official deployment module (:func:`generate_module`) whose
single ``@app.remote`` function, ``vastnb_frame(frame: bytes, workload: float)``,
carries *frames*: vastnb messages inside the official wire's ``bytes`` type.
The official worker runtime serves it unchanged (routing, signatures, queueing,
benchmark, reporting); :class:`FrameHandler` turns each frame into work for a
:class:`~vastnb.worker.core.WorkerCore`.

A frame is a vastnb wire payload (:func:`vastnb.wire.dumps_payload`) of a plain
dict, the *envelope*; user data (call arguments, code, cell pushes) sits inside
it as nested payload bytes, so the envelope loads on any Python while the nested
bytes load only once the worker has checked it runs the notebook's Python
version (cloudpickled code does not cross minor versions)::

    request  {"v": 1, "py": [3, 11], "op": "call"|"run"|"bench"|"hello",
              "fn": hash, "payload": bytes,       # a CallFunction, RunCell or BenchmarkSpec payload
              "code": [InstallFunction],          # only when needed
              "contexts": {name: hash},           # what the call needs
              "context_blobs": [ContextSpec],     # only when needed
              "replies": "by-value"}              # only from a notebook that trusts its hosts
    reply    {"v": 1, "worker": id, "pid": pid, "ok": bool, "value" | "error": ErrorRecord,
              "out": [(stream, text)], "missing": {"code": [...], "contexts": [...]}}

(the typed messages of :mod:`vastnb.wire.messages`, shared with the local runtime).
The notebook side (the generated module, the code snapshot) is
:mod:`vastnb.backends.vast._module`.

Code travels by content hash: a worker that lacks a function or context answers
``missing`` (its ``message`` reads ``missing code <hash>``) and the notebook
resends the frame with it. The generated module also carries a snapshot of the
code at deploy time, so a worker started later by Vast's autoscaler enters the
contexts and runs the real benchmark before it serves. The snapshot sits on
lines marked ``#!VAST_IGNORE_CHANGES``: redefining a function never changes the
SDK's content hash (no re-upload), while a changed context (its source), image or
vastnb version does, and the SDK then soft-updates the workers.

Anyone who can reach the worker could send a frame, and a frame runs code. The
official worker checks Vast's request signature, but it signs only the worker's
URL (no nonce, no body), so a captured ``auth_data`` would let anyone post their
own pickles. So every frame is *sealed* (:func:`seal_frame`): an HMAC-SHA256 over
the frame with the deployment's frame key (derived from the user's API key, the
deployment's name and tag; the generated module carries it), an expiry and a
nonce the worker remembers until then. The worker checks the seal before it
unpickles a byte (:func:`open_frame`); a replayed, expired or forged frame gets
an error reply. Only :data:`BENCHMARK_FRAME` (which runs the deployment's own
benchmark function) needs no seal.

Replies go the other way, to a notebook that does not trust the host: values
are pickled with notebook classes by reference (:func:`vastnb.wire.dumps_reply`)
so the notebook's restricted unpickler can match them to its own classes.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import os
import socket
import struct
import sys
import time
from collections.abc import Mapping
from typing import Any, Callable

from ..spec import ContextSpec
from ..wire import dumps_payload, dumps_reply, format_remote_error, loads_payload
from ..wire import messages as m
from .core import log_to_stderr

__all__ = [
    "BENCHMARK_FRAME",
    "FRAME_FUNCTION",
    "FRAME_ROUTE",
    "PROTOCOL",
    "PY",
    "FrameHandler",
    "FrameRefused",
    "Nonces",
    "decode_frame",
    "encode_frame",
    "frame_key",
    "open_frame",
    "seal_frame",
]

PROTOCOL = 1
FRAME_FUNCTION = "vastnb_frame"
FRAME_ROUTE = f"/remote/{FRAME_FUNCTION}"
BENCHMARK_FRAME = b"vastnb:benchmark-step"  # what the official benchmark sends; not a pickle
MAX_OUTPUT = 1 << 20  # characters of print output carried back per call
PY = [sys.version_info[0], sys.version_info[1]]


SEAL_MAGIC = b"VNS1"
_SEAL = struct.Struct("<4sd16s32s")  # magic | expires at (unix s) | nonce | HMAC-SHA256
CLOCK_SKEW = 300.0  # seconds a worker's clock may differ from the notebook's


def encode_frame(obj: Any, what: str = "a vastnb frame") -> bytes:
    return dumps_payload(obj, what).to_bytes()


def decode_frame(data: bytes | memoryview) -> Any:
    return loads_payload(data)


def frame_key(api_key: str, name: str, tag: str = "default") -> str:
    """The deployment's frame key: the same in every kernel of the user, unknown to anyone without their API key."""
    message = b"vastnb frame key\0" + name.encode() + b"\0" + tag.encode()
    return hmac.new(api_key.encode(), message, hashlib.sha256).hexdigest()


def seal_frame(payload: bytes, key: str, valid_for: float) -> bytes:
    """``payload`` sealed with ``key``: valid for ``valid_for`` seconds (plus the clock skew), once."""
    head = SEAL_MAGIC + struct.pack("<d", time.time() + valid_for) + os.urandom(16)
    mac = hmac.new(key.encode(), head + payload, hashlib.sha256).digest()
    return head + mac + payload


class FrameRefused(Exception):
    """A frame without a valid seal: forged, sealed with another key, expired or replayed."""


class Nonces:
    """The nonces of frames received and not yet expired (a frame is taken once); forgotten after their expiry."""

    def __init__(self) -> None:
        self.expiry: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        return len(self.expiry)

    def __contains__(self, nonce: object) -> bool:
        return nonce in self.expiry

    def add(self, nonce: bytes, expires: float, now: float) -> None:
        import heapq

        while self._heap and self._heap[0][0] + CLOCK_SKEW < now:
            _, old = heapq.heappop(self._heap)
            self.expiry.pop(old, None)
        self.expiry[nonce] = expires
        heapq.heappush(self._heap, (expires, nonce))


def open_frame(data: bytes, key: str, seen: Nonces, now: float | None = None) -> memoryview:
    """The payload of a sealed frame, checked before anything in it is read; ``seen`` remembers nonces."""
    now = time.time() if now is None else now
    if not key:
        raise FrameRefused("this worker has no frame key (its module was not generated by this vastnb); redeploy")
    if len(data) < _SEAL.size or data[:4] != SEAL_MAGIC:
        raise FrameRefused("the frame is not sealed (sent by an older vastnb, or not by vastnb); redeploy or upgrade")
    _, expires, nonce, mac = _SEAL.unpack_from(data)
    view = memoryview(data)
    wanted = hmac.new(key.encode(), view[:_SEAL.size - 32], hashlib.sha256)
    wanted.update(view[_SEAL.size:])
    if not hmac.compare_digest(wanted.digest(), mac):
        raise FrameRefused("the frame's seal does not match this deployment's key (the notebook uses another API "
                           "key, deployment name or tag than this worker's deployment); redeploy")
    if expires + CLOCK_SKEW < now:
        raise FrameRefused(f"the frame expired {now - expires:.0f} s ago (a replay, or a clock off by more than "
                           f"{CLOCK_SKEW:g} s)")
    if nonce in seen:
        raise FrameRefused("the frame was already received once (a replay, or a retry of a request this worker "
                           "already has)")
    seen.add(nonce, expires, now)
    return view[_SEAL.size:]


def _log(msg: str) -> None:
    log_to_stderr(msg, tag="vastnb ")


class _Output:
    """Collects one request's print output (capped)."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, str]] = []
        self.size = 0

    def write(self, stream: str, text: str) -> None:
        if self.size >= MAX_OUTPUT:
            return
        if self.size + len(text) > MAX_OUTPUT:
            text = text[: MAX_OUTPUT - self.size] + "\n[vastnb: output truncated at 1 MiB]\n"
        self.size += len(text)
        if self.chunks and self.chunks[-1][0] == stream:
            self.chunks[-1] = (stream, self.chunks[-1][1] + text)
        else:
            self.chunks.append((stream, text))


class FrameHandler:
    """The worker side: one per worker process, created by the generated module.

    It never raises into the official runtime (which would answer 500, and the
    SDK retries 5xx): every failure becomes a reply frame the notebook reads.
    """

    def __init__(self, name: str, snapshot: str = "", frame_key: str = "") -> None:
        self.name = name
        self.snapshot = snapshot
        self.frame_key = frame_key
        self.nonces = Nonces()
        self._bench_call: asyncio.Future[None] | None = None  # the serial benchmark call the official runs share
        self.worker_id = os.environ.get("CONTAINER_ID") or f"{socket.gethostname()}-{os.getpid()}"
        self.core: Any = None
        self.failed: dict[str, tuple[str, m.ErrorRecord]] = {}  # context name -> (hash, error record)
        self.bench_spec: Any = None
        self._bench_i = 0
        self._started: asyncio.Event | None = None
        self._serial: asyncio.Lock | None = None
        self._ctx_locks: dict[str, asyncio.Lock] = {}
        self.calls_done = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        from .core import WorkerCore, install_output_routing

        self._events()
        self.core = WorkerCore(self.worker_id).activate()
        install_output_routing()
        _shorten_official_logs()
        try:
            await self._load_snapshot()
        finally:
            assert self._started is not None
            self._started.set()
        _log(f"worker core {self.worker_id} (pid {os.getpid()}) ready for deployment {self.name!r}")

    def _events(self) -> None:
        if self._started is None:
            self._started = asyncio.Event()
            self._serial = asyncio.Lock()

    async def _load_snapshot(self) -> None:
        if not self.snapshot:
            return
        try:
            snap = decode_frame(base64.b64decode(self.snapshot))
        except Exception as exc:  # noqa: BLE001
            _log(f"could not read the code snapshot ({exc!r}); code arrives with the first calls instead")
            return
        if list(snap.get("py", [])) != PY:
            _log(f"the code snapshot was made on Python {_pyver(snap.get('py'))}, this worker runs {_pyver(PY)}; "
                 "skipping it (calls will report the mismatch)")
            return
        for item in snap.get("functions", []):
            try:
                self.core.install(item)
            except Exception as exc:  # noqa: BLE001
                _log(f"could not load function {item.name!r} from the snapshot: {exc!r}")
        contexts = snap.get("contexts", [])
        await asyncio.gather(*(self._enter(c) for c in contexts), return_exceptions=True)
        blob = snap.get("benchmark")
        if blob is not None:
            try:
                self.bench_spec = decode_frame(blob)
            except Exception as exc:  # noqa: BLE001
                _log(f"could not load the benchmark from the snapshot: {exc!r}")

    async def stop(self) -> None:
        if self.core is not None:
            await self.core.exit_contexts()

    # ------------------------------------------------------------------ requests
    async def handle(self, frame: bytes) -> bytes:
        """One request from the official runtime: a frame in, a reply frame out."""
        self._events()
        assert self._started is not None
        await self._started.wait()
        if frame == BENCHMARK_FRAME:
            await self._benchmark_step()
            return b"ok"
        out = _Output()
        by_value = False
        try:
            try:
                payload = open_frame(frame, self.frame_key, self.nonces)
            except FrameRefused as refused:
                _log(f"refused a frame: {refused}")
                return self._encode({"ok": False, "error": m.ErrorRecord(
                    "vastnb.worker.vast.FrameRefused", f"worker {self.worker_id} refused the request: {refused}")},
                    out, True)
            msg = decode_frame(payload)
            if not isinstance(msg, dict) or msg.get("v") != PROTOCOL:
                raise ValueError(f"not a vastnb protocol-{PROTOCOL} frame (the notebook and this worker run "
                                 "different vastnb versions; redeploy)")
            by_value = msg.get("replies") == "by-value"
            if msg.get("op") == "hello":  # carries no code: answered on any Python, so the notebook can check it
                return self._encode({"ok": True, "value": self.info()}, out, by_value)
            if list(msg.get("py", [])) != PY:
                raise RuntimeError(
                    f"this worker runs Python {_pyver(PY)} but the notebook runs Python {_pyver(msg.get('py'))}; "
                    "notebook code travels as cloudpickle, which needs the same Python minor version on both "
                    "sides. Pick an image with the notebook's Python (or image.venv(...) with it), or run the "
                    "notebook on the workers' Python."
                )
            reply = await self._dispatch(msg, out)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure travels back
            reply = {"ok": False, "error": _error_record(exc, by_value)}
        return self._encode(reply, out, by_value)

    def _encode(self, reply: dict[str, Any], out: _Output, by_value: bool = False) -> bytes:
        """The reply frame: notebook classes by reference (the notebook loads it restricted), unless it trusts us."""
        reply.update(v=PROTOCOL, worker=self.worker_id, pid=os.getpid(), out=out.chunks)
        try:
            return encode_frame(reply, "the result") if by_value else dumps_reply(reply, "the result")
        except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
            err = m.ErrorRecord("vastnb.errors.SerializationError", f"cannot send the result back to the notebook: {exc}")
            return encode_frame({"v": PROTOCOL, "worker": self.worker_id, "pid": os.getpid(), "out": out.chunks,
                                 "ok": False, "error": err})

    async def _dispatch(self, msg: dict[str, Any], out: _Output) -> dict[str, Any]:
        op = msg.get("op")
        if op == "hello":
            return {"ok": True, "value": self.info()}
        for item in msg.get("code") or ():
            self.core.install(item)
        missing = await self._check(msg)
        if missing is not None:
            return missing
        if op == "call":
            return await self._call(msg, out)
        if op == "run":
            cell: m.RunCell = loads_payload(msg["payload"])
            value = await self.core.run_cell(cell.source, cell.filename, dict(cell.push), list(cell.pull), out.write)
            return {"ok": True, "value": value}
        if op == "bench":
            spec = loads_payload(msg["payload"])
            runs: list[float] = []
            score = await self.core.benchmark(spec, lambda run, throughput: runs.append(throughput))
            return {"ok": True, "value": {"score": score, "runs": runs}}
        raise ValueError(f"unknown frame op {op!r}")

    async def _check(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        """A ``missing`` reply when this worker lacks the function or a context; contexts sent along are entered."""
        fn = msg.get("fn")
        missing_code = [fn] if fn and fn not in self.core.functions else []
        blobs: dict[str, ContextSpec] = {c.name: c for c in msg.get("context_blobs") or ()}
        missing_contexts = []
        for name, wanted in (msg.get("contexts") or {}).items():
            entry = self.core.contexts.get(name)
            if entry is not None and entry.spec_hash == wanted:
                continue
            if name in blobs and blobs[name].hash == wanted:
                await self._enter(blobs[name])
                entry = self.core.contexts.get(name)
                if entry is not None and entry.spec_hash == wanted:
                    continue
            failure = self.failed.get(name)
            if failure is not None and failure[0] == wanted:
                return {"ok": False, "error": failure[1]}
            missing_contexts.append(name)
        if not missing_code and not missing_contexts:
            return None
        words = [f"missing code {h}" for h in missing_code] + [f"missing context {n}" for n in missing_contexts]
        return {"ok": False, "missing": {"code": missing_code, "contexts": missing_contexts}, "message": "; ".join(words)}

    async def _enter(self, spec: ContextSpec) -> None:
        name = spec.name
        lock = self._ctx_locks.setdefault(name, asyncio.Lock())
        async with lock:
            entry = self.core.contexts.get(name)
            if entry is not None and entry.spec_hash == spec.hash:
                return
            try:
                spent = await self.core.enter_context(spec)
            except Exception as exc:  # noqa: BLE001 - remembered, reported to calls that need it
                err = _error_record(exc, False)
                err = dataclasses.replace(
                    err, message=f"entering context {name} failed on worker {self.worker_id}: {err.message}")
                self.failed[name] = (spec.hash, err)
                _log(f"entering context {name} failed: {exc!r}")
                return
            self.failed.pop(name, None)
            _log(f"entered context {name} in {spent:.3f}s")

    async def _call(self, msg: dict[str, Any], out: _Output) -> dict[str, Any]:
        request: m.CallFunction = loads_payload(msg["payload"])
        fn_hash = request.fn
        entry = self.core.functions[fn_hash]
        args, kwargs = request.args, request.kwargs
        if entry.allow_parallel:
            value = await self._run(fn_hash, args, kwargs, out)
        else:
            assert self._serial is not None
            async with self._serial:  # serial functions run one at a time, in arrival order (the lock is FIFO)
                value = await self._run(fn_hash, args, kwargs, out)
        return {"ok": True, "value": value}

    async def _run(self, fn_hash: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], out: _Output) -> Any:
        try:
            return await self.core.call(fn_hash, args, kwargs, out.write)
        finally:
            self.calls_done += 1

    async def _benchmark_step(self) -> None:
        """One request of the official benchmark: one call of the deployment's benchmark function.

        The frame function allows parallel requests, so the official benchmark sends 10 at once per run. For a
        serial benchmark function the requests that arrive while a call runs share that call (the generated
        module counts each as a tenth of the workload): 1 + runs calls, as the official worker makes for a
        serial function, not 1 + runs × 10 one after another."""
        spec = self.bench_spec
        if spec is None or spec.fn_hash not in self.core.functions:
            await asyncio.sleep(0)
            return
        if not self.core.functions[spec.fn_hash].allow_parallel:
            if self._bench_call is None or self._bench_call.done():
                self._bench_call = asyncio.ensure_future(self._benchmark_call(spec))
            await asyncio.shield(self._bench_call)
            return
        await self._benchmark_call(spec)

    async def _benchmark_call(self, spec: Any) -> None:
        if spec.generator is not None:
            kwargs = dict(spec.generator())
        else:
            data = spec.dataset or [{}]
            kwargs = dict(data[self._bench_i % len(data)])
            self._bench_i += 1
        sink: Callable[[str, str], None] = _discard
        try:
            entry = self.core.functions[spec.fn_hash]
            if entry.allow_parallel:
                await self.core.call(spec.fn_hash, (), kwargs, sink)
            else:
                assert self._serial is not None
                async with self._serial:
                    await self.core.call(spec.fn_hash, (), kwargs, sink)
        except Exception as exc:  # noqa: BLE001 - as the official benchmark: the run still counts
            _log(f"benchmark call raised {exc!r}")

    def info(self) -> dict[str, Any]:
        from .. import __version__

        return {
            "worker": self.worker_id,
            "pid": os.getpid(),
            "python": _pyver(PY),
            "vastnb": __version__,
            "code": sorted(self.core.functions),
            "contexts": {n: e.spec_hash for n, e in self.core.contexts.items()},
            "failed_contexts": {n: f[0] for n, f in self.failed.items()},
            "calls_done": self.calls_done,
        }


class _Shorten:
    """Cut log records to their start: the official runtime logs each request's parameters (a whole frame) at DEBUG."""

    LIMIT = 2000

    def filter(self, record: Any) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001
            return True
        if len(message) > self.LIMIT:
            record.msg = f"{message[:500]}… [vastnb: {len(message) - 500} more characters left out]"
            record.args = None
        return True


def _shorten_official_logs() -> None:
    import logging

    try:
        from vastai.serverless.server.lib import backend
    except ImportError:
        return
    logger = logging.getLogger(backend.__file__)  # the official backend names its logger by its file
    if not any(isinstance(f, _Shorten) for f in logger.filters):
        logger.addFilter(_Shorten())


def _discard(stream: str, text: str) -> None:
    return None


def _error_record(exc: BaseException, by_value: bool) -> m.ErrorRecord:
    """An exception as a record whose pickled exception the notebook can load restricted (classes by reference)."""
    record = format_remote_error(exc)
    if by_value or record.exception is None:
        return record
    try:
        return dataclasses.replace(record, exception=dumps_reply(exc, "the exception"))
    except Exception:  # noqa: BLE001 - type, message and frames still travel
        return dataclasses.replace(record, exception=None)


def _pyver(v: Any) -> str:
    try:
        return ".".join(str(int(x)) for x in v)
    except (TypeError, ValueError):
        return "unknown"
