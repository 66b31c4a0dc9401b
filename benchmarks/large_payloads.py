"""Large payloads through a local deployment: throughput of bytes, NumPy arrays and torch tensors, and memory.

    .venv/bin/python benchmarks/large_payloads.py [--repeats 5] [--big-mib 600]

One local deployment with one worker and ``echo(value) -> value``, called through the public API
(``await echo(x)``). Throughput is payload size ÷ round-trip time (the payload goes there and
back), for bytes, a float64 NumPy array and a float32 torch CPU tensor of 1, 16 and 64 MiB: the
median of ``--runs`` calls in each repeat, then the median over repeats (kinds and sizes are
interleaved within a repeat, so machine noise hits them alike). Each answer is checked once.

Memory, for a ``--big-mib`` round trip of each kind, in the notebook process (this one):
``base`` is VmRSS once the input exists (so the input itself is not counted), ``peak`` the
high-water mark VmHWM during the call (reset through ``/proc/self/clear_refs`` just before it;
when that is refused, the largest VmRSS sampled every millisecond by a thread), ``held`` VmRSS
while the answer is held after reading all of it, ``after`` VmRSS once the answer is dropped and
the pools are trimmed. The worker's figures are sampled the same way, relative to its VmRSS before
the call. A memcpy of the same sizes is printed for scale: one copy each way is the floor for
bytes (a ``bytes`` owns its memory), and twice the memcpy rate is the ceiling for the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import threading
import time
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vastnb  # noqa: E402
from vastnb.wire import SHM_POOL_BYTES, segment_files  # noqa: E402

MiB = 1 << 20
KINDS = ("bytes", "numpy", "torch")


def make(kind: str, size: int) -> Any:
    if kind == "bytes":
        return os.urandom(size) if size <= 64 * MiB else b"\x01" * size
    if kind == "numpy":
        return np.random.default_rng(size).random(size // 8)
    return torch.randn(size // 4)


def same(kind: str, a: Any, b: Any) -> bool:
    if kind == "bytes":
        return bool(a == b)
    if kind == "numpy":
        return bool(np.array_equal(a, b))
    return bool(torch.equal(a, b))


# ----------------------------------------------------------------------------- /proc figures


def _status(pid: int | str, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _mapped_segments(pid: int | str) -> int:
    total = 0
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            if "/dev/shm/vastnb-" in line:
                lo, hi = line.split()[0].split("-")
                total += int(hi, 16) - int(lo, 16)
    return total


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Sampler:
    """The largest VmRSS of ``pid`` seen by a thread sampling every millisecond."""

    def __init__(self, pid: int | str) -> None:
        self.pid = pid
        self.peak = _status(pid, "VmRSS")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _status(self.pid, "VmRSS"))
            time.sleep(0.001)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, _status(self.pid, "VmRSS"))


# ----------------------------------------------------------------------------- measurements


def _memcpy_mbs(size: int) -> float:
    src = np.ones(size, np.uint8)
    dst = np.empty_like(src)
    times = []
    for _ in range(9):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    return size / statistics.median(times) / 1e6


async def _rate(echo: Any, value: Any, size: int, runs: int) -> float:
    for _ in range(2):
        out = await echo(value)
        del out
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = await echo(value)
        times.append(time.perf_counter() - t0)
        del out
    return size / statistics.median(times) / 1e6


def call(echo: Any, value: Any) -> Any:
    """``await echo(value)`` from a fresh event loop. Not ``asyncio.run(echo(value))``: Python 3.11's
    ``asyncio.run`` formats its task (with the result's full repr) on the way out, 20 s for 600 MB of bytes."""
    box: list[Any] = []

    async def one() -> None:
        box.append(await echo(value))

    asyncio.run(one())
    return box.pop()


def throughput(echo: Any, sizes: list[int], repeats: int, runs: int) -> dict[tuple[str, int], float]:
    values = {(k, s): make(k, s) for k in KINDS for s in sizes}
    for (kind, size), value in values.items():  # the answer is right
        assert same(kind, call(echo, value), value), (kind, size)
    rates: dict[tuple[str, int], list[float]] = {key: [] for key in values}
    for rep in range(repeats):
        for key, value in values.items():
            rates[key].append(asyncio.run(_rate(echo, value, key[1], runs)))
        print(f"throughput repeat {rep + 1}/{repeats} done", file=sys.stderr)
    return {key: statistics.median(r) for key, r in rates.items()}


def _settle(pids: list[int], timeout: float = 10.0) -> None:
    """Wait until the segments above the pools' cap are unmapped in every process (the answer was dropped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_mapped_segments(p) <= 2 * SHM_POOL_BYTES for p in pids):
            break
        time.sleep(0.01)
    time.sleep(0.2)


def memory(echo: Any, worker_pid: int, kind: str, size: int) -> dict[str, float]:
    value = make(kind, size)
    gc.collect()
    _settle([os.getpid(), worker_pid])
    base = _status("self", "VmRSS")
    wbase = _status(worker_pid, "VmRSS")
    hwm = _reset_hwm()
    sampler = None if hwm else Sampler("self")
    wsampler = Sampler(worker_pid)
    out = call(echo, value)
    peak = _status("self", "VmHWM") if sampler is None else sampler.stop()
    wpeak = wsampler.stop()
    assert same(kind, out, value)  # reads all of the answer
    held = _status("self", "VmRSS")
    del out
    gc.collect()
    _settle([os.getpid(), worker_pid])
    after = _status("self", "VmRSS")
    wafter = _status(worker_pid, "VmRSS")
    return {"peak": (peak - base) / size, "held": (held - base) / size, "after": (after - base) / size,
            "wpeak": (wpeak - wbase) / size, "wafter": (wafter - wbase) / size, "hwm": float(hwm)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5, help="calls timed per size and kind in each repeat")
    parser.add_argument("--sizes", default="1,16,64", help="MiB, comma separated")
    parser.add_argument("--big-mib", type=int, default=600, help="the payload whose memory is measured")
    args = parser.parse_args()
    sizes = [int(s) * MiB for s in args.sizes.split(",")]

    app = vastnb.Deployment("bench-large")
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote()
    async def echo(value):
        return value

    app.ensure_ready(progress=False)
    (worker,) = app.snapshot().workers
    try:
        rates = throughput(echo, sizes, args.repeats, args.runs)
        mem = {kind: memory(echo, worker.pid, kind, args.big_mib * MiB) for kind in KINDS}
    finally:
        app.shutdown()
    gc.collect()
    left = segment_files([os.getpid(), worker.pid])

    print(f"\nLarge payloads, local deployment with one worker, {os.cpu_count()} cores; "
          f"MB/s = payload / round trip, median of {args.repeats} repeats x {args.runs} calls")
    print("size".ljust(10) + "".join(k.rjust(12) for k in KINDS) + "memcpy".rjust(12))
    for size in sizes:
        row = f"{size // MiB} MiB".ljust(10) + "".join(f"{rates[(k, size)]:,.0f}".rjust(12) for k in KINDS)
        print(row + f"{_memcpy_mbs(size):,.0f}".rjust(12))
    how = "VmHWM" if all(m["hwm"] for m in mem.values()) else "sampled VmRSS"
    print(f"\nMemory of a {args.big_mib} MiB round trip, in payloads (1.00 = {args.big_mib} MiB) over the base")
    print(f"notebook: base = VmRSS with the input allocated; peak = {how} during the call; held = VmRSS holding the")
    print("answer (all read); after = VmRSS once the answer is dropped. worker: sampled VmRSS over its VmRSS before.")
    cols = [("peak", "notebook peak"), ("held", "held"), ("after", "after"), ("wpeak", "worker peak"),
            ("wafter", "worker after")]
    print("kind".ljust(10) + "".join(title.rjust(15) for _, title in cols))
    for kind in KINDS:
        print(kind.ljust(10) + "".join(f"{mem[kind][key]:.2f}".rjust(15) for key, _ in cols))
    print(f"\nvastnb files in /dev/shm after shutdown: {len(left)}")


if __name__ == "__main__":
    main()
