"""Call overhead, side by side in one run: vastnb's local runtime, a bare loopback HTTP echo, the official worker.

    .venv/bin/python benchmarks/call_overhead.py [--repeats 3] [--quick]

Each system runs one worker process on 127.0.0.1 with an echo function. We
measure the tiny-call round trip (p50/p99 over sequential calls), throughput at
10 concurrent calls, and round trips of 1 MiB / 16 MiB of bytes and of a float32
torch tensor. "MB/s" is payload size ÷ round-trip time (the payload goes there
and back). The whole set is repeated and the median of the repeats is printed,
with each figure's ratio to the official worker.

The official worker is the real runtime from `pip install vastai`, started on
loopback as Vast's workers start (UNSECURED, no cloud). Its JSON wire carries
bytes as base64 and cannot carry tensors: a tensor goes as its raw bytes and is
rebuilt on arrival (the best a user of the official SDK can do).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import textwrap
import time
from typing import Any, Awaitable, Callable

import httpx
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vastnb  # noqa: E402

MiB = 1 << 20

# ----------------------------------------------------------------------------- systems


class VastnbSystem:
    name = "vastnb local"

    def __init__(self) -> None:
        self.app = vastnb.Deployment("bench-overhead")
        self.app.configure_autoscaling(cold_workers=1, max_workers=1)

        @self.app.remote(benchmark_dataset=[{"value": 1}])
        async def echo(value):
            return value

        self.echo = echo
        self.app.ensure_ready(progress=False)

    async def bytes_call(self, data: bytes) -> bytes:
        return await self.echo(data)

    async def tensor_call(self, t: torch.Tensor) -> torch.Tensor:
        return await self.echo(t)

    def close(self) -> None:
        self.app.shutdown()


_ECHO_SERVER = textwrap.dedent('''
    import sys
    from aiohttp import web
    async def echo(request):
        return web.Response(body=await request.read())
    app = web.Application(client_max_size=1 << 30)
    app.router.add_post("/echo", echo)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
''')


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BareHttpSystem:
    name = "bare aiohttp echo"

    def __init__(self) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen([sys.executable, "-c", _ECHO_SERVER, str(self.port)])
        self.url = f"http://127.0.0.1:{self.port}/echo"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.post(self.url, content=b"x")
                break
            except httpx.TransportError:
                time.sleep(0.05)
        self.client: httpx.AsyncClient | None = None

    async def _client(self) -> httpx.AsyncClient:
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=20))
        return self.client

    async def bytes_call(self, data: bytes) -> bytes:
        c = await self._client()
        return (await c.post(self.url, content=data)).content

    async def tensor_call(self, t: torch.Tensor) -> torch.Tensor:
        raw = await self.bytes_call(t.numpy().tobytes())
        return torch.frombuffer(bytearray(raw), dtype=t.dtype).reshape(t.shape)

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


_OFFICIAL_MODULE = textwrap.dedent('''
    from vastai import Deployment
    app = Deployment(name="echo")

    @app.remote(benchmark_dataset=[{"value": 1}])
    async def echo(value):
        return value
''')


class OfficialSystem:
    name = "official vastai worker"

    def __init__(self) -> None:
        from vastai.serverless.remote import serialization

        from tests.official_worker import OfficialWorker

        self.ser = serialization
        self.worker = OfficialWorker(_OFFICIAL_MODULE, "echo")
        self.worker.start()
        self.url = f"{self.worker.url}/remote/echo"
        self.client: httpx.AsyncClient | None = None
        self.req = 0

    async def _call(self, value: Any) -> Any:
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=20))
        self.req += 1
        body = {
            "auth_data": {"cost": "100", "endpoint": "x", "reqnum": self.req, "request_idx": self.req, "signature": "", "url": ""},
            "payload": {"kwargs": {"value": self.ser.serialize(value, "deployment")}},
        }
        r = await self.client.post(self.url, json=body)
        r.raise_for_status()
        return self.ser.deserialize(r.json()["result"]["ok"], "deployment", {})

    async def bytes_call(self, data: bytes) -> bytes:
        return await self._call(data)

    async def tensor_call(self, t: torch.Tensor) -> torch.Tensor:
        raw = await self._call(t.numpy().tobytes())
        return torch.frombuffer(bytearray(raw), dtype=t.dtype).reshape(t.shape)

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    def close(self) -> None:
        self.worker.stop()


# ----------------------------------------------------------------------------- measurements


async def _tiny_latency(call: Callable[[bytes], Awaitable[bytes]], n: int) -> tuple[float, float]:
    for _ in range(50):
        await call(b"x")
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call(b"x")
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * 1e3, times[int(len(times) * 0.99)] * 1e3


async def _throughput(call: Callable[[bytes], Awaitable[bytes]], n: int, concurrency: int = 10) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            await call(b"x")

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - t0)


async def _round_trip(call: Callable[[Any], Awaitable[Any]], value: Any, size: int, runs: int, check: Callable[[Any], bool]) -> float:
    assert check(await call(value))  # warm up, and the answer is right
    assert check(await call(value))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = await call(value)
        times.append(time.perf_counter() - t0)
        del out
    return size / statistics.median(times) / 1e6


async def measure(system: Any, quick: bool) -> dict[str, float]:
    n = 300 if quick else 1000
    p50, p99 = await _tiny_latency(system.bytes_call, n)
    out = {"tiny p50 ms": p50, "tiny p99 ms": p99, "calls/s @10": await _throughput(system.bytes_call, n)}
    for size in (MiB, 16 * MiB):
        data = os.urandom(size)
        runs = 5 if size > MiB else 15
        out[f"{size // MiB} MiB bytes MB/s"] = await _round_trip(system.bytes_call, data, size, runs, lambda r, d=data: r == d)
        t = torch.randn(size // 4)
        out[f"{size // MiB} MiB tensor MB/s"] = await _round_trip(system.tensor_call, t, size, runs, lambda r, t=t: torch.equal(r, t))
    if hasattr(system, "aclose"):
        await system.aclose()
    return out


def _map_rate(system: "VastnbSystem", n: int) -> float:
    """Calls per second of one blocking ``fn.map`` over ``n`` tiny inputs (all queued at once)."""
    inputs = [{"value": b"x"}] * n
    t0 = time.perf_counter()
    out = system.echo.map(inputs, progress=False)
    rate = n / (time.perf_counter() - t0)
    assert out == [b"x"] * n
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    args = parser.parse_args()
    systems = [VastnbSystem(), BareHttpSystem(), OfficialSystem()]
    results: dict[str, list[dict[str, float]]] = {s.name: [] for s in systems}
    map_rates: list[float] = []
    try:
        for rep in range(args.repeats):
            for system in systems:  # interleaved, so machine noise hits every system alike
                results[system.name].append(asyncio.run(measure(system, args.quick)))
            map_rates.append(_map_rate(systems[0], 300 if args.quick else 3000))
            print(f"repeat {rep + 1}/{args.repeats} done", file=sys.stderr)
    finally:
        for system in systems:
            system.close()
    metrics = list(next(iter(results.values()))[0])
    med = {name: {m: statistics.median(r[m] for r in runs) for m in metrics} for name, runs in results.items()}
    official = med["official vastai worker"]
    names = [s.name for s in systems]
    width = max(len(m) for m in metrics) + 2
    print(f"\nCall overhead on {os.cpu_count()} cores, loopback, one worker each; median of {args.repeats} repeats")
    print("metric".ljust(width) + "".join(n.rjust(24) for n in names))
    for m in metrics:
        row = m.ljust(width)
        for n in names:
            v = med[n][m]
            lower_is_better = "ms" in m
            ratio = official[m] / v if lower_is_better else v / official[m]
            cell = f"{v:,.2f}" if v < 100 else f"{v:,.0f}"
            row += (f"{cell} ({ratio:.1f}x)" if n != "official vastai worker" else cell).rjust(24)
        print(row)
    print("(x = times better than the official worker)")
    print(f"vastnb fn.map of {300 if args.quick else 3000:,} tiny calls on its one worker: "
          f"{statistics.median(map_rates):,.0f} calls/s")


if __name__ == "__main__":
    main()
