"""Authenticated frame connections between the notebook's runtime and its local workers, with shared memory."""

from __future__ import annotations

import asyncio
import atexit
import hmac
import mmap
import os
import struct
import uuid
from collections.abc import Iterable
from typing import Any, Callable

from ._pickle import Payload, ProtocolError, _load_view, dumps_payload

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
KIND_RELEASE = 2  # the peer has read a segment: it may be reused
KIND_FORGET = 3  # the creator dropped a segment: unmap it
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
#
# Who removes a segment's file, whatever dies when:
#
# * the peer unlinks it as soon as it has mapped it, and the creator unlinks it when the peer's first
#   RELEASE says so, or when it drops the segment, or when its connection closes;
# * every segment this process still has linked is unlinked at interpreter exit
#   (:func:`unlink_created_segments`; a worker calls it before ``os._exit``);
# * a segment whose creator died before the peer mapped it is named after the creator's PID, so whoever
#   outlives the creator sweeps it (:func:`sweep_segments`): the runtime when a worker exits and when it
#   starts, a worker when its parent (the notebook) is gone.
#
# The memory of a mapped segment stays pinned while either side maps it: the pool keeps at most
# ``SHM_POOL_BYTES`` per connection side for reuse and drops the rest after use, telling the peer to unmap
# them too (a FORGET frame).

SHM_PREFIX = "vastnb-"
SHM_POOL_BYTES = 128 * 1024 * 1024  # idle segments kept for reuse per connection side

_created: set[str] = set()  # names of segments this process created whose files may still exist


def _shm_path(name: str) -> str:
    return os.path.join(_SHM_DIR, name)


def _unlink_name(name: str) -> None:
    _created.discard(name)
    try:
        os.unlink(_shm_path(name))
    except FileNotFoundError:
        pass


def unlink_created_segments() -> None:
    """Unlink every segment file this process created that still exists (interpreter exit, worker exit)."""
    for name in list(_created):
        _unlink_name(name)


def _owner_pid(name: str) -> int | None:
    parts = name.split("-")
    if len(parts) != 3 or parts[0] + "-" != SHM_PREFIX or not parts[1].isdigit():
        return None
    return int(parts[1])


def _pid_dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # someone else's live process
    try:  # a zombie has released its mappings: as good as dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def segment_files(pids: Iterable[int] | None = None) -> list[str]:
    """Names of vastnb's shared-memory files in ``/dev/shm`` (of the processes ``pids``, or all)."""
    if not _SHM_OK:
        return []
    wanted = None if pids is None else set(pids)
    try:
        names = os.listdir(_SHM_DIR)
    except OSError:
        return []
    out = []
    for name in names:
        owner = _owner_pid(name)
        if owner is not None and (wanted is None or owner in wanted):
            out.append(name)
    return sorted(out)


def sweep_segments(pids: Iterable[int] | None = None) -> int:
    """Unlink the segment files created by the processes ``pids`` (they are dead or being killed), or with
    ``pids=None`` those of every creator that is dead. Returns how many files were removed."""
    removed = 0
    for name in segment_files(pids):
        owner = _owner_pid(name)
        if pids is None and (owner is None or owner == os.getpid() or not _pid_dead(owner)):
            continue
        try:
            os.unlink(_shm_path(name))
            removed += 1
        except (FileNotFoundError, PermissionError):
            pass
    return removed


atexit.register(unlink_created_segments)


class _Segment:
    __slots__ = ("id", "name", "size", "map", "busy", "linked", "announced")

    def __init__(self, seg_id: int, size: int) -> None:
        self.id = seg_id
        self.size = size
        self.name = f"{SHM_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        fd = os.open(_shm_path(self.name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        _created.add(self.name)
        self.linked = True
        try:
            os.ftruncate(fd, size)
            self.map = mmap.mmap(fd, size)
        except BaseException:
            self.unlink()
            raise
        finally:
            os.close(fd)
        self.busy = False
        self.announced = False  # the peer was told the name (it maps the segment on first sight)

    def unlink(self) -> None:
        if self.linked:
            self.linked = False
            _unlink_name(self.name)


