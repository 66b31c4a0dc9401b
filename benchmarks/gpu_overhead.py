"""The cost of going through vastnb: one torch model, called in-process vs through the local runtime.

    .venv/bin/python benchmarks/gpu_overhead.py [--repeats 3] [--calls 200] [--device auto|cpu|cuda]

For batch sizes where one call takes about 1 ms, 5 ms and 50 ms of device time,
we measure calls per second of the same inference function (a) called directly
in this process and (b) through vastnb's local runtime with ``predict.map(...)``
on one worker pinned to the same device. The inputs are made on the device from
a seed, so the figure is the runtime's overhead and its pipelining (the next call
waits on the worker while the current one runs), not the cost of shipping
tensors. Goal: through vastnb >= 95% of in-process throughput at 5 ms calls.

On a machine without a GPU it runs the same comparison on the CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vastnb  # noqa: E402

HIDDEN = 1024
LAYERS = 6


def build_model(device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for _ in range(LAYERS):
        layers += [torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.GELU()]
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return torch.nn.Sequential(*layers).to(device=device, dtype=dtype).eval()


def run_batch(model: torch.nn.Module, seed: int, batch: int) -> float:
    p = next(model.parameters())
    g = torch.Generator(device=p.device).manual_seed(seed)
    x = torch.randn(batch, HIDDEN, generator=g, device=p.device, dtype=p.dtype)
    with torch.inference_mode():
        y = model(x)
    if p.device.type == "cuda":
        torch.cuda.synchronize()
    return float(y[0, 0])


def _time_ms(model: torch.nn.Module, batch: int, reps: int = 5) -> float:
    run_batch(model, 0, batch)
    t0 = time.perf_counter()
    for i in range(reps):
        run_batch(model, i, batch)
    return (time.perf_counter() - t0) / reps * 1e3


def calibrate(model: torch.nn.Module, target_ms: float) -> int:
    """The batch size whose call takes about ``target_ms`` (doubling, then linear interpolation)."""
    batch, ms = 1, _time_ms(model, 1)
    while ms < target_ms and batch < 1 << 20:
        batch *= 2
        ms = _time_ms(model, batch)
    for _ in range(3):  # time is close to linear in the batch once it is large enough
        batch = max(1, round(batch * target_ms / ms))
        ms = _time_ms(model, batch)
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cpu":
        torch.set_num_threads(1)  # one core for the model in each process, so both sides get the same

    local = build_model(device)
    targets = [1.0, 5.0, 50.0]
    batches = {t: calibrate(local, t) for t in targets}

    app = vastnb.Deployment("gpu-overhead")
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.context(device)
    class Model:
        def __init__(self, device: str) -> None:
            self.device = device

        async def __aenter__(self):
            if self.device == "cpu":
                torch.set_num_threads(1)
            self.model = build_model(self.device)
            return self

        async def __aexit__(self, *exc):
            del self.model

    @app.remote(benchmark_dataset=[{"seed": 0, "batch": batches[5.0]}], benchmark_runs=3)
    async def predict(seed: int, batch: int) -> float:
        return run_batch(app.get_context(Model).model, seed, batch)

    app.ensure_ready(progress=False)
    rows = []
    try:
        for target in targets:
            batch = batches[target]
            n = max(20, min(args.calls, int(args.calls * 5 / target)))
            inproc, through = [], []
            for _ in range(args.repeats):
                for i in range(3):
                    run_batch(local, i, batch)
                t0 = time.perf_counter()
                for i in range(n):
                    run_batch(local, i, batch)
                inproc.append(n / (time.perf_counter() - t0))
                predict.map([{"seed": i, "batch": batch} for i in range(3)], progress=False)
                t0 = time.perf_counter()
                predict.map([{"seed": i, "batch": batch} for i in range(n)], progress=False)
                through.append(n / (time.perf_counter() - t0))
            a, b = statistics.median(inproc), statistics.median(through)
            rows.append((target, batch, n, a, b, b / a))
        single = []
        for _ in range(50):
            t0 = time.perf_counter()
            predict.call(0, batches[1.0])
            single.append(time.perf_counter() - t0)
    finally:
        app.shutdown()
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({os.cpu_count()} cores, 1 thread per side)"
    print(f"\nIn-process vs through vastnb's local runtime on {name}, torch {torch.__version__}; median of {args.repeats}")
    print(f"{'call time':>10} {'batch':>7} {'calls':>6} {'in-process/s':>13} {'vastnb map/s':>13} {'ratio':>7}")
    for target, batch, n, a, b, r in rows:
        print(f"{target:>8.0f}ms {batch:>7} {n:>6} {a:>13.1f} {b:>13.1f} {r:>6.1%}")
    print(f"one 1 ms call at a time (predict.call), p50 round trip: {statistics.median(single) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
