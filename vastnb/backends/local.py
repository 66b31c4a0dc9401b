"""The local backend: a :class:`~vastnb.runtime.local.LocalRuntime` built from a deployment's declarations.

GPU handling: this machine's NVIDIA GPUs are discovered without importing torch
and matched against ``image.require(...)``. Matching GPUs get workers pinned to
them (``CUDA_VISIBLE_DEVICES``); a requirement no local GPU meets is an error
listing them; a machine with no GPU runs workers on the CPU after a one-line
notice.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from ..errors import NoMatchingGpu
from ..runtime.local import LocalRuntime, RuntimeSpec

if TYPE_CHECKING:
    from ..deployment import Deployment

__all__ = ["make_local_runtime", "matching_gpus"]


def matching_gpus(requirement: Any) -> list[Any]:
    """Local GPUs that meet ``requirement`` ([] on a machine without GPUs, after a one-line notice on stderr)."""
    from .. import gpus as gpu_mod

    found = gpu_mod.local_gpus()
    if not found:
        print(f"vastnb: {gpu_mod.NO_GPU_NOTICE}", file=sys.stderr)
        return []
    if requirement is None:
        return found
    matching, _report = gpu_mod.match_local_gpus(requirement, found)
    if not matching:
        raise NoMatchingGpu(gpu_mod.no_match_message(requirement, found))
    return matching


def make_local_runtime(app: "Deployment") -> LocalRuntime:
    requirement = app._image.requirement if app._image is not None else None
    gpus = matching_gpus(requirement)
    env = dict(app._image._envs) if app._image is not None else {}
    spec = RuntimeSpec(
        name=app.name,
        functions=dict(app._specs),
        contexts=dict(app._context_specs),
        benchmark=app._benchmark_blob,
        env=env,
        gpus=gpus,
        workers_per_gpu=app.workers_per_gpu,
        health_timeout=app.health_check_timeout,
        cwd=os.getcwd(),
    )
    runtime = LocalRuntime(spec, events=app.events)
    runtime.policy = AutoscalerPolicy(app)
    return runtime


class AutoscalerPolicy:
    """Feeds the runtime's state to the pure policy (:func:`vastnb.autoscaling.decide`) each control period."""

    def __init__(self, app: "Deployment") -> None:
        from ..autoscaling import LoadMeter, PolicyState

        self.app = app
        self.state = PolicyState()
        self.meter = LoadMeter(started_at=time.monotonic())
        self.seen = 0

    def view(self, runtime: LocalRuntime, now: float) -> Any:
        from ..autoscaling import ScalingView, WorkerView

        fresh = runtime.arrivals_total - self.seen
        if fresh > 0:
            for t, w in reversed(list(itertools.islice(reversed(runtime.arrivals), fresh))):  # the new ones only
                self.meter.record(t, w)
            self.seen = runtime.arrivals_total
        workers = tuple(
            WorkerView(h.id, h.state, h.perf_score, h.load, h.idle_since)
            for h in runtime.workers.values() if h.state.alive and not h.stopping
        )
        waiting = now - runtime.pending[0].created if len(runtime.pending) else 0.0
        known = [h.perf_score for h in runtime.workers.values() if h.perf_score]
        return ScalingView(
            now=now, workers=workers, load=self.meter.rate(now), queue_time=waiting, queued=runtime.pending.load,
            last_request_at=runtime.last_activity(), machine_max_workers=runtime.machine_max_workers(),
            prior_perf_score=sum(known) / len(known) if known else None,
        )

    def __call__(self, runtime: LocalRuntime, now: float) -> tuple[int, str]:
        from ..autoscaling import decide

        settings = self.app.autoscaling
        rec, self.state = decide(self.view(runtime, now), settings, self.state)
        runtime.drain_hint = tuple(rec.stop)
        runtime.autoscaler = rec.to_snapshot(settings)  # snapshot() shows the runtime's last decision with it
        return rec.target, rec.reason
