"""Authenticated frame connections between the notebook's runtime and its local workers, with shared memory."""

from __future__ import annotations

import asyncio
import hmac
import struct
import weakref
from typing import Any

from ._pickle import Payload, ProtocolError, _load_view, dumps_payload
from ._segments import (
    SHM_ALIGN,
    SHM_OK,
    SHM_POOL_BYTES,
    PeerSegments,
    SegmentPool,
    lend,
    segment_files,
    sweep_segments,
    unlink_created_segments,
)

__all__ = [
    "HANDSHAKE_DIRECT",
    "HANDSHAKE_MAGIC",
    "HEADER",
    "KIND_MSG",
    "SHM_POOL_BYTES",
    "SHM_THRESHOLD",
    "Connection",
    "PayloadError",
    "ProtocolError",
    "frame",
    "segment_files",
    "sweep_segments",
    "unlink_created_segments",
]

HANDSHAKE_MAGIC = b"VNB1"
HANDSHAKE_DIRECT = b"VNB0"  # the same, for a connection that carries everything inline (no shared memory)
SECRET_BYTES = 32
HANDSHAKE_LEN = len(HANDSHAKE_MAGIC) + SECRET_BYTES
HEADER = struct.Struct("<BBHIQ")  # kind, flags, reserved, request id, body length
SHM_THRESHOLD = 256 * 1024
MAX_INLINE = 64 * 1024 * 1024  # larger inline bodies are refused (shared memory carries big ones)
MAX_SEGMENT = 1 << 40

KIND_MSG = 1
KIND_RELEASE = 2  # the peer is done with a segment (every view of it is gone): it may be reused
KIND_FORGET = 3  # the creator dropped a segment: unmap it
FLAG_SHM = 1

_SHM_DESC = struct.Struct("<IQQ")  # segment id, segment size, payload length; then the name (maybe empty)


