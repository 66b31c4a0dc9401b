"""Compare candidate autoscaling settings on a few load traces, with the simulator (no workers started).

    .venv/bin/python benchmarks/simulate_settings.py [--perf 1000] [--cold-start 60]

Prints one table per trace: peak workers, worker-seconds (the cost proxy), the longest
queue wait, how long capacity took to cover a load step, the number of decisions, and
the work left queued at the end.
"""

from __future__ import annotations

import argparse
import time

from vastnb.autoscaling import AutoscalingSettings, LoadTrace, compare

CANDIDATES: dict[str, AutoscalingSettings] = {
    "vast defaults": AutoscalingSettings(),
    "lean (cold 1, mult 1)": AutoscalingSettings(cold_workers=1, cold_mult=1.0),
    "lean + queue 5 s": AutoscalingSettings(cold_workers=1, cold_mult=1.0, target_queue_time=5),
    "scale to zero": AutoscalingSettings(cold_workers=0, min_load=0, cold_mult=1.0, inactivity_timeout=120),
    "headroom (util 0.6)": AutoscalingSettings(cold_workers=1, cold_mult=1.0, target_util=0.6),
}


def traces() -> dict[str, LoadTrace]:
    """Each starts with two quiet minutes, so every candidate's idle floor is ready when load comes."""
    calls = [(t * 0.8 + (t % 7) * 0.05, 100.0 + 40 * (t % 3)) for t in range(900)]
    quiet = LoadTrace.idle(120)
    return {
        "step": quiet.then(LoadTrace.step(5, 40, at_s=120, duration_s=900)),
        "ramp": quiet.then(LoadTrace.ramp(0, 60, start_s=60, end_s=600, duration_s=900)),
        "burst": quiet.then(LoadTrace.burst(3, 80, at_s=300, burst_s=60, duration_s=900)),
        "busy then idle": quiet.then(LoadTrace.from_rps([20] * 300)).then(LoadTrace.idle(900)),
        "recorded calls": quiet.then(LoadTrace.from_calls(calls)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--perf", type=float, default=1000.0, help="perf score per worker (workload units/s)")
    parser.add_argument("--cold-start", type=float, default=60.0, help="seconds from start to ready")
    args = parser.parse_args()
    for trace in traces().values():
        started = time.perf_counter()
        table = compare(trace, CANDIDATES, perf_score=args.perf, cold_start_s=args.cold_start)
        took = time.perf_counter() - started
        print(table.to_text())
        print(f"({len(CANDIDATES)} candidates x {trace.duration_s / 60:.0f} simulated minutes in {took:.2f} s)", end="\n\n")


if __name__ == "__main__":
    main()
