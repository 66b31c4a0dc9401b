"""Arrays and tensors cross shared memory with one copy each way and arrive as views of it, lent until dropped.

Copies are counted, not timed: what the sender writes into the segment, what either side allocates (tracemalloc
sees every Python and NumPy buffer), and where the received array's memory lies.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import threading
import tracemalloc

import numpy as np
import pytest
import torch

from vastnb.wire import SHM_THRESHOLD, Connection, Payload, dumps_payload, segment_files
from vastnb.wire._segments import SegmentPool

from .conftest import pid_alive, wait_for

MiB = 1 << 20


def _address(value: object) -> int:
    if isinstance(value, torch.Tensor):
        return int(value.data_ptr())
    return int(np.frombuffer(value, np.uint8).ctypes.data) if isinstance(value, memoryview) else int(value.ctypes.data)


def _in_segment(value: object, conn: Connection) -> int | None:
    """The id of the segment of the peer (mapped by ``conn``) that holds ``value``'s memory, or None."""
    addr = _address(value)
    for seg_id, m in conn._peer.maps.items():
        base = ctypes.addressof(ctypes.c_char.from_buffer(m))
        if base <= addr < base + len(m):
            return seg_id
    return None


def _shm_mappings(pid: int | str = "self") -> list[tuple[int, int, str]]:
    """vastnb's shared-memory mappings of a process: (start, end, file name)."""
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            if "/dev/shm/vastnb-" in line:
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                out.append((lo, hi, line.split("/dev/shm/")[1].split()[0]))
    return out


