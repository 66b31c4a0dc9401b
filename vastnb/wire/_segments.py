"""Shared-memory segments between the two sides of a connection: their files, the writer's pool, the reader's views.

A large message is written once into a segment of its sender's pool. The receiver maps the segment on
first sight and keeps the mapping while the sender keeps the segment, so a reused segment costs no page
faults on either side. What the message carries as protocol-5 out-of-band buffers (NumPy arrays, torch
tensors) is handed out as views of that mapping, not copied: the segment is *lent* until the last view of
it is gone, and only then does the receiver send RELEASE, after which the sender may write into it again
(:func:`lend`). A message without such buffers is copied out by the unpickler (``bytes``, ``str``) and
released at once.

Who removes a segment's file, whatever dies when:

* the peer unlinks it as soon as it has mapped it, and the creator unlinks it when the peer's first
  RELEASE says so, or when it drops the segment, or when its connection closes;
* every segment this process still has linked is unlinked at interpreter exit
  (:func:`unlink_created_segments`; a worker calls it before ``os._exit``);
* a segment whose creator died before the peer mapped it is named after the creator's PID, so whoever
  outlives the creator sweeps it (:func:`sweep_segments`): the runtime when a worker exits and when it
  starts, a worker when its parent (the notebook) is gone.

The memory of a segment stays while either side maps it or a view of it lives (an unlinked file's pages
go with its last mapping, so views stay readable after the connection closes). Each side keeps at most
``SHM_POOL_BYTES`` of idle segments for reuse and drops the rest, telling the peer to unmap them too (a
FORGET frame): a segment larger than that at once when released, others after ``SHM_IDLE_GRACE`` seconds
idle (a stream of large messages alternates between two segments: the next request often goes out just
before the RELEASE of the previous one comes back, and a new segment costs a page fault per page).
"""

from __future__ import annotations

import atexit
import mmap
import os
import pickle
import time
import uuid
from collections.abc import Iterable
from typing import Any, Callable

from ._pickle import ProtocolError

__all__ = [
    "SHM_ALIGN",
    "SHM_IDLE_GRACE",
    "SHM_OK",
    "SHM_POOL_BYTES",
    "PeerSegments",
    "SegmentPool",
    "lend",
    "owner_pid",
    "segment_files",
    "segment_size",
    "sweep_segments",
    "unlink_created_segments",
]

SHM_PREFIX = "vastnb-"
SHM_POOL_BYTES = 128 * 1024 * 1024  # idle segments kept for reuse per connection side
SHM_ALIGN = 64  # out-of-band buffers start at this alignment in a segment (a lent array is aligned)
SHM_IDLE_GRACE = 1.0  # seconds an idle segment beyond the pool's cap is kept, in case the next message needs it

_SHM_DIR = "/dev/shm"
SHM_OK = os.path.isdir(_SHM_DIR) and os.access(_SHM_DIR, os.W_OK)

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


def owner_pid(name: str) -> int | None:
    """The PID in a segment's name, or None when ``name`` is not a vastnb segment."""
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
    if not SHM_OK:
        return []
    wanted = None if pids is None else set(pids)
    try:
        names = os.listdir(_SHM_DIR)
    except OSError:
        return []
    out = []
    for name in names:
        owner = owner_pid(name)
        if owner is not None and (wanted is None or owner in wanted):
            out.append(name)
    return sorted(out)


def sweep_segments(pids: Iterable[int] | None = None) -> int:
    """Unlink the segment files created by the processes ``pids`` (they are dead or being killed), or with
    ``pids=None`` those of every creator that is dead. Returns how many files were removed."""
    removed = 0
    for name in segment_files(pids):
        owner = owner_pid(name)
        if pids is None and (owner is None or owner == os.getpid() or not _pid_dead(owner)):
            continue
        try:
            os.unlink(_shm_path(name))
            removed += 1
        except (FileNotFoundError, PermissionError):
            pass
    return removed


atexit.register(unlink_created_segments)


