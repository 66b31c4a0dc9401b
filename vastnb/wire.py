"""Bytes on the wire between the notebook and its local workers.

One connection is a TCP stream on loopback. It opens with a handshake that
carries the cluster's secret; a peer that sends anything else is dropped before
a single byte of it is deserialized. After that, each message is a frame::

    header (16 bytes, little endian): kind u8 | flags u8 | reserved u16 | reserved u32 | length u64
    body (length bytes)

A body is a *payload*: a pickle (protocol 5, cloudpickle so notebook code travels
by value) plus its out-of-band buffers (NumPy arrays, torch tensors)::

    n_buffers u32 | main_len u64 | buffer_len u64 × n | main | buffers…

Small payloads travel inline in the stream. Large ones (≥ ``SHM_THRESHOLD``) are
written once into a shared-memory segment that the sender keeps for reuse, and
the frame only names the segment; the receiver copies out and hands the segment
back with a RELEASE frame. So a 16 MiB buffer is copied twice per direction
(into the segment, out of it) and never goes through base64, JSON lists or
socket buffers.

Large ``bytes`` are written by the pickler straight from the object (no copy);
tensors are reduced to raw buffers; CUDA tensors arrive on the CPU.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import mmap
import os
import pickle
import struct
import types
import uuid
from typing import Any

import cloudpickle

from .errors import SerializationError

__all__ = [
    "Connection",
    "HANDSHAKE_MAGIC",
    "PayloadError",
    "ProtocolError",
    "dumps_code",
    "dumps_payload",
    "loads_payload",
]

HANDSHAKE_MAGIC = b"VNB1"
SECRET_BYTES = 32
HANDSHAKE_LEN = len(HANDSHAKE_MAGIC) + SECRET_BYTES
HEADER = struct.Struct("<BBHIQ")
SHM_THRESHOLD = 256 * 1024
MAX_INLINE = 64 * 1024 * 1024  # larger inline bodies are refused (shared memory carries big ones)
MAX_SEGMENT = 1 << 40

KIND_MSG = 1
KIND_RELEASE = 2
FLAG_SHM = 1

_SHM_DIR = "/dev/shm"
_SHM_OK = os.path.isdir(_SHM_DIR) and os.access(_SHM_DIR, os.W_OK)
_SHM_DESC = struct.Struct("<IQQ")  # segment id, segment size, payload length; then the name (maybe empty)


class ProtocolError(Exception):
    """The peer sent something that is not a vastnb frame; the connection is dropped."""


class PayloadError(Exception):
    """A well-formed frame whose pickle could not be loaded; ``req_id`` names the message."""

    def __init__(self, req_id: int, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.req_id = req_id
        self.error = error


# --------------------------------------------------------------------------- pickling


def _rebuild_tensor(buf: Any, dtype: str, shape: tuple[int, ...], requires_grad: bool) -> Any:
    import torch

    dt = getattr(torch, dtype)
    if len(buf) == 0:
        t = torch.empty(shape, dtype=dt)
    else:
        t = torch.frombuffer(buf, dtype=torch.uint8).view(dt).reshape(shape)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _code_with_filename(rebuild: Any, args: tuple, filename: str) -> types.CodeType:
    code = rebuild(*args)
    return code.replace(co_filename=filename) if code.co_filename != filename else code


def _reduce_code(code: types.CodeType) -> Any:
    """Pickle a code object with its real file name.

    Remote tracebacks name the notebook cell and show its line through the code's
    ``co_filename``; cloudpickle 3.1.3 started to write ``"<dynamic-code>"`` there.
    Whatever cloudpickle does, the file name is put back when the code is loaded.
    """
    reduce = cloudpickle.CloudPickler.dispatch_table.get(types.CodeType)
    rebuild, args = reduce(code)[:2] if reduce is not None else _marshal_code(code)
    return (_code_with_filename, (rebuild, args, code.co_filename))


def _marshal_code(code: types.CodeType) -> tuple[Any, tuple]:
    import marshal

    return (marshal.loads, (marshal.dumps(code),))


class _Pickler(cloudpickle.CloudPickler):
    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is types.CodeType:
            return _reduce_code(obj)
        mod = type(obj).__module__
        if mod == "torch" and type(obj).__name__ in ("Tensor", "Parameter"):
            return self._reduce_tensor(obj)
        return super().reducer_override(obj)

    @staticmethod
    def _reduce_tensor(t: Any) -> Any:
        import torch

        if t.layout != torch.strided:
            raise SerializationError(
                f"cannot send a torch tensor with layout {t.layout}; convert it with .to_dense() first."
            )
        data = t.detach()
        if data.device.type != "cpu":
            data = data.cpu()  # CUDA tensors travel through the CPU and arrive there
        data = data.contiguous()
        dtype = str(data.dtype).removeprefix("torch.")
        raw = data.reshape(-1).view(torch.uint8).numpy() if data.numel() else bytearray()
        return (_rebuild_tensor, (pickle.PickleBuffer(raw), dtype, tuple(data.shape), bool(t.requires_grad)))


class _ChunkWriter:
    """Collects the pickler's output without copying large pieces."""

    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: list[Any] = []
        self.size = 0

    def write(self, b: Any) -> int:
        n = len(b) if not isinstance(b, memoryview) else b.nbytes
        self.chunks.append(b)
        self.size += n
        return n


