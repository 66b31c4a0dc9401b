"""Authenticated frame connections between the notebook's runtime and its local workers, with shared memory."""

from __future__ import annotations

import asyncio
import hmac
import mmap
import os
import struct
import uuid
from typing import Any

from ._pickle import Payload, ProtocolError, _load_view, dumps_payload

__all__ = ["Connection", "HANDSHAKE_MAGIC", "PayloadError", "ProtocolError", "SHM_THRESHOLD"]

HANDSHAKE_MAGIC = b"VNB1"
SECRET_BYTES = 32
HANDSHAKE_LEN = len(HANDSHAKE_MAGIC) + SECRET_BYTES
HEADER = struct.Struct("<BBHIQ")  # kind, flags, reserved, request id, body length
SHM_THRESHOLD = 256 * 1024
MAX_INLINE = 64 * 1024 * 1024  # larger inline bodies are refused (shared memory carries big ones)
MAX_SEGMENT = 1 << 40

KIND_MSG = 1
KIND_RELEASE = 2
FLAG_SHM = 1

_SHM_DIR = "/dev/shm"
_SHM_OK = os.path.isdir(_SHM_DIR) and os.access(_SHM_DIR, os.W_OK)
_SHM_DESC = struct.Struct("<IQQ")  # segment id, segment size, payload length; then the name (maybe empty)



class PayloadError(Exception):
    """A well-formed frame whose pickle could not be loaded; ``req_id`` names the message."""

    def __init__(self, req_id: int, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.req_id = req_id
        self.error = error

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

    def send_message(self, message: Any, req_id: int = 0) -> None:
        """Pickle and queue one message (a :mod:`vastnb.wire.messages` dataclass)."""
        self.send(dumps_payload(message, "message"), req_id)

    async def drain(self) -> None:
        await self.writer.drain()

    # -- receiving
    async def recv(self) -> tuple[int, Any]:
        """``(request id, message)`` of the next message, already unpickled. Raises EOFError when the peer is gone."""
        while True:
            try:
                head = await self.reader.readexactly(HEADER.size)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise EOFError("peer closed the connection") from exc
            kind, flags, _r1, req_id, length = HEADER.unpack(head)
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
                    return req_id, self._load_shm(body)
                return req_id, _load_view(memoryview(body))
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
