"""No shared-memory segment outlives the processes that use it, whoever dies; big payloads do not pin memory."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from vastnb.errors import WorkerLost
from vastnb.wire import SHM_POOL_BYTES, Connection, segment_files, sweep_segments

from .conftest import pid_alive, wait_for

MiB = 1 << 20


def _mapped_segments(pid: int) -> list[int]:
    """Sizes of vastnb's shared-memory segments mapped by process ``pid`` (unlinked ones included)."""
    sizes = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            if "/dev/shm/vastnb-" in line:
                lo, hi = line.split()[0].split("-")
                sizes.append(int(hi, 16) - int(lo, 16))
    return sizes


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_sigkill_of_a_worker_with_large_requests_queued_leaves_no_segment(make_app, tmp_path):
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote(retries=0)
    async def block(path):
        import time

        open(path, "w").close()
        time.sleep(3600)  # the worker's loop reads nothing more: the requests below stay unmapped

    @app.remote(retries=0)
    async def take(blob):
        return len(blob)

    app.ensure_ready(progress=False)
    (worker,) = app.snapshot().workers
    started = tmp_path / "started"
    blocked = block.submit(str(started))
    assert wait_for(started.exists)
    queued = [take.submit(os.urandom(8 * MiB)) for _ in range(6)]
    assert wait_for(lambda: len(segment_files([os.getpid()])) >= 6)  # sent, never mapped by the worker
    os.kill(worker.pid, signal.SIGKILL)
    for fut in [blocked, *queued]:
        with pytest.raises(WorkerLost):
            fut.result(30)
    assert wait_for(lambda: segment_files([os.getpid(), worker.pid]) == [])
    app.shutdown()
    assert segment_files([os.getpid(), worker.pid]) == []


_NOTEBOOK = textwrap.dedent("""
    import os, sys, time
    import vastnb
    from vastnb.wire import segment_files

    app = vastnb.Deployment("shm-" + sys.argv[2])
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote(retries=0)
    async def block(path):
        import time
        open(path, "w").close()
        time.sleep(3600)

    @app.remote(retries=0)
    async def take(blob):
        return len(blob)

    app.ensure_ready(progress=False)
    started = sys.argv[1]
    block.submit(started)
    while not os.path.exists(started):
        time.sleep(0.01)
    futures = [take.submit(os.urandom(16 << 20)) for _ in range(4)]
    while len(segment_files([os.getpid()])) < 4:
        time.sleep(0.01)
    print("PIDS", os.getpid(), *[w.pid for w in app.snapshot().workers], flush=True)
    if sys.argv[2] == "sigkill":
        time.sleep(3600)  # killed here
    sys.stdin.readline()  # the test has counted the segments: the interpreter exits without app.shutdown()
""")


@pytest.mark.parametrize("how", ["sigkill", "exit"])
def test_notebook_that_dies_or_exits_without_shutdown_leaves_no_segment(tmp_path, how):
    script = tmp_path / "notebook.py"
    script.write_text(_NOTEBOOK)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "started"), how], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE, text=True, cwd=os.getcwd())
    assert proc.stdout is not None and proc.stdin is not None
    with proc.stdout, proc.stdin:
        line = proc.stdout.readline()
        while line and not line.startswith("PIDS"):
            line = proc.stdout.readline()
        pids = [int(p) for p in line.split()[1:]]
        assert len(pids) == 2
        assert len(segment_files(pids)) >= 4  # requests the blocked worker never mapped
        if how == "sigkill":
            proc.send_signal(signal.SIGKILL)
        else:
            proc.stdin.write("exit\n")
            proc.stdin.flush()
        assert proc.wait(60) == (-signal.SIGKILL if how == "sigkill" else 0)
    assert wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=60)
    assert segment_files(pids) == []


def test_a_600_mb_call_does_not_pin_memory(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote()
    async def echo(value):
        return value

    app.ensure_ready(progress=False)
    assert echo.call(b"warm") == b"warm"
    (worker,) = app.snapshot().workers
    gc.collect()
    before = {pid: _rss(pid) for pid in (os.getpid(), worker.pid)}
    blob = b"\x01" * (600 * MiB)
    out = echo.call(blob)
    assert len(out) == len(blob) and out[-1:] == b"\x01"
    del out, blob
    gc.collect()

    def released() -> bool:
        mapped = _mapped_segments(os.getpid()) + _mapped_segments(worker.pid)
        return max(mapped, default=0) <= SHM_POOL_BYTES

    assert wait_for(released)  # the segments above the pool's cap are unmapped on both sides
    assert segment_files([os.getpid(), worker.pid]) == []
    for pid, rss in before.items():  # and the 600 MB are not held: far less than the payload stays
        assert wait_for(lambda: _rss(pid) - rss < 200 * MiB), (pid, (_rss(pid) - rss) // MiB)


def test_pool_keeps_at_most_its_cap_and_the_peer_unmaps_what_it_drops():
    secret = os.urandom(32)

    async def main():
        async def handle(reader, writer):
            conn = await Connection.accept(reader, writer, secret)
            assert conn is not None
            server_side.append(conn)
            while True:
                try:
                    req_id, msg = await conn.recv()
                except EOFError:
                    conn.close()
                    await conn.writer.wait_closed()
                    finished.set()
                    return
                conn.send_message(msg, req_id)

        finished = asyncio.Event()
        server_side: list[Connection] = []
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        client = await Connection.connect("127.0.0.1", server.sockets[0].getsockname()[1], secret)
        for size in (20 * MiB, 20 * MiB, SHM_POOL_BYTES + MiB, 20 * MiB):
            client.send_message(b"\x02" * size, 1)
            _, echoed = await client.recv()
            assert len(echoed) == size
        own, peer = client.shm_bytes
        assert own <= SHM_POOL_BYTES and peer <= SHM_POOL_BYTES
        (srv,) = server_side
        srv_own, srv_peer = srv.shm_bytes
        assert srv_own <= SHM_POOL_BYTES and srv_peer <= SHM_POOL_BYTES
        assert segment_files([os.getpid()]) == []  # every file unlinked once the peer mapped it
        client.close()
        await client.writer.wait_closed()
        await finished.wait()
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def test_sweep_removes_segments_of_dead_creators_only(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = [f"vastnb-{dead.pid}-000000000001", f"vastnb-{live.pid}-000000000002"]
        for name in names:
            with open(f"/dev/shm/{name}", "wb") as f:
                f.write(b"x")
        assert sweep_segments() >= 1
        assert segment_files([dead.pid, live.pid]) == [names[1]]
        assert sweep_segments([live.pid]) == 1  # a creator being killed: its segments by PID
        assert segment_files([dead.pid, live.pid]) == []
    finally:
        live.kill()
        live.wait()