class Payload:
    """A pickled message ready to send: main pickle chunks plus out-of-band buffers."""

    __slots__ = ("chunks", "main_len", "buffers", "size")

    def __init__(self, chunks: list[Any], main_len: int, buffers: list[memoryview]) -> None:
        self.chunks = chunks
        self.main_len = main_len
        self.buffers = buffers
        head = 4 + 8 + 8 * len(buffers)
        self.size = head + main_len + sum(b.nbytes for b in buffers)

    def head(self) -> bytes:
        n = len(self.buffers)
        return struct.pack(f"<IQ{n}Q", n, self.main_len, *(b.nbytes for b in self.buffers))

    def write_into(self, dest: memoryview) -> None:
        pos = 0
        for piece in [self.head(), *self.chunks]:
            n = len(piece) if not isinstance(piece, memoryview) else piece.nbytes
            dest[pos : pos + n] = piece
            pos += n
        for b in self.buffers:
            dest[pos : pos + b.nbytes] = b.cast("B") if b.format != "B" or b.ndim != 1 else b
            pos += b.nbytes

    def to_bytes(self) -> bytes:
        out = bytearray(self.size)
        self.write_into(memoryview(out))
        return bytes(out)


def dumps_payload(obj: Any, what: str = "value") -> Payload:
    """Pickle ``obj`` for the wire; raise :class:`SerializationError` naming ``what`` on failure."""
    writer = _ChunkWriter()
    buffers: list[memoryview] = []

    def keep(buf: pickle.PickleBuffer) -> None:
        buffers.append(buf.raw())

    try:
        _Pickler(writer, protocol=5, buffer_callback=keep).dump(obj)
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(
            f"cannot serialize {what}: {type(exc).__name__}: {exc}. "
            "Pass plain data (numbers, strings, bytes, lists, dicts, arrays, tensors) "
            "or objects whose classes can be pickled."
        ) from exc
    return Payload(writer.chunks, writer.size, buffers)


def dumps_code(obj: Any) -> bytes:
    """Pickle code (functions, classes, contexts) by value in one buffer, keeping file names for tracebacks.

    Raises what the pickler raises; :func:`vastnb._code.capture` words it for users."""
    out = io.BytesIO()
    _Pickler(out, protocol=5).dump(obj)
    return out.getvalue()


def _parse(body: memoryview, copy_buffers: bool) -> tuple[memoryview, list[Any]]:
    if body.nbytes < 12:
        raise ProtocolError("payload shorter than its header")
    (n,) = struct.unpack_from("<I", body, 0)
    if n > 1_000_000 or 12 + 8 * n > body.nbytes:
        raise ProtocolError(f"payload declares {n} buffers")
    main_len, *lens = struct.unpack_from(f"<Q{n}Q", body, 4)
    pos = 12 + 8 * n
    if pos + main_len + sum(lens) > body.nbytes:
        raise ProtocolError("payload shorter than its declared parts")
    main = body[pos : pos + main_len]
    pos += main_len
    bufs: list[Any] = []
    for ln in lens:
        piece = body[pos : pos + ln]
        bufs.append(bytearray(piece) if copy_buffers else piece)
        pos += ln
    return main, bufs


