"""Soak: rounds of many awaited calls at high concurrency, with the notebook's memory after each round.

    .venv/bin/python benchmarks/soak.py [--rounds 5] [--calls 10000] [--concurrency 200] [--payload 0] [--workers 1]

Each round awaits ``--calls`` calls of an echo function with at most ``--concurrency`` in flight
(``await fn(x)`` under an asyncio semaphore, as a notebook would gather them) and prints calls/s,
the round-trip p50/p99, the notebook's RSS, the shared memory mapped by the notebook and its
workers, the segment files left in /dev/shm, and how many calls failed. A leak shows as a trend
down the RSS or shared-memory columns; a false queue refusal or a lost worker as failures.
``--payload N`` sends N bytes per call (≥ 256 KiB goes through shared memory).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vastnb  # noqa: E402
from vastnb.backends.local import LocalBackend  # noqa: E402
from vastnb.wire import segment_files  # noqa: E402

MiB = 1 << 20


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def mapped_shm(pid: int) -> int:
    total = 0
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                if "/dev/shm/vastnb-" in line:
                    lo, hi = line.split()[0].split("-")
                    total += int(hi, 16) - int(lo, 16)
    except OSError:
        pass
    return total


async def one_round(echo: vastnb.RemoteFunction, calls: int, concurrency: int, payload: bytes) -> tuple[float, list[float], int]:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    failures = 0

    async def one() -> None:
        nonlocal failures
        async with gate:
            t0 = time.perf_counter()
            try:
                await echo(payload)
            except Exception:  # noqa: BLE001 - counted: a soak reports failures, it does not stop at one
                failures += 1
                return
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    return time.perf_counter() - t0, latencies, failures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--payload", type=int, default=0, help="bytes per call (default: a tiny value)")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()

    app = vastnb.Deployment("soak", backend=LocalBackend(max_cold_workers=args.workers))
    app.configure_autoscaling(cold_workers=args.workers, max_workers=args.workers)

    @app.remote()  # no benchmark: queue estimates come from observed durations only
    async def echo(value):
        return value

    app.ensure_ready(progress=False)
    payload = os.urandom(args.payload) if args.payload else b"x"
    pids = [w.pid for w in app.snapshot().workers if w.pid]
    print(f"soak: {args.rounds} rounds × {args.calls:,} calls at {args.concurrency} concurrent, "
          f"payload {len(payload):,} B, {len(pids)} worker(s)")
    print(f"| round | calls/s | p50 ms | p99 ms | failed | notebook RSS MiB | shm mapped MiB (notebook + workers) "
          f"| shm files |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    try:
        for r in range(1, args.rounds + 1):
            wall, lat, failed = asyncio.run(one_round(echo, args.calls, args.concurrency, payload))
            gc.collect()
            lat.sort()
            p50 = statistics.median(lat) * 1e3 if lat else float("nan")
            p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1e3 if lat else float("nan")
            pids = [w.pid for w in app.snapshot().workers if w.pid and w.state.alive]
            shm = mapped_shm(os.getpid()) + sum(mapped_shm(p) for p in pids)
            files = len(segment_files([os.getpid(), *pids]))
            print(f"| {r} | {args.calls / wall:,.0f} | {p50:.2f} | {p99:.2f} | {failed} | {rss(os.getpid()) / MiB:,.0f} "
                  f"| {shm / MiB:,.0f} | {files} |", flush=True)
    finally:
        app.shutdown()


if __name__ == "__main__":
    main()