def _make(kind: str, size: int) -> object:
    if kind == "numpy":
        return np.arange(size // 8, dtype=np.float64)
    return torch.arange(size // 4, dtype=torch.float32)


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return bool(torch.equal(a, b))  # type: ignore[arg-type]
    return bool(np.array_equal(a, b))  # type: ignore[arg-type]


def _pair(test):
    """Run ``test(client, server)`` on two connected Connections in one event loop."""
    secret = os.urandom(32)

    async def main():
        accepted: asyncio.Queue = asyncio.Queue()

        async def handle(reader, writer):
            await accepted.put(await Connection.accept(reader, writer, secret))

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        client = await Connection.connect("127.0.0.1", server.sockets[0].getsockname()[1], secret)
        peer = await accepted.get()
        try:
            await test(client, peer)
        finally:
            for conn in (client, peer):
                conn.close()
                await conn.writer.wait_closed()
            server.close()
            await server.wait_closed()

    asyncio.run(main())


async def _settle(sender: Connection, receiver: Connection) -> None:
    """Let the sender read what the receiver wrote so far (RELEASE frames): a small message closes the batch."""
    await asyncio.sleep(0)  # RELEASE frames handed to the loop by finalizers are written first
    receiver.send_message("sync")
    assert await sender.recv() == (0, "sync")


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_one_copy_into_shared_memory_and_the_receiver_gets_a_view(kind, monkeypatch):
    value = _make(kind, 16 * MiB)
    payload = dumps_payload(value)
    (buf,) = payload.buffers  # pickling copied nothing: the one buffer is the value's own memory
    assert payload.main_len < 4096 and buf.nbytes == 16 * MiB and _address(buf) == _address(value)

    written: list[int] = []
    write_into = Payload.write_into

    class Counting:
        def __init__(self, dest: memoryview) -> None:
            self.dest = dest

        def __setitem__(self, where: slice, piece: object) -> None:
            written.append(memoryview(piece).nbytes)  # type: ignore[arg-type]
            self.dest[where] = piece

    monkeypatch.setattr(Payload, "write_into", lambda self, dest, align=1: write_into(self, Counting(dest), align))

    async def test(client: Connection, server: Connection) -> None:
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            client.send(payload, 7)
            req_id, got = await server.recv()
            allocated = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert req_id == 7 and _same(got, value)
        # the sender wrote the value once, and its header; no side allocated a copy of it
        assert sum(written) == payload.size and max(written) == 16 * MiB
        assert allocated < MiB, allocated
        seg_id = _in_segment(got, server)  # the received value is the segment's memory, aligned
        assert seg_id is not None and _address(got) % 64 == 0
        assert client._pool.segments[seg_id].busy  # lent while the value lives
        flat = got if kind == "numpy" else got.numpy()
        assert np.shares_memory(flat, np.frombuffer(server._peer.maps[seg_id], np.uint8))
        del got, flat
        gc.collect()
        await _settle(client, server)
        assert not client._pool.segments[seg_id].busy  # the last view went: RELEASE came back

    _pair(test)


def test_a_lent_segment_is_reused_only_once_every_view_of_it_is_gone():
    async def test(client: Connection, server: Connection) -> None:
        first = np.full(MiB, 1.0)
        client.send_message(first)
        _, got = await server.recv()
        seg = _in_segment(got, server)
        derived = [got[10:20], torch.from_numpy(got), memoryview(got)]
        del got
        gc.collect()
        await _settle(client, server)
        assert client._pool.segments[seg].busy
        client.send_message(np.full(MiB, 2.0))  # may not overwrite what the views show
        _, second = await server.recv()
        assert _in_segment(second, server) != seg
        assert derived[0].tolist() == [1.0] * 10 and float(derived[1].sum()) == MiB
        for _ in range(len(derived)):
            derived.pop()
            gc.collect()
            await _settle(client, server)
            assert client._pool.segments[seg].busy == bool(derived)
        client.send_message(np.full(MiB, 3.0))  # the released segment is the one reused
        _, third = await server.recv()
        assert _in_segment(third, server) == seg and float(third[0]) == 3.0
        assert len(client._pool.segments) == 2

    _pair(test)


def test_a_view_dropped_on_another_thread_releases_its_segment():
    async def test(client: Connection, server: Connection) -> None:
        client.send_message({"x": np.ones(MiB)})
        _, got = await server.recv()
        seg = _in_segment(got["x"], server)
        box = [got]
        del got
        thread = threading.Thread(target=box.clear)  # the finalizer runs there: RELEASE is handed to the loop
        thread.start()
        thread.join()
        await _settle(client, server)
        assert not client._pool.segments[seg].busy

    _pair(test)


def test_views_outlive_their_connection_and_small_arrays_stay_inline():
    kept = []

    async def test(client: Connection, server: Connection) -> None:
        client.send_message(np.arange(MiB, dtype=np.int64))
        _, got = await server.recv()
        assert _in_segment(got, server) is not None
        kept.append(got)
        small = np.arange(100)
        assert small.nbytes < SHM_THRESHOLD
        client.send_message(small)
        _, inline = await server.recv()
        assert _in_segment(inline, server) is None and np.array_equal(inline, small)

    _pair(test)  # both sides closed: segments unmapped and unlinked, finalizer has no connection to tell
    (view,) = kept
    address = _address(view)
    assert segment_files([os.getpid()]) == []
    assert np.array_equal(view, np.arange(MiB, dtype=np.int64))
    kept.clear()
    del view
    gc.collect()
    assert not any(lo <= address < hi for lo, hi, _ in _shm_mappings())  # the last view unmapped it


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_a_result_held_after_shutdown_stays_readable_and_no_file_is_left(make_app, kind):
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote()
    async def echo(value):
        return value

    app.ensure_ready(progress=False)
    (worker,) = app.snapshot().workers
    value = _make(kind, 4 * MiB)
    out = echo.call(value)
    address = _address(out)
    assert any(lo <= address < hi for lo, hi, _ in _shm_mappings())  # a view of the worker's segment
    app.shutdown()
    gc.collect()
    assert wait_for(lambda: not pid_alive(worker.pid))
    assert segment_files([os.getpid(), worker.pid]) == []
    assert _same(out, value)
    del out
    gc.collect()
    assert not any(lo <= address < hi for lo, hi, _ in _shm_mappings())  # the last view unmapped it


def test_the_pools_do_not_grow_across_round_trips_whose_results_are_dropped(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote()
    async def echo(value):
        return value

    app.ensure_ready(progress=False)
    (worker,) = app.snapshot().workers
    value = np.random.default_rng(0).random(4 * MiB // 8)

    def segments() -> set[str]:
        return {name for pid in ("self", worker.pid) for _, _, name in _shm_mappings(pid)}

    earlier = segments()  # of other tests in this process, if any are still mapped
    seen: set[str] = set()
    for _ in range(20):
        out = echo.call(value)
        assert np.array_equal(out, value)
        del out
        seen |= segments() - earlier
    # each side wrote into at most two segments, reused from the first calls on: none was made, dropped and remade
    # (two: the next call may go out just before the worker's RELEASE of the previous one comes back)
    by_creator = [sum(name.startswith(f"vastnb-{pid}-") for name in seen) for pid in (os.getpid(), worker.pid)]
    assert 1 <= by_creator[0] <= 2 and 1 <= by_creator[1] <= 2, seen


def test_idle_segments_over_the_cap_are_dropped_after_a_grace_and_larger_ones_at_once():
    now = [0.0]
    dropped: list[int] = []
    pool = SegmentPool(cap=3 * MiB, on_drop=dropped.append, grace=1.0, clock=lambda: now[0])
    try:
        a, b = pool.acquire(2 * MiB), pool.acquire(2 * MiB)
        assert (a.size, b.size) == (2 * MiB, 2 * MiB)
        a.announced = b.announced = True
        assert pool.release(a.id) is None  # 2 MiB idle: within the cap
        now[0] = 0.25
        assert pool.release(b.id) == 0.75  # 4 MiB idle, both released less than 1 s ago: spared until a is
        assert set(pool.segments) == {a.id, b.id} and dropped == []
        now[0] = 1.1
        assert pool.trim() is None and set(pool.segments) == {b.id} and dropped == [a.id]  # a, idle longest
        big = pool.acquire(5 * MiB)  # b is too small for it: dropped (and the peer told)
        assert dropped == [a.id, b.id] and big.size == 5 * MiB
        big.announced = True
        assert pool.release(big.id) is None and pool.segments == {} and dropped == [a.id, b.id, big.id]
    finally:
        pool.close()
    assert segment_files([os.getpid()]) == []