class PayloadError(Exception):
    """A well-formed frame whose pickle could not be loaded; ``req_id`` names the message."""

    def __init__(self, req_id: int, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.req_id = req_id
        self.error = error


def _release_when_gone(conn_ref: "weakref.ref[Connection]", seg_id: int) -> None:
    """The last view of a lent segment is gone: RELEASE it. Runs on whichever thread dropped that view, so the
    frame is handed to the connection's loop; nothing to do once the connection (or its loop) is closed."""
    conn = conn_ref()
    if conn is None or conn.closed or conn.loop is None:
        return
    try:
        conn.loop.call_soon_threadsafe(conn._write_control, KIND_RELEASE, seg_id)
    except RuntimeError:  # the loop is closed
        pass


# --------------------------------------------------------------------------- connection


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass


def frame(payload: Payload, req_id: int = 0) -> bytes:
    """One inline message frame: the header, then the payload (for small payloads; large ones are written in
    pieces, or through shared memory)."""
    return HEADER.pack(KIND_MSG, 0, 0, req_id, payload.size) + payload.to_bytes()


class Connection:
    """An authenticated frame connection over asyncio streams (either side)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, use_shm: bool = True) -> None:
        self.reader = reader
        self.writer = writer
        self.use_shm = use_shm and SHM_OK
        self._pool = SegmentPool(on_drop=self._send_forget)
        self._peer = PeerSegments()
        self.closed = False
        # frames queued in one turn of the event loop go out in one write (one system call for a burst of calls
        # or results, instead of one each); a lone frame still leaves at the end of the turn that sent it
        self._out: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None  # set by the first recv()
        self._trim_timer: asyncio.TimerHandle | None = None
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
        if hello[:4] not in (HANDSHAKE_MAGIC, HANDSHAKE_DIRECT) or not hmac.compare_digest(hello[4:], secret):
            await _close(writer)
            return None
        writer.write(b"OK")
        return cls(reader, writer, use_shm=hello[:4] == HANDSHAKE_MAGIC)

    # -- sending
    def send(self, payload: Payload, req_id: int = 0) -> None:
        """Queue one message (call from the connection's loop); ``req_id`` travels in the header."""
        if self.closed:
            raise ConnectionResetError("connection closed")
        if self.use_shm and payload.size >= SHM_THRESHOLD:
            size = payload.layout_size(SHM_ALIGN)
            seg = self._pool.acquire(size)
            with memoryview(seg.map) as dest:
                payload.write_into(dest[:size], SHM_ALIGN)  # the only copy on this side
            name = b"" if seg.announced else seg.name.encode()
            seg.announced = True
            desc = _SHM_DESC.pack(seg.id, seg.size, size) + name
            self._write(HEADER.pack(KIND_MSG, FLAG_SHM, 0, req_id, len(desc)) + desc)
            return
        if payload.size < 64 * 1024:
            self._write(frame(payload, req_id))
        else:
            head = HEADER.pack(KIND_MSG, 0, 0, req_id, payload.size) + payload.head()
            self._flush()
            self.writer.writelines([head, *payload.chunks, *(bytes(b) for b in payload.buffers)])

    def _write(self, frame: bytes) -> None:
        if self.loop is None:
            self.writer.write(frame)
            return
        self._out.append(frame)
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write the frames queued so far, in order, in one write."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._out:
            return
        out, self._out = self._out, []
        if not self.writer.is_closing():
            self.writer.write(out[0] if len(out) == 1 else b"".join(out))

    def send_message(self, message: Any, req_id: int = 0) -> None:
        """Pickle and queue one message (a :mod:`vastnb.wire.messages` dataclass)."""
        self.send(dumps_payload(message, "message"), req_id)

    async def drain(self) -> None:
        self._flush()
        await self.writer.drain()

    # -- receiving
    async def recv(self) -> tuple[int, Any]:
        """``(request id, message)`` of the next message, already unpickled. Raises EOFError when the peer is gone.

        NumPy arrays and torch tensors of a message that came through shared memory are views of it: the sender
        reuses the segment once the last of them is gone."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        while True:
            try:
                head = await self.reader.readexactly(HEADER.size)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise EOFError("peer closed the connection") from exc
            kind, flags, _r1, req_id, length = HEADER.unpack(head)
            limit = MAX_INLINE if self.use_shm else (1 << 34)
            if kind not in (KIND_MSG, KIND_RELEASE, KIND_FORGET) or length > limit:
                raise ProtocolError(f"bad frame header (kind {kind}, length {length})")
            try:
                body = await self.reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise EOFError("peer closed the connection mid-frame") from exc
            if kind != KIND_MSG:
                if length != 4:
                    raise ProtocolError("bad segment frame")
                seg_id = struct.unpack("<I", body)[0]
                if kind == KIND_RELEASE:
                    self._trim_later(self._pool.release(seg_id))
                else:
                    self._peer.forget(seg_id)
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
        try:
            m = self._peer.get(seg_id, seg_size, desc[_SHM_DESC.size :].decode("ascii", "replace"))
        except BaseException:
            self._write_control(KIND_RELEASE, seg_id)  # unreadable: the creator may reuse it
            raise
        if size < 4 or struct.unpack_from("<I", m, 0)[0] == 0:
            # no out-of-band buffers: the unpickler copies everything out (bytes, str), nothing refers to the segment
            try:
                with memoryview(m) as whole:
                    return _load_view(whole[:size], align=SHM_ALIGN)
            finally:
                self._write_control(KIND_RELEASE, seg_id)
        root, body = lend(m, size)  # buffers become views of the segment: lent until the last one is gone
        weakref.finalize(root, _release_when_gone, weakref.ref(self), seg_id).atexit = False
        del root
        try:
            return _load_view(body, copy_buffers=False, align=SHM_ALIGN)
        finally:
            body.release()

    def _trim_later(self, due: float | None) -> None:
        """Trim the pool again in ``due`` seconds (idle segments beyond its cap, spared for a while)."""
        if due is None or self._trim_timer is not None or self.loop is None or self.closed:
            return

        def trim() -> None:
            self._trim_timer = None
            if not self.closed:
                self._trim_later(self._pool.trim())

        self._trim_timer = self.loop.call_later(due + 0.01, trim)

    def _send_forget(self, seg_id: int) -> None:
        self._write_control(KIND_FORGET, seg_id)

    def _write_control(self, kind: int, seg_id: int) -> None:
        if not self.closed and not self.writer.is_closing():
            self._write(HEADER.pack(kind, 0, 0, 0, 4) + struct.pack("<I", seg_id))

    @property
    def shm_bytes(self) -> tuple[int, int]:
        """Bytes of shared memory this side holds: ``(own pool, mapped segments of the peer)``."""
        return self._pool.size, self._peer.size

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._trim_timer is not None:
            self._trim_timer.cancel()
        try:
            self._flush()
            self.writer.close()
        except Exception:
            pass
        self._pool.close()
        self._peer.close()
