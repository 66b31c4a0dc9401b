"""A step load against the local runtime, beside the simulator's prediction for the same trace.

    .venv/bin/python benchmarks/autoscaling.py [--before 5] [--after 50] [--at 10] [--duration 40]

One deployment whose remote function takes 50 ms (an ``asyncio.sleep``, so workers
are not limited by this machine's cores): perf score ≈ 2,000 workload units/s per
worker. The load steps from ``--before`` to ``--after`` requests per second at
``--at`` seconds. We print the real timeline (workers by state, load, capacity,
target, each second), the time from the step until capacity covered the load, and
what ``app.simulate(...)`` predicted for the same trace with the measured perf
score and cold-start time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vastnb  # noqa: E402
from vastnb.autoscaling import LoadTrace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=float, default=5.0)
    parser.add_argument("--after", type=float, default=50.0)
    parser.add_argument("--at", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=40.0)
    parser.add_argument("--max-workers", type=int, default=4)
    args = parser.parse_args()

    app = vastnb.Deployment("bench-autoscaling")
    app.configure_autoscaling(cold_workers=1, max_workers=args.max_workers, target_util=0.8, cold_mult=1)

    @app.remote(benchmark_dataset=[{"s": 0.05}], benchmark_runs=3)
    async def work(s):
        await asyncio.sleep(s)

    app.ensure_ready(progress=False)
    perf = app.snapshot().workers[0].perf_score or 0.0
    cold = sum(s for _, s in app.snapshot().workers[0].phases)

    samples: list[tuple[float, dict[str, int], float, float, int]] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while not stop.is_set():
            snap = app.snapshot()
            counts: dict[str, int] = {}
            for w in snap.workers:
                counts[w.state.value] = counts.get(w.state.value, 0) + 1
            samples.append((time.monotonic() - t0, counts, snap.autoscaler.load, snap.autoscaler.capacity, snap.autoscaler.target_workers))
            stop.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    futures = []
    while (now := time.monotonic() - t0) < args.duration:
        rate = args.before if now < args.at else args.after
        futures.append(work.submit(0.05))
        time.sleep(1.0 / rate)
    for f in futures:
        f.result(120)
    stop.set()
    sampler.join()

    trace = LoadTrace.step(before_rps=args.before, after_rps=args.after, at_s=args.at, duration_s=args.duration)
    predicted = app.simulate(trace, perf_score=perf, cold_start_s=cold)
    app.shutdown()

    need = args.after * 100
    real_ttc = next((t - args.at for t, _c, _l, cap, _tg in samples if t >= args.at and cap >= need), None)
    sim_ttc = predicted.time_to_capacity(args.at)
    print(f"\nStep {args.before:g} → {args.after:g} requests/s at {args.at:g} s; perf score {perf:,.0f}/s per worker; "
          f"cold start {cold:.2f} s; max_workers {args.max_workers}")
    print(f"{'t (s)':>6} | {'real: workers by state':<38} {'load/s':>8} {'capacity/s':>11} {'target':>6} | "
          f"{'simulated workers':<24} {'capacity/s':>10}")
    steps = {round(s.time): s for s in predicted.timeline}
    for t, counts, load, cap, target in samples:
        sim = steps.get(round(t))
        sim_text = ", ".join(f"{k} {v}" for k, v in sorted(sim.workers.items()) if v) if sim else ""
        sim_cap = f"{sim.capacity:,.0f}" if sim else ""
        real = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        print(f"{t:>6.1f} | {real:<38} {load:>8,.0f} {cap:>11,.0f} {target:>6} | {sim_text:<24} {sim_cap:>10}")
    print(f"\ntime from the step to enough capacity ({need:,.0f}/s): real "
          + (f"{real_ttc:.1f} s" if real_ttc is not None else "never")
          + ", simulated " + (f"{sim_ttc:.1f} s" if sim_ttc is not None else "never"))


if __name__ == "__main__":
    main()