class _SegmentPool:
    """Segments this side writes into; reused once the peer releases them, at most ``cap`` bytes kept."""

    def __init__(self, cap: int = SHM_POOL_BYTES, on_drop: Callable[[int], None] | None = None) -> None:
        self.segments: dict[int, _Segment] = {}
        self.cap = cap
        self.on_drop = on_drop  # tells the peer to unmap a dropped segment
        self._next = 1

    @property
    def size(self) -> int:
        return sum(s.size for s in self.segments.values())

    def acquire(self, size: int) -> _Segment:
        best = None
        for seg in self.segments.values():
            if not seg.busy and seg.size >= size and (best is None or seg.size < best.size):
                best = seg
        if best is None:
            cap = max(1 << 20, 1 << (size - 1).bit_length())
            for seg in [s for s in self.segments.values() if not s.busy and s.size < cap]:
                self._drop(seg)  # idle segments too small for this payload
            best = _Segment(self._next, cap)
            self._next += 1
            self.segments[best.id] = best
        best.busy = True
        return best

    def release(self, seg_id: int) -> None:
        """The peer has read the segment (and mapped it: its file is no longer needed)."""
        seg = self.segments.get(seg_id)
        if seg is None:
            return
        seg.busy = False
        seg.unlink()
        self.trim()

    def trim(self) -> None:
        """Drop idle segments, largest first, until the pool holds at most ``cap`` bytes."""
        total = self.size
        for seg in sorted((s for s in self.segments.values() if not s.busy), key=lambda s: -s.size):
            if total <= self.cap:
                break
            total -= seg.size
            self._drop(seg)
            if self.on_drop is not None:
                self.on_drop(seg.id)

    def _drop(self, seg: _Segment) -> None:
        self.segments.pop(seg.id, None)
        seg.unlink()
        try:
            seg.map.close()
        except BufferError:
            pass

    def close(self) -> None:
        for seg in list(self.segments.values()):
            self._drop(seg)


class _PeerSegments:
    """Segments the peer writes into, mapped on first sight (and unlinked at once) until the peer drops them."""

    def __init__(self) -> None:
        self.maps: dict[int, mmap.mmap] = {}

    def get(self, seg_id: int, size: int, name: str) -> mmap.mmap:
        m = self.maps.get(seg_id)
        if m is not None and len(m) == size:
            return m
        if not name or "/" in name or _owner_pid(name) is None:
            raise ProtocolError("unknown shared-memory segment")
        path = _shm_path(name)
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
        self.forget(seg_id)
        self.maps[seg_id] = m
        return m

    def forget(self, seg_id: int) -> None:
        old = self.maps.pop(seg_id, None)
        if old is not None:
            try:
                old.close()
            except BufferError:
                pass

    @property
    def size(self) -> int:
        return sum(len(m) for m in self.maps.values())

    def close(self) -> None:
        for seg_id in list(self.maps):
            self.forget(seg_id)


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
        self._pool = _SegmentPool(on_drop=self._send_forget)
        self._peer = _PeerSegments()
        self.closed = False
        # frames queued in one turn of the event loop go out in one write (one system call for a burst of calls
        # or results, instead of one each); a lone frame still leaves at the end of the turn that sent it
        self._out: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
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
            seg = self._pool.acquire(payload.size)
            payload.write_into(memoryview(seg.map)[: payload.size])
            name = b"" if seg.announced else seg.name.encode()
            seg.announced = True
            desc = _SHM_DESC.pack(seg.id, seg.size, payload.size) + name
            self._write(HEADER.pack(KIND_MSG, FLAG_SHM, 0, req_id, len(desc)) + desc)
            return
        head = HEADER.pack(KIND_MSG, 0, 0, req_id, payload.size) + payload.head()
        if payload.size < 64 * 1024:
            self._write(b"".join([head, *payload.chunks, *payload.buffers]))
        else:
            self._flush()
            self.writer.writelines([head, *payload.chunks, *(bytes(b) for b in payload.buffers)])

    def _write(self, frame: bytes) -> None:
        if self._loop is None:
            self.writer.write(frame)
            return
        self._out.append(frame)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

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
        """``(request id, message)`` of the next message, already unpickled. Raises EOFError when the peer is gone."""
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
                    self._pool.release(seg_id)
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
            view = memoryview(m)[:size]
            try:
                return _load_view(view)
            finally:
                view.release()
        finally:  # read (or unreadable): the creator may reuse the segment
            self._write_control(KIND_RELEASE, seg_id)

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
        try:
            self._flush()
            self.writer.close()
        except Exception:
            pass
        self._pool.close()
        self._peer.close()