def _load_view(view: memoryview) -> Any:
    main, bufs = _parse(view, copy_buffers=True)
    try:
        return pickle.loads(main, buffers=bufs)
    finally:
        main.release()


def loads_payload(body: bytes | bytearray | memoryview) -> Any:
    """Inverse of :func:`dumps_payload` (for a payload held in memory)."""
    return _load_view(memoryview(body))


# --------------------------------------------------------------------------- shared memory


class _Segment:
    __slots__ = ("id", "name", "size", "map", "busy", "announced")

    def __init__(self, seg_id: int, size: int) -> None:
        self.id = seg_id
        self.size = size
        self.name = f"vastnb-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        path = os.path.join(_SHM_DIR, self.name)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, size)
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.busy = False
        self.announced = False

    def unlink(self) -> None:
        try:
            os.unlink(os.path.join(_SHM_DIR, self.name))
        except FileNotFoundError:
            pass


class _SegmentPool:
    """Segments this side writes into; reused once the peer releases them."""

    def __init__(self) -> None:
        self.segments: dict[int, _Segment] = {}
        self._next = 1

    def acquire(self, size: int) -> _Segment:
        best = None
        for seg in self.segments.values():
            if not seg.busy and seg.size >= size and (best is None or seg.size < best.size):
                best = seg
        if best is None:
            cap = max(1 << 20, 1 << (size - 1).bit_length())
            # drop idle segments that are too small, to bound memory
            for seg in [s for s in self.segments.values() if not s.busy and s.size < cap]:
                self._drop(seg)
            best = _Segment(self._next, cap)
            self._next += 1
            self.segments[best.id] = best
        best.busy = True
        return best

    def release(self, seg_id: int) -> None:
        seg = self.segments.get(seg_id)
        if seg is not None:
            seg.busy = False
            seg.announced = True

    def _drop(self, seg: _Segment) -> None:
        self.segments.pop(seg.id, None)
        if not seg.announced:
            seg.unlink()
        try:
            seg.map.close()
        except BufferError:
            pass

    def close(self) -> None:
        for seg in list(self.segments.values()):
            self._drop(seg)


class _PeerSegments:
    """Segments the peer writes into, mapped on first sight and unlinked at once."""

    def __init__(self) -> None:
        self.maps: dict[int, mmap.mmap] = {}

    def get(self, seg_id: int, size: int, name: str) -> mmap.mmap:
        m = self.maps.get(seg_id)
        if m is not None and len(m) == size:
            return m
        if not name or "/" in name or not name.startswith("vastnb-"):
            raise ProtocolError("unknown shared-memory segment")
        path = os.path.join(_SHM_DIR, name)
        fd = os.open(path, os.O_RDWR)
        try:
            if os.fstat(fd).st_size < size:
                raise ProtocolError("shared-memory segment smaller than declared")
            m = mmap.mmap(fd, size)
        finally:
            os.close(fd)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        old = self.maps.pop(seg_id, None)
        if old is not None:
            old.close()
        self.maps[seg_id] = m
        return m

    def close(self) -> None:
        for m in self.maps.values():
            try:
                m.close()
            except BufferError:
                pass
        self.maps.clear()


# --------------------------------------------------------------------------- connection


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass


