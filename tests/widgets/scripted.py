"""A scripted stand-in for a deployment: a *source* (``snapshot()``, ``events``, ``name``) driven by hand.

Used by the widget unit tests and, copied next to it, by the browser test's notebook.
Every change publishes the event a real backend would publish.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Callable

from vastnb.events import (
    AutoscalerSnapshot,
    Decision,
    DeploymentSnapshot,
    Event,
    EventBus,
    EventKind,
    WorkerSnapshot,
    WorkerState,
)


class ScriptedSource:
    """A deployment whose state a test (or a demo thread) sets step by step."""

    def __init__(self, name: str = "demo", backend: str = "local", *, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.backend = backend
        self.events = EventBus()
        self.clock = clock
        self.state = "starting"
        self.code_version = "3f9a1c07d2e4b5a6"
        self.queued = 0
        self.benchmark_function: str | None = None
        self.start_failures = 0
        self.start_error: str | None = None
        self.snapshot_calls = 0
        self._lock = threading.Lock()
        self._workers: dict[str, WorkerSnapshot] = {}
        self._autoscaler = AutoscalerSnapshot(target_util=0.9, target_queue_time=2.0, max_workers=4)
        self._decisions: list[Decision] = []
        self._history: list[tuple[float, dict[str, int]]] = []

    # -- the source protocol --

    def snapshot(self) -> DeploymentSnapshot:
        with self._lock:
            self.snapshot_calls += 1
            return DeploymentSnapshot(
                name=self.name,
                backend=self.backend,
                state=self.state,
                workers=tuple(self._workers.values()),
                autoscaler=self._autoscaler,
                decisions=tuple(self._decisions),
                history=tuple(self._history),
                code_version=self.code_version,
                time=self.clock(),
                queued=self.queued,
                benchmark_function=self.benchmark_function,
                start_failures=self.start_failures,
                start_error=self.start_error,
            )

    # -- scripting --

    def _sample(self, t: float) -> None:
        counts: dict[str, int] = {}
        for w in self._workers.values():
            if w.state is not WorkerState.STOPPED:
                counts[w.state.value] = counts.get(w.state.value, 0) + 1
        self._history.append((t, counts))

    def worker(self, worker_id: str, **changes: Any) -> WorkerSnapshot:
        """Create or change a worker and publish a WORKER event."""
        t = changes.pop("at", None) or self.clock()
        with self._lock:
            old = self._workers.get(worker_id)
            if old is None:
                changes.setdefault("state", WorkerState.PROVISIONING)
                changes.setdefault("started_at", t)
                changes.setdefault("code_version", self.code_version)
                new = WorkerSnapshot(id=worker_id, **changes)
            else:
                new = dataclasses.replace(old, **changes)
            self._workers[worker_id] = new
            self._sample(t)
        self.events.publish(Event(EventKind.WORKER, t, worker=new))
        return new

    def phase(self, worker_id: str, name: str, seconds: float, **changes: Any) -> WorkerSnapshot:
        """Finish one cold-start phase on a worker."""
        phases = self._workers[worker_id].phases + ((name, seconds),)
        return self.worker(worker_id, phases=phases, **changes)

    def benchmark(self, worker_id: str, throughput: float) -> None:
        """One benchmark run finished on a worker."""
        t = self.clock()
        with self._lock:
            w = self._workers[worker_id]
            runs = w.benchmark_runs + (throughput,)
            w = dataclasses.replace(w, benchmark_runs=runs)
            self._workers[worker_id] = w
        self.events.publish(Event(EventKind.BENCHMARK, t, worker=w, data={"run": len(runs), "throughput": throughput}))

    def deployment(self, **changes: Any) -> None:
        """Change deployment-wide figures (``state``, ``queued``, ``start_failures``, …) and publish an AUTOSCALER event."""
        with self._lock:
            for name, value in changes.items():
                if not hasattr(self, name):
                    raise AttributeError(f"ScriptedSource has no {name!r}")
                setattr(self, name, value)
        self.events.publish(Event(EventKind.AUTOSCALER, self.clock()))

    def autoscale(self, **changes: Any) -> None:
        """Change the autoscaler's figures and publish an AUTOSCALER event."""
        with self._lock:
            self._autoscaler = dataclasses.replace(self._autoscaler, **changes)
        self.events.publish(Event(EventKind.AUTOSCALER, self.clock()))

    def decide(self, current: int, target: int, reason: str, *, at: float | None = None) -> Decision:
        d = Decision(time=at or self.clock(), current=current, target=target, reason=reason)
        with self._lock:
            self._decisions.append(d)
            self._autoscaler = dataclasses.replace(self._autoscaler, target_workers=target, last_decision=d)
        self.events.publish(Event(EventKind.DECISION, d.time, data={"decision": d}))
        return d

    def shutdown(self) -> None:
        t = self.clock()
        with self._lock:
            self.state = "shut down"
            for wid, w in list(self._workers.items()):
                if w.state.alive:
                    self._workers[wid] = dataclasses.replace(w, state=WorkerState.STOPPED, stopped_at=t, load=0.0, queue=0)
            self._autoscaler = dataclasses.replace(self._autoscaler, load=0.0, capacity=0.0, queue_time=0.0, target_workers=0)
            self.queued = 0
            self._sample(t)
        self.events.publish(Event(EventKind.SHUTDOWN, t))


