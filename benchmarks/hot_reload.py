"""Hot reload: from re-running an edited cell to the new code answering, vastnb vs the official SDK's redeploy.

    .venv/bin/python benchmarks/hot_reload.py [--runs 15] [--workers 4] [--official-runs 3]

vastnb: an IPython shell in this process (the same machinery as a Jupyter
kernel) with ``%load_ext vastnb``, a deployment with 4 warm workers, a context
and a ``%%vast_remote`` cell. Each run edits the cell (a new version number)
and times, from ``shell.run_cell(edited cell)``:

* *cell returns*: the cell has finished; ``%%vast_remote`` returns only once
  every worker has the new code, so this is "in effect everywhere";
* *answers on all*: calls (in bursts of 2 per worker) until every one of the
  workers has answered with the new version.

Official SDK: the official Vast worker runtime (``pip install vastai``) on
loopback, through ``tests.official_worker.OfficialWorker``. Changing a
function there is a redeploy: a new deployment module, the old worker stopped,
a new worker started from it, entering its context and running its benchmark
before it serves; timed until the edited function answers. One worker is
restarted (on Vast each worker restarts on its own machine, in parallel), and
image pull, upload and download are not counted, so this is a lower bound.

The table shows medians and how many times faster vastnb is.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GOAL_MS = 50.0

CONTEXT_CELL = '''\
%%vast_context
class Model:
    async def __aenter__(self):
        self.weights = list(range(1000))  # stands in for loading a model
        return self

    async def __aexit__(self, *exc):
        pass
'''

REMOTE_CELL = '''\
%%vast_remote --benchmark-dataset '[{{"x": 2}}]'
import os


async def predict(x):
    return x * len(app.get_context(Model).weights)


async def answer():
    return os.environ["VASTNB_WORKER_ID"], {version}
'''

OFFICIAL_MODULE = '''\
from vastai import Deployment

app = Deployment(name="hotreload")


@app.context()
class Model:
    async def __aenter__(self):
        self.weights = list(range(1000))
        return self

    async def __aexit__(self, *exc):
        pass


@app.remote(benchmark_dataset=[{{"x": 2}}])
async def predict(x):
    return x * len(app.get_context(Model).weights)


@app.remote()
async def answer():
    return {version}
'''


# ----------------------------------------------------------------------------- vastnb


def measure_vastnb(runs: int, workers: int) -> dict[str, list[float]]:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "vastnb")
    shell.run_line_magic("vast_deployment", "hot-reload-bench")
    app = shell.user_ns["app"]
    app.configure_autoscaling(cold_workers=workers, max_workers=workers)
    _ok(shell.run_cell(CONTEXT_CELL))
    _ok(shell.run_cell(REMOTE_CELL.format(version=0)))
    app.ensure_ready(progress=False)
    deadline = time.monotonic() + 120
    while sum(w.state.serving for w in app.snapshot().workers) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {app.snapshot()} workers became ready")
        time.sleep(0.05)
    pids = sorted(w.pid for w in app.snapshot().workers)
    _answers_on_all(shell, 0, workers)  # warm every path once
    out: dict[str, list[float]] = {"cell": [], "all": []}
    try:
        for version in range(1, runs + 1):
            t0 = time.perf_counter()
            _ok(shell.run_cell(REMOTE_CELL.format(version=version)))
            t_cell = time.perf_counter()
            _answers_on_all(shell, version, workers)
            t_all = time.perf_counter()
            out["cell"].append((t_cell - t0) * 1e3)
            out["all"].append((t_all - t0) * 1e3)
        if sorted(w.pid for w in app.snapshot().workers) != pids:
            raise RuntimeError("a worker was restarted during the runs")
    finally:
        app.shutdown()
    return out


def _ok(result: Any) -> None:
    if not result.success:
        raise RuntimeError(f"cell failed: {result.error_before_exec or result.error_in_exec!r}")


def _answers_on_all(shell: Any, version: int, workers: int) -> None:
    answer = shell.user_ns["answer"]
    seen: set[str] = set()
    for _ in range(200):
        for worker, v in answer.map([()] * (2 * workers), progress=False):
            if v != version:
                raise RuntimeError(f"worker {worker} answered with version {v}, expected {version}")
            seen.add(worker)
        if len(seen) == workers:
            return
    raise RuntimeError(f"only {sorted(seen)} answered")


# ----------------------------------------------------------------------------- official SDK


def measure_official(runs: int) -> list[float] | str:
    try:
        from tests.official_worker import OfficialWorker
    except ImportError as exc:
        return f"not measured: tests.official_worker is not available ({exc})"
    times = []
    worker = OfficialWorker(OFFICIAL_MODULE.format(version=0), "hotreload")
    worker.start()
    try:
        for version in range(1, runs + 1):
            t0 = time.perf_counter()
            worker.stop()
            worker = OfficialWorker(OFFICIAL_MODULE.format(version=version), "hotreload")
            worker.start()
            got = _official_call(worker, "answer")
            times.append((time.perf_counter() - t0) * 1e3)
            if got != version:
                raise RuntimeError(f"the official worker answered {got!r}, expected {version}")
    finally:
        worker.stop()
    return times


def _official_call(worker: Any, name: str, **kwargs: Any) -> Any:
    if hasattr(worker, "call"):
        return worker.call(name, **kwargs)
    import httpx
    from vastai.serverless.remote import serialization

    body = {
        "auth_data": {"cost": "100", "endpoint": "x", "reqnum": 1, "request_idx": 1, "signature": "", "url": ""},
        "payload": {"kwargs": {k: serialization.serialize(v, "deployment") for k, v in kwargs.items()}},
    }
    r = httpx.post(f"{worker.url}/remote/{name}", json=body, timeout=120)
    r.raise_for_status()
    return serialization.deserialize(r.json()["result"]["ok"], "deployment", {})


# ----------------------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="edits of the vastnb cell (default 15)")
    parser.add_argument("--workers", type=int, default=4, help="warm vastnb workers (default 4)")
    parser.add_argument("--official-runs", type=int, default=3, help="official redeploys (default 3)")
    args = parser.parse_args()

    vast = measure_vastnb(args.runs, args.workers)
    official = measure_official(args.official_runs)
    cell, every = statistics.median(vast["cell"]), statistics.median(vast["all"])
    official_ms = statistics.median(official) if isinstance(official, list) else None

    rows = [
        (f"vastnb: edited %%vast_remote cell returns (code on all {args.workers} workers)", cell, len(vast["cell"])),
        (f"vastnb: new code answering on all {args.workers} workers", every, len(vast["all"])),
    ]
    if official_ms is not None:
        rows.append(("official SDK: redeploy, 1 worker restarted until it answers", official_ms, len(official)))
    width = max(len(r[0]) for r in rows)
    print(f"\nHot reload on {os.cpu_count()} cores, loopback; medians")
    print(f"{'path'.ljust(width)}  {'median':>11}  {'runs':>4}  {'vs official':>11}")
    for label, ms, n in rows:
        ratio = f"{official_ms / ms:,.0f}x" if official_ms is not None and not label.startswith("official") else ""
        print(f"{label.ljust(width)}  {_fmt(ms):>11}  {n:>4}  {ratio:>11}")
    print(f"(vastnb runs: min {_fmt(min(vast['all']))}, max {_fmt(max(vast['all']))} to all workers; "
          f"goal <= {GOAL_MS:g} ms: {'met' if every <= GOAL_MS else 'NOT met'})")
    if not isinstance(official, list):
        print(f"official SDK: {official}")


def _fmt(ms: float) -> str:
    return f"{ms:,.1f} ms" if ms < 10_000 else f"{ms / 1e3:,.1f} s"


if __name__ == "__main__":
    main()
