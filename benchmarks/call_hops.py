"""Where a tiny call's time goes: a per-hop breakdown of the round trip, from vastnb's own timestamps.

    .venv/bin/python benchmarks/call_hops.py [--calls 2000] [--repeats 3]

Runs one local worker with an echo function and VASTNB_TRACE_CALLS=1, which makes the runtime and the worker
stamp each call (``time.perf_counter()``: one clock for the notebook and its worker processes). For
``fn.call(x)`` (blocking), ``await fn(x)`` and one ``fn.map`` of tiny inputs it prints the median time of each hop:

    prepare      the caller checks the arguments against the signature and pickles the call
    hand-over    the runtime's thread takes the call (0 on the direct path: the caller's thread sends it)
    dispatch     the runtime picks a worker and writes the frame
    to worker    the frame crosses the socket, the worker reads and unpickles it
    worker queue the worker schedules the call (a task, the serial lock)
    run          the function itself
    reply        the worker pickles and writes the result, the caller's side reads and unpickles it
    settle       the result resolves the call's future
    wake caller  the caller's thread (or event loop) gets the result

and the total as the caller measured it. Medians of ``--repeats`` runs of ``--calls`` calls each.

It also measures the machine's floor in the same run: a 40-byte round trip between two processes over a
blocking loopback socket (no Python framework at all). On a virtual machine whose idle CPUs sleep, waking a
process can cost hundreds of microseconds (this project's 2-core VM: ~20 µs with a neighbour busy, ~400 µs
idle), and every figure above carries that cost; compare them with the floor printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Any, Callable

os.environ["VASTNB_TRACE_CALLS"] = "1"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vastnb  # noqa: E402

HOPS = ("prepare", "hand-over", "dispatch", "to worker", "worker queue", "run", "reply", "settle", "wake caller")


def _hops(t0: float, s: dict[str, float], t1: float) -> dict[str, float]:
    marks = [t0, s["submitted"], s["queued"], s["sent"], s["received"], s["started"], s["finished"], s["read"],
             s["settled"], t1]
    out = {hop: (b - a) * 1e6 for hop, a, b in zip(HOPS, marks, marks[1:])}
    out["total"] = (t1 - t0) * 1e6
    return out


def _measure(app: Any, one: Callable[[], Any], calls: int) -> dict[str, float]:
    traces = app._backend.call_traces  # a developer's view of the runtime; benchmarks only
    rows = []
    for _ in range(calls):
        t0 = time.perf_counter()
        one()
        t1 = time.perf_counter()
        rows.append(_hops(t0, traces()[-1], t1))
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


_ECHO = """
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); print(s.getsockname()[1], flush=True)
c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while (d := c.recv(65536)):
    c.sendall(d)
"""


def machine_floor(calls: int) -> float:
    """Median µs of a 40-byte round trip to another process over a blocking loopback socket."""
    import socket
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", _ECHO], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        sock = socket.create_connection(("127.0.0.1", int(proc.stdout.readline())))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            sock.sendall(b"x" * 40)
            sock.recv(65536)
            times.append(time.perf_counter() - t0)
        sock.close()
        return statistics.median(times) * 1e6
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    app = vastnb.Deployment("bench-hops")
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote(benchmark_dataset=[{"value": 1}])
    async def echo(value):
        return value

    app.ensure_ready(progress=False)
    loop = asyncio.new_event_loop()
    columns: dict[str, list[dict[str, float]]] = {"fn.call(x)": [], "await fn(x)": [], "fn.map (per call)": []}
    floors = []
    try:
        for _ in range(200):
            echo.call(b"x")
        for _ in range(args.repeats):
            floors.append(machine_floor(args.calls))
            columns["fn.call(x)"].append(_measure(app, lambda: echo.call(b"x"), args.calls))
            columns["await fn(x)"].append(_measure(app, lambda: loop.run_until_complete(echo(b"x")), args.calls))
            n = max(args.calls, 1000)
            t0 = time.perf_counter()
            echo.map([b"x"] * n, progress=False)
            t1 = time.perf_counter()
            rows = [_hops(t0, s, t1) for s in app._backend.call_traces()[-n:]]
            med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            med["total"] = (t1 - t0) / n * 1e6  # the map's wall time per call
            columns["fn.map (per call)"].append(med)
    finally:
        loop.close()
        app.shutdown()
    print(f"\nTiny-call hops (µs, median of {args.repeats} runs of {args.calls} calls; one local worker, echo b'x')")
    print("hop".ljust(14) + "".join(name.rjust(20) for name in columns))
    for hop in (*HOPS, "total"):
        row = hop.ljust(14)
        for runs in columns.values():
            row += f"{statistics.median(r[hop] for r in runs):,.1f}".rjust(20)
        print(row)
    print("(a map's hops overlap across its calls: its hops show one call's latency, its total the wall time per call)")
    print(f"machine floor, same run: a blocking socket round trip between two processes takes "
          f"{statistics.median(floors):,.1f} µs")


if __name__ == "__main__":
    main()