TRACEBACK = """Traceback (most recent call last):
  File "<cell 4>", line 6, in __aenter__
    self.model = load_model("llama-3-8b").cuda()
  File "<cell 2>", line 12, in load_model
    raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"""


def play_demo(src: ScriptedSource, *, step: float = 0.05, shutdown: bool = False) -> None:
    """A short life of a deployment: three workers start, benchmark and serve; one fails; it scales up.

    Takes about ``40 * step`` seconds. History is back-dated so the charts span minutes.
    """
    now = src.clock()
    t0 = now - 240
    src.worker("w-0", gpu="RTX_4090 #0", gpu_memory_mb=24564, pid=4101, at=t0, price_per_hour=0.39)
    src.decide(0, 1, "cold_workers=1: keep one worker loaded", at=t0)
    src.phase("w-0", "process start", 1.4, state=WorkerState.LOADING, at=t0 + 2)
    src.phase("w-0", "installs", 8.2, at=t0 + 10)
    src.phase("w-0", "context Model", 12.6, state=WorkerState.BENCHMARKING, at=t0 + 23)
    for i, v in enumerate([1610.0, 1755.2, 1840.4, 1802.9, 1790.0, 1838.1, 1812.5, 1799.0, 1826.4, 1833.3]):
        src.benchmark("w-0", v)
        time.sleep(step / 4)
    src.phase("w-0", "benchmark", 4.1, state=WorkerState.READY, perf_score=1840.4, ready_at=t0 + 27, at=t0 + 27, busy_share=0.0)
    src.deployment(state="running", benchmark_function="predict")
    src.autoscale(load=420.0, capacity=1840.4, queue_time=0.0)
    time.sleep(step)
    src.worker("w-0", state=WorkerState.BUSY, load=1700.0, queue=3, calls_done=412, at=t0 + 120, busy_share=0.97)
    src.autoscale(load=1702.5, capacity=1840.4, queue_time=1.2)
    src.decide(1, 3, "load 1,702/s is 93% of capacity 1,840/s, above target_util 90%", at=t0 + 121)
    src.worker("w-1", gpu="H100_SXM #1", gpu_memory_mb=81559, pid=4188, at=t0 + 121, price_per_hour=2.19)
    src.worker("w-2", gpu="RTX_4090 #2", gpu_memory_mb=24564, pid=4190, at=t0 + 121, price_per_hour=0.39)
    time.sleep(step)
    src.phase("w-1", "process start", 1.1, state=WorkerState.LOADING, at=t0 + 123)
    src.phase("w-2", "process start", 1.3, state=WorkerState.LOADING, at=t0 + 123)
    src.phase("w-1", "installs", 0.4, at=t0 + 124)
    src.phase("w-2", "installs", 0.5, at=t0 + 124)
    src.worker("w-2", state=WorkerState.ERROR, error=TRACEBACK, stopped_at=t0 + 131, at=t0 + 131, failed_phase="context Model")
    src.phase("w-1", "context Model", 9.8, state=WorkerState.BENCHMARKING, at=t0 + 134)
    for v in [5120.0, 5480.7, 5590.2, 5611.0, 5540.3, 5602.8, 5575.1, 5610.9, 5598.4, 5603.6]:
        src.benchmark("w-1", v)
        time.sleep(step / 4)
    src.phase("w-1", "benchmark", 3.2, state=WorkerState.READY, perf_score=5611.0, ready_at=t0 + 138, at=t0 + 138, busy_share=0.0)
    src.decide(2, 2, "worker w-2 failed while loading; not replaced: load is within target", at=t0 + 139)
    src.autoscale(load=2260.0, capacity=7451.4, queue_time=0.08, target_workers=2)
    src.worker("w-1", state=WorkerState.BUSY, load=900.0, queue=1, calls_done=288, at=t0 + 200, busy_share=0.82)
    src.worker("w-0", state=WorkerState.READY, load=0.0, queue=0, calls_done=1260, at=t0 + 230, busy_share=0.12)
    src.worker("w-3", gpu="RTX_4090 #3", gpu_memory_mb=24564, pid=4242, price_per_hour=0.39)
    src.phase("w-3", "process start", 1.2, state=WorkerState.LOADING)
    src.code_version = "8c1d2e3f4a5b6c7d"
    src.worker("w-1", code_version=src.code_version, calls_done=311)
    src.autoscale(load=980.0)
    src.deployment(queued=4)
    if shutdown:
        time.sleep(step)
        src.shutdown()


MISSING = """Traceback (most recent call last):
  File "<cell 3>", line 4, in __aenter__
    self.weights = open("weights.bin", "rb").read()
FileNotFoundError: [Errno 2] No such file or directory: 'weights.bin'"""


def play_failing(src: ScriptedSource, attempts: int = 5) -> None:
    """A deployment whose context cannot load: each worker fails in ``context Model`` and is replaced."""
    t0 = src.clock() - 10 * attempts
    for i in range(attempts):
        wid, t = f"w-{i}", t0 + 10 * i
        src.worker(wid, gpu=f"RTX_4090 #{i % 2}", at=t)
        src.phase(wid, "process start", 0.4, state=WorkerState.LOADING, at=t + 0.4)
        src.worker(wid, state=WorkerState.ERROR, error=MISSING, failed_phase="context Model", stopped_at=t + 1.5, at=t + 1.5)
        src.deployment(start_failures=i + 1, start_error=MISSING, state="failing" if i >= 2 else "starting")