class Connection:
    """An authenticated frame connection over asyncio streams (either side)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, use_shm: bool = True) -> None:
        self.reader = reader
        self.writer = writer
        self.use_shm = use_shm and _SHM_OK
        self._pool = _SegmentPool()
        self._peer = _PeerSegments()
        self.closed = False
        self.last_req_id = 0  # the header's request id of the last message received
        sock = writer.get_extra_info("socket")
        if sock is not None:
            import socket

            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    # -- handshake
    @classmethod
    async def connect(cls, host: str, port: int, secret: bytes, *, use_shm: bool = True) -> "Connection":
        reader, writer = await asyncio.open_connection(host, port, limit=MAX_INLINE + 1024)
        writer.write(HANDSHAKE_MAGIC + secret)
        try:
            answer = await reader.readexactly(2)
        except (asyncio.IncompleteReadError, ConnectionError):
            answer = b""
        if answer != b"OK":
            await _close(writer)
            raise ConnectionRefusedError("the worker refused the handshake (wrong secret?)")
        return cls(reader, writer, use_shm=use_shm)

    @classmethod
    async def accept(
        cls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: bytes, *, timeout: float = 5.0
    ) -> "Connection | None":
        """Check the peer's handshake; on anything wrong close and return None (nothing deserialized)."""
        try:
            hello = await asyncio.wait_for(reader.readexactly(HANDSHAKE_LEN), timeout)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, OSError):
            await _close(writer)
            return None
        if hello[:4] != HANDSHAKE_MAGIC or not hmac.compare_digest(hello[4:], secret):
            await _close(writer)
            return None
        writer.write(b"OK")
        return cls(reader, writer)

    # -- sending
    def send(self, payload: Payload, req_id: int = 0) -> None:
        """Queue one message (call from the connection's loop); ``req_id`` travels in the header."""
        if self.closed:
            raise ConnectionResetError("connection closed")
        if self.use_shm and payload.size >= SHM_THRESHOLD:
            seg = self._pool.acquire(payload.size)
            payload.write_into(memoryview(seg.map)[: payload.size])
            name = b"" if seg.announced else seg.name.encode()
            seg.announced = True
            desc = _SHM_DESC.pack(seg.id, seg.size, payload.size) + name
            self.writer.write(HEADER.pack(KIND_MSG, FLAG_SHM, 0, req_id, len(desc)) + desc)
            return
        head = HEADER.pack(KIND_MSG, 0, 0, req_id, payload.size) + payload.head()
        if payload.size < 64 * 1024:
            self.writer.write(b"".join([head, *payload.chunks, *payload.buffers]))
        else:
            self.writer.writelines([head, *payload.chunks, *(bytes(b) for b in payload.buffers)])

    def send_obj(self, obj: Any, what: str = "message", req_id: int = 0) -> None:
        self.send(dumps_payload(obj, what), req_id)

    async def drain(self) -> None:
        await self.writer.drain()

    # -- receiving
    async def recv(self) -> Any:
        """Next message, already unpickled. Raises EOFError when the peer is gone."""
        while True:
            try:
                head = await self.reader.readexactly(HEADER.size)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise EOFError("peer closed the connection") from exc
            kind, flags, _r1, req_id, length = HEADER.unpack(head)
            self.last_req_id = req_id
            limit = MAX_INLINE if self.use_shm else (1 << 34)
            if kind not in (KIND_MSG, KIND_RELEASE) or length > limit:
                raise ProtocolError(f"bad frame header (kind {kind}, length {length})")
            try:
                body = await self.reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise EOFError("peer closed the connection mid-frame") from exc
            if kind == KIND_RELEASE:
                if length != 4:
                    raise ProtocolError("bad release frame")
                self._pool.release(struct.unpack("<I", body)[0])
                continue
            try:
                if flags & FLAG_SHM:
                    return self._load_shm(body)
                return _load_view(memoryview(body))
            except ProtocolError:
                raise
            except Exception as exc:
                raise PayloadError(req_id, exc) from exc

    def _load_shm(self, desc: bytes) -> Any:
        if len(desc) < _SHM_DESC.size:
            raise ProtocolError("bad shared-memory descriptor")
        seg_id, seg_size, size = _SHM_DESC.unpack_from(desc, 0)
        if seg_size > MAX_SEGMENT or size > seg_size:
            raise ProtocolError("bad shared-memory descriptor")
        m = self._peer.get(seg_id, seg_size, desc[_SHM_DESC.size :].decode("ascii", "replace"))
        view = memoryview(m)[:size]
        try:
            obj = _load_view(view)
        finally:
            view.release()
            self.writer.write(HEADER.pack(KIND_RELEASE, 0, 0, 0, 4) + struct.pack("<I", seg_id))
        return obj

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.writer.close()
        except Exception:
            pass
        self._pool.close()
        self._peer.close()


def pickle_roundtrip(obj: Any, what: str = "value") -> Any:
    """Serialize and deserialize in process (tests and checks)."""
    return loads_payload(dumps_payload(obj, what).to_bytes())


def check_picklable(obj: Any, what: str) -> None:
    """Raise :class:`SerializationError` naming ``what`` when ``obj`` cannot travel."""
    dumps_payload(obj, what)