def segment_size(n: int) -> int:
    """The size of a new segment for an ``n``-byte payload: at least 1 MiB, else ``n`` rounded up to an eighth
    of its power of two (at most 1/8 unused; few distinct sizes, so released segments fit later payloads)."""
    step = 1 << max(20, (n - 1).bit_length() - 3)
    return max(1 << 20, -(-n // step) * step)


class _Segment:
    __slots__ = ("id", "name", "size", "map", "busy", "linked", "announced", "idle_at")

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
        self.idle_at = 0.0
        self.announced = False  # the peer was told the name (it maps the segment on first sight)

    def unlink(self) -> None:
        if self.linked:
            self.linked = False
            _unlink_name(self.name)


class SegmentPool:
    """Segments this side writes into; reused once the peer releases them, at most ``cap`` idle bytes kept."""

    def __init__(self, cap: int = SHM_POOL_BYTES, on_drop: Callable[[int], None] | None = None, *,
                 grace: float = SHM_IDLE_GRACE, clock: Callable[[], float] = time.monotonic) -> None:
        self.segments: dict[int, _Segment] = {}
        self.cap = cap
        self.on_drop = on_drop  # tells the peer to unmap a dropped segment
        self.grace = grace
        self.clock = clock
        self._next = 1

    @property
    def size(self) -> int:
        return sum(s.size for s in self.segments.values())

    def acquire(self, size: int) -> _Segment:
        """The smallest idle segment of at least ``size`` bytes, or a new one; busy until released."""
        best = None
        for seg in self.segments.values():
            if not seg.busy and seg.size >= size and (best is None or seg.size < best.size):
                best = seg
        if best is None:
            new_size = segment_size(size)
            for seg in [s for s in self.segments.values() if not s.busy and s.size < new_size]:
                self._drop(seg)  # idle segments too small for this payload
            best = _Segment(self._next, new_size)
            self._next += 1
            self.segments[best.id] = best
        best.busy = True
        return best

    def release(self, seg_id: int) -> float | None:
        """The peer is done with the segment (and has mapped it: its file is no longer needed). Returns when
        :meth:`trim` is due again (seconds), or None."""
        seg = self.segments.get(seg_id)
        if seg is None:
            return None
        seg.busy = False
        seg.idle_at = self.clock()
        seg.unlink()
        return self.trim()

    def trim(self) -> float | None:
        """Drop idle segments, largest first, until at most ``cap`` idle bytes are kept, sparing those idle for
        less than ``grace`` seconds (unless larger than ``cap``). Busy segments (the peer may still hold views
        of them) are in use, and not counted. Returns in how many seconds a spared one is due, or None."""
        now = self.clock()
        idle = sorted((s for s in self.segments.values() if not s.busy), key=lambda s: -s.size)
        total = sum(s.size for s in idle)
        due = None
        for seg in idle:
            if total <= self.cap:
                break
            wait = seg.idle_at + self.grace - now
            if seg.size <= self.cap and wait > 0:
                due = wait if due is None else min(due, wait)
                continue
            total -= seg.size
            self._drop(seg)
        return due if total > self.cap else None

    def _drop(self, seg: _Segment) -> None:
        self.segments.pop(seg.id, None)
        seg.unlink()
        try:
            seg.map.close()
        except BufferError:
            pass
        if seg.announced and self.on_drop is not None:
            self.on_drop(seg.id)

    def close(self) -> None:
        for seg in list(self.segments.values()):
            self.segments.pop(seg.id, None)
            seg.unlink()
            try:
                seg.map.close()
            except BufferError:
                pass


class PeerSegments:
    """Segments the peer writes into, mapped on first sight (and unlinked at once) until the peer drops them."""

    def __init__(self) -> None:
        self.maps: dict[int, mmap.mmap] = {}

    def get(self, seg_id: int, size: int, name: str) -> mmap.mmap:
        m = self.maps.get(seg_id)
        if m is not None and len(m) == size:
            return m
        if not name or "/" in name or owner_pid(name) is None:
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
        """Unmap a segment the peer dropped (a view still lent keeps its mapping alive until it goes)."""
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


_ROOTS: dict[int, Any] = {}  # ctypes char-array types by segment size (segment_size makes few distinct sizes)


def lend(m: mmap.mmap, length: int) -> tuple[Any, memoryview]:
    """A fresh object exporting all of ``m``, and a writable byte view of its first ``length`` bytes.

    The view, and every view, array or tensor later made from it, keeps that object alive, and the object keeps
    ``m`` mapped: the object dies (and can be watched with a weakref) exactly when the last of them goes. A
    ``memoryview`` cannot be that object (its slices bypass it) and Python classes export no buffers before
    3.12, so it is a ctypes array over the mapping; ``PickleBuffer.raw`` gives its bytes as format ``B``.
    """
    import ctypes

    kind = _ROOTS.get(len(m))
    if kind is None:
        kind = _ROOTS[len(m)] = ctypes.c_char * len(m)
    root = kind.from_buffer(m)
    with pickle.PickleBuffer(root).raw() as whole:
        return root, whole[:length]
