"""Call overhead, side by side in one run: vastnb's local runtime, a bare loopback HTTP echo, the official worker,
and with --peers Ray and Dask.

    .venv/bin/python benchmarks/call_overhead.py [--repeats 3] [--quick] [--peers]

Each system runs one worker process on 127.0.0.1 with an echo function. We
measure the tiny-call round trip (p50/p99 over sequential calls) awaited and
blocking, throughput at 10 concurrent awaited calls, round trips of 1 MiB /
16 MiB of bytes and of a float32 torch tensor, and the rate of one map over
100,000 tiny inputs. "MB/s" is payload size ÷ round-trip time (the payload goes
there and back). Systems are interleaved within each repeat, so machine noise
hits them alike; the median of the repeats is printed, with each figure's ratio
to the official worker. A system that has no way to do something shows "n/a".

The official worker is the real runtime from `pip install vastai`, started on
loopback as Vast's workers start (UNSECURED, no cloud). Its JSON wire carries
bytes as base64 and cannot carry tensors: a tensor goes as its raw bytes and is
rebuilt on arrival (the best a user of the official SDK can do). Neither it nor
the bare echo has a map: their map row is "n/a". Their blocking calls are the
same request through a blocking httpx client.

--peers adds Ray and Dask where they are installed (`pip install -e ".[bench]"`),
each as one worker process on this machine, used the way their docs show:
Ray through one actor (`ray.init(num_cpus=1)`, `await actor.echo.remote(x)`,
`ray.get(...)` to block, `ray.get([actor.echo.remote(x) for x in inputs])` to
map); Dask through `LocalCluster(n_workers=1, threads_per_worker=1,
processes=True)` (`await client.submit(echo, x, pure=False)` on an async
client, `.result()` on a blocking one, `client.gather(client.map(echo, inputs,
pure=False))` to map). Large values go as plain arguments, as with the others.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import logging
import os
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

import httpx
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vastnb  # noqa: E402

MiB = 1 << 20
T = TypeVar("T")
OFFICIAL = "official vastai worker"


class LoopThread:
    """One event loop for the whole run, in its own thread.

    Async clients (Dask's) stay bound to it across repeats, and the blocking calls
    measured from the main thread never run inside it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bench-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


# ----------------------------------------------------------------------------- systems
# Each system has async bytes_call / tensor_call; blocking_call and map_call where it has them.


class VastnbSystem:
    name = "vastnb local"

    def __init__(self, loop: LoopThread) -> None:
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

    def blocking_call(self, data: bytes) -> bytes:
        return self.echo.call(data)

    def map_call(self, inputs: list[bytes]) -> list[bytes]:
        return self.echo.map(inputs, progress=False)

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


class HttpSystem:
    """An HTTP echo: one async client (made in the bench loop) and one blocking client."""

    url: str
    timeout = 120.0
    aclient: httpx.AsyncClient | None = None
    client: httpx.Client | None = None

    def _post_args(self, data: bytes) -> dict[str, Any]:
        return {"content": data}

    def _decode(self, r: httpx.Response) -> Any:
        return r.content

    async def _acall(self, data: bytes) -> Any:
        if self.aclient is None:
            self.aclient = httpx.AsyncClient(timeout=self.timeout, limits=httpx.Limits(max_connections=20))
        r = await self.aclient.post(self.url, **self._post_args(data))
        r.raise_for_status()
        return self._decode(r)

    def blocking_call(self, data: bytes) -> bytes:
        if self.client is None:
            self.client = httpx.Client(timeout=self.timeout)
        r = self.client.post(self.url, **self._post_args(data))
        r.raise_for_status()
        return self._decode(r)

    async def bytes_call(self, data: bytes) -> bytes:
        return await self._acall(data)

    async def tensor_call(self, t: torch.Tensor) -> torch.Tensor:
        raw = await self._acall(t.numpy().tobytes())
        return torch.frombuffer(bytearray(raw), dtype=t.dtype).reshape(t.shape)

    async def aclose(self) -> None:
        if self.aclient is not None:
            await self.aclient.aclose()
        if self.client is not None:
            self.client.close()


class BareHttpSystem(HttpSystem):
    name = "bare aiohttp echo"

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
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

    def close(self) -> None:
        self.loop.run(self.aclose())
        self.proc.terminate()
        self.proc.wait()


_OFFICIAL_MODULE = textwrap.dedent('''
    from vastai import Deployment
    app = Deployment(name="echo")

    @app.remote(benchmark_dataset=[{"value": 1}])
    async def echo(value):
        return value
''')


class OfficialSystem(HttpSystem):
    name = OFFICIAL

    def __init__(self, loop: LoopThread) -> None:
        from vastai.serverless.remote import serialization

        from tests.official_worker import OfficialWorker

        self.loop = loop
        self.ser = serialization
        self.worker = OfficialWorker(_OFFICIAL_MODULE, "echo")
        self.worker.start()
        self.url = f"{self.worker.url}/remote/echo"
        self.req = 0

    def _post_args(self, data: bytes) -> dict[str, Any]:
        self.req += 1
        return {"json": {
            "auth_data": {"cost": "100", "endpoint": "x", "reqnum": self.req, "request_idx": self.req, "signature": "", "url": ""},
            "payload": {"kwargs": {"value": self.ser.serialize(data, "deployment")}},
        }}

    def _decode(self, r: httpx.Response) -> Any:
        return self.ser.deserialize(r.json()["result"]["ok"], "deployment", {})

    def close(self) -> None:
        self.loop.run(self.aclose())
        self.worker.stop()


class Echo:
    """Ray's worker: one actor is one worker process."""

    def echo(self, value: Any) -> Any:
        return value


def echo(value: Any) -> Any:
    """Dask's worker function."""
    return value


class RaySystem:
    name = "Ray actor"

    def __init__(self, loop: LoopThread) -> None:
        import ray

        self.ray = ray
        ray.init(num_cpus=1, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        remote_echo: Any = ray.remote(Echo)  # ray's stubs lose the class
        self.actor = remote_echo.remote()
        ray.get(self.actor.echo.remote(b"x"))

    async def bytes_call(self, data: bytes) -> bytes:
        return await self.actor.echo.remote(data)

    async def tensor_call(self, t: torch.Tensor) -> torch.Tensor:
        return await self.actor.echo.remote(t)

    def blocking_call(self, data: bytes) -> bytes:
        return self.ray.get(self.actor.echo.remote(data))

    def map_call(self, inputs: list[bytes]) -> list[bytes]:
        return self.ray.get([self.actor.echo.remote(x) for x in inputs])

    def close(self) -> None:
        self.ray.shutdown()


class DaskSystem:
    name = "Dask LocalCluster"
    map_cap = 10_000  # at ~200 tasks/s on 2 cores, 100,000 would take ~8 minutes a repeat

    def __init__(self, loop: LoopThread) -> None:
        from distributed import Client, LocalCluster

        # a 16 MiB argument is "a large graph" to Dask; we send it as it is, like the others
        warnings.filterwarnings("ignore", message="Sending large graph")
        self.loop = loop
        self.cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None)
        self.client = Client(self.cluster)

        async def connect() -> Any:
            return await Client(self.cluster.scheduler_address, asynchronous=True)

        self.aclient = loop.run(connect())

    async def bytes_call(self, data: bytes) -> bytes:
        return await self.aclient.submit(echo, data, pure=False)

    async def tensor_call(self, t: torch.Tensor) -> torch.Tensor:
        return await self.aclient.submit(echo, t, pure=False)

    def blocking_call(self, data: bytes) -> bytes:
        return self.client.submit(echo, data, pure=False).result()

    def map_call(self, inputs: list[bytes]) -> list[bytes]:
        return self.client.gather(self.client.map(echo, inputs, pure=False))

    def close(self) -> None:
        async def disconnect() -> None:
            await self.aclient.close()

        self.loop.run(disconnect())
        self.client.close()
        self.cluster.close()


PEERS = (("Ray", "ray", RaySystem), ("Dask", "distributed", DaskSystem))


def start_peers(loop: LoopThread) -> list[Any]:
    peers = []
    for label, module, cls in PEERS:
        if importlib.util.find_spec(module) is None:
            print(f"--peers: {label} is not installed (no `{module}` module), so it has no column. "
                  f'Install the peers with `pip install -e ".[bench]"`.', file=sys.stderr)
        else:
            peers.append(cls(loop))
    return peers


# ----------------------------------------------------------------------------- measurements

Metrics = dict[str, "float | None"]


def _percentiles(times: list[float]) -> tuple[float, float]:
    times.sort()
    return times[len(times) // 2] * 1e3, times[int(len(times) * 0.99)] * 1e3


async def _tiny_latency(call: Callable[[bytes], Awaitable[bytes]], n: int) -> tuple[float, float]:
    for _ in range(50):
        await call(b"x")
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call(b"x")
        times.append(time.perf_counter() - t0)
    return _percentiles(times)


def _blocking_latency(call: Callable[[bytes], bytes], n: int) -> tuple[float, float]:
    for _ in range(50):
        assert call(b"x") == b"x"
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call(b"x")
        times.append(time.perf_counter() - t0)
    return _percentiles(times)


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


async def measure_async(system: Any, quick: bool) -> Metrics:
    n = 300 if quick else 1000
    p50, p99 = await _tiny_latency(system.bytes_call, n)
    out: Metrics = {"tiny p50 ms, await": p50, "tiny p99 ms, await": p99}
    out["calls/s @10 concurrent"] = await _throughput(system.bytes_call, n)
    for size in (MiB, 16 * MiB):
        data = os.urandom(size)
        runs = 5 if size > MiB else 15
        out[f"{size // MiB} MiB bytes MB/s"] = await _round_trip(system.bytes_call, data, size, runs, data.__eq__)
        t = torch.randn(size // 4)
        out[f"{size // MiB} MiB tensor MB/s"] = await _round_trip(system.tensor_call, t, size, runs, functools.partial(torch.equal, t))
    return out


def measure_blocking(system: Any, quick: bool) -> Metrics:
    if not hasattr(system, "blocking_call"):
        return {"tiny p50 ms, blocking": None, "tiny p99 ms, blocking": None}
    p50, p99 = _blocking_latency(system.blocking_call, 300 if quick else 1000)
    return {"tiny p50 ms, blocking": p50, "tiny p99 ms, blocking": p99}


def map_rate(system: Any, n: int) -> float | None:
    """Calls per second of one blocking map over ``n`` tiny inputs (all queued at once)."""
    if not hasattr(system, "map_call"):
        return None
    inputs = [b"x"] * n
    t0 = time.perf_counter()
    out = system.map_call(inputs)
    rate = n / (time.perf_counter() - t0)
    assert out == inputs
    return rate


# ----------------------------------------------------------------------------- report


def _cell(v: float | None, ratio: float | None) -> str:
    if v is None:
        return "n/a"
    cell = f"{v:,.2f}" if v < 100 else f"{v:,.0f}"
    return f"{cell} ({ratio:.1f}x)" if ratio is not None else cell


def print_table(results: dict[str, list[Metrics]], map_label: str, repeats: int) -> None:
    names = list(results)
    metrics = sorted(results[names[0]][0], key=lambda m: not m.startswith("tiny"))  # awaited, then blocking latency
    med: dict[str, Metrics] = {}
    for name, runs in results.items():
        med[name] = {}
        for m in metrics:
            values = [r[m] for r in runs if r[m] is not None]
            med[name][m] = statistics.median(values) if values else None  # type: ignore[type-var]
    official = med[OFFICIAL]
    rows = [(map_label if m == "map" else m) for m in metrics]
    width = max(len(r) for r in rows) + 2
    col = max(22, *(len(n) + 2 for n in names))
    print(f"\nCall overhead on {os.cpu_count()} cores, loopback, one worker process each; median of {repeats} repeats")
    print("metric".ljust(width) + "".join(n.rjust(col) for n in names))
    for m, label in zip(metrics, rows):
        row = label.ljust(width)
        for n in names:
            v, o = med[n][m], official[m]
            ratio = None
            if n != OFFICIAL and v is not None and o is not None:
                ratio = o / v if "ms" in m else v / o
            row += _cell(v, ratio).rjust(col)
        print(row)
    print("(x = times better than the official worker; n/a = the system has no way to do it)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    parser.add_argument("--peers", action="store_true", help='add Ray and Dask columns (pip install -e ".[bench]")')
    args = parser.parse_args()
    map_n = 3_000 if args.quick else 100_000
    loop = LoopThread()
    systems: list[Any] = []
    try:
        systems += [VastnbSystem(loop), BareHttpSystem(loop), OfficialSystem(loop)]
        if args.peers:
            systems += start_peers(loop)
        results: dict[str, list[Metrics]] = {s.name: [] for s in systems}
        for rep in range(args.repeats):
            for system in systems:  # interleaved, so machine noise hits every system alike
                out = loop.run(measure_async(system, args.quick))
                out.update(measure_blocking(system, args.quick))
                out["map"] = map_rate(system, min(map_n, getattr(system, "map_cap", map_n)))
                results[system.name].append(out)
                print(f"repeat {rep + 1}/{args.repeats}: {system.name} done", file=sys.stderr)
    finally:
        for system in systems:
            system.close()
        loop.close()
    capped = [f"{s.name.split()[0]} {s.map_cap:,}" for s in systems if getattr(s, "map_cap", map_n) < map_n]
    map_label = f"map calls/s, {map_n:,} tiny inputs" + (f" ({', '.join(capped)})" if capped else "")
    print_table(results, map_label, args.repeats)


if __name__ == "__main__":
    main()
