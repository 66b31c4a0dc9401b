"""The embedded local cluster: worker processes on loopback, routing, scaling and failure handling.

The runtime is declared as a spec (functions, contexts, benchmark, image) and a
control loop makes reality match it: it starts the workers the autoscaler asks
for, replaces dead ones, drains the ones it names. Everything happens on one
private asyncio loop in a daemon thread; the public methods are thread-safe and
return ``concurrent.futures.Future`` objects, so the notebook can await them,
block on them, or poll them.

The call path lives in :mod:`._routing`, worker processes in :mod:`._workers`.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import itertools
import os
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, Callable

from ..._aio import LoopThread
from ...autoscaling import SCALE_DOWN_COOLDOWN_S, AutoscalingSettings, Recommendation
from ...errors import ConfigurationError, DeploymentShutDown, NotSupportedByBackend
from ...events import AutoscalerSnapshot, Decision, DeploymentSnapshot, Event, EventBus, EventKind, WorkerState
from ...spec import DeploymentSpec
from ...wire import messages as m
from ...wire import sweep_segments
from .._protocol import CallRequest, CellRequest, OutputSink
from ._autoscaler import Autoscaler, ScalePolicy
from ._direct import DirectPath
from ._gpus import matching_gpus
from ._handle import Call, WorkerHandle
from ._machine import CPU_WORKER_CAP, ColdCap, check_cold_cap, cold_cap, cold_cap_notice, wait_dead
from ._routing import CallQueue, Routing, ServiceTimes
from ._workers import WorkerProcesses, close_pipes

__all__ = ["LocalBackend"]

TRACE_ENV = "VASTNB_TRACE_CALLS"  # "1": record each call's hop times (benchmarks/call_hops.py prints them)

STOPPED_KEPT = 16  # stopped workers kept for the views (with their logs); older ones are dropped
LOAD_WINDOW_S = 5.0  # the load a snapshot shows: workload units per second that arrived over this window


class LocalBackend(WorkerProcesses, Routing):
    """Worker processes on this machine, one deployment's worth. ``Deployment(backend="local")`` builds one.

    Options: ``workers_per_gpu`` (workers sharing each GPU), ``health_check_timeout`` (seconds a worker may
    leave a health check unanswered before it is replaced; a worker running a long call still answers),
    ``start_timeout`` (seconds a worker process has to start listening), ``control_period`` (seconds between
    autoscaler decisions), ``scale_down_cooldown`` (seconds the load must stay low before idle workers are
    drained; Vast's engine uses 30) and ``max_cold_workers`` (the most workers kept started on this machine
    when idle: by default one per GPU slot, or one per CPU core on a machine without GPUs, so Vast's default
    ``cold_workers=5`` does not start five processes on a 2-core laptop; ``None`` starts what the settings
    say; a notice on stderr says when the cap applies). Vast and the export keep the settings as declared.
    """

    name = "local"
    requires_benchmark = False  # Vast's workers need one; these do not (the Deployment prints a notice)

    def __init__(
        self,
        *,
        workers_per_gpu: int = 1,
        health_check_timeout: float = 30.0,
        start_timeout: float = 60.0,
        control_period: float = 0.5,
        scale_down_cooldown: float = SCALE_DOWN_COOLDOWN_S,
        max_cold_workers: ColdCap = "machine",
        events: EventBus | None = None,
    ) -> None:
        if isinstance(workers_per_gpu, bool) or not isinstance(workers_per_gpu, int) or workers_per_gpu < 1:
            raise ConfigurationError(f"`workers_per_gpu` must be an integer >= 1. Instead got {workers_per_gpu!r}.")
        check_cold_cap(max_cold_workers)
        for label, value in (("health_check_timeout", health_check_timeout), ("start_timeout", start_timeout),
                             ("control_period", control_period)):
            _check_seconds(label, value)
        _check_seconds("scale_down_cooldown", scale_down_cooldown, allow_zero=True)
        self.workers_per_gpu = workers_per_gpu
        self.health_check_timeout = float(health_check_timeout)
        self.start_timeout = float(start_timeout)
        self.control_period = float(control_period)
        self.scale_down_cooldown = float(scale_down_cooldown)
        self.max_cold_workers = max_cold_workers
        self.stopped_kept = STOPPED_KEPT  # stopped workers the views still see
        self.events = events or EventBus()
        self.spec = DeploymentSpec(name="")
        self.policy: ScalePolicy | None = None
        self.secret = secrets.token_bytes(32)
        self.workers: dict[str, WorkerHandle] = {}
        self.pending = CallQueue()
        self.live: dict[concurrent.futures.Future[Any], Call] = {}
        self.traces = collections.deque(maxlen=100_000) if os.environ.get(TRACE_ENV) == "1" else None
        self.gpus: list[Any] = []
        self.env: dict[str, str] = {}
        self.cwd = os.getcwd()
        self.call_ids = itertools.count(1)  # request ids on the workers' connections: calls and control alike
        self.direct = DirectPath(self)
        self._worker_seq = itertools.count(1)
        self._thread: LoopThread | None = None
        self.state = "declared"
        self.target = 0
        self.reason = ""
        self.decisions: collections.deque[Decision] = collections.deque(maxlen=200)
        self.history: collections.deque[tuple[float, dict[str, int]]] = collections.deque(maxlen=1200)
        self.arrival_log: collections.deque[tuple[float, float]] = collections.deque(maxlen=100_000)
        self.queue_times: collections.deque[tuple[float, float]] = collections.deque(maxlen=10_000)
        self.arrivals_total = 0
        self.service = ServiceTimes()
        self.start_failures = 0
        self.next_start_at = 0.0
        self.last_start_error: str | None = None
        self.last_start_cause: BaseException | None = None
        self.start_summary: str | None = None
        self._health_at = time.monotonic()
        self.shown_load = self.shown_queue_time = 0.0  # figured on the loop each control period, read by snapshots
        self.ready_waiters: list[asyncio.Future] = []
        self._dirty: set[str] = set()
        self._flush_scheduled = False
        self._control_task: asyncio.Task | None = None
        self.autoscaler: AutoscalerSnapshot | None = None  # the policy's latest figures

    def __repr__(self) -> str:
        return f"<LocalBackend {self.spec.name!r} state={self.state} workers={len(self.workers)}>"

    # ================================================================== the Backend protocol
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._thread is not None
        return self._thread.loop

    def start(self, spec: DeploymentSpec) -> None:
        """Start the control loop (non-blocking); workers begin provisioning."""
        if self._thread is not None:
            return
        requirement = spec.image.requirement if spec.image is not None else None
        self.gpus = matching_gpus(requirement)
        self.env = dict(spec.image.envs) if spec.image is not None else {}
        self.cwd = os.getcwd()
        self.spec = spec
        sweep_segments()  # shared memory left by processes that died before they could remove it
        if self.policy is None:
            self.policy = Autoscaler(spec.autoscaling or AutoscalingSettings(), time.monotonic(),
                                     scale_down_cooldown=self.scale_down_cooldown, cold_cap=self.cold_cap())
        self._announce_cold_cap()
        self._thread = LoopThread(f"vastnb-{spec.name}")
        self.state = "starting"
        self._thread.run(self._start())

    def update(self, spec: DeploymentSpec) -> "concurrent.futures.Future[None]":
        """Swap code on warm workers (no restart); re-enter only contexts whose spec changed."""
        if isinstance(self.policy, Autoscaler) and spec.autoscaling is not None:
            self.policy.settings = spec.autoscaling
        return self._submit(self._update(spec))

    def ready_target(self) -> int:
        settings = self.spec.autoscaling or AutoscalingSettings()
        want = max(1, settings.cold_workers)
        want = min(want, settings.max_workers or want)
        cap = self.machine_max_workers()
        want = min(want, cap) if cap else want
        cold_cap = self.cold_cap()
        return max(1, min(want, cold_cap)) if cold_cap is not None else want

    def cold_cap(self) -> int | None:
        """The most cold workers this machine keeps started (``max_cold_workers``), None for no cap."""
        return cold_cap(self.max_cold_workers, len(self._machine_slots()))

    def _announce_cold_cap(self) -> None:
        settings = self.spec.autoscaling or AutoscalingSettings()
        notice = cold_cap_notice(self.spec.name, settings.effective_cold_workers, self.max_cold_workers,
                                 len(self._machine_slots()))
        if notice is not None:
            print(notice, file=sys.stderr)

    def wait_ready(self, min_ready: int = 1) -> "concurrent.futures.Future[None]":
        """A future that resolves when ``min_ready`` workers serve, or fails when none can start."""
        return self._submit(self._wait_ready(min_ready))

    def run_cell(self, cell: CellRequest, workers: Sequence[str] | None,
                 sink_for: Callable[[str], OutputSink | None]) -> "concurrent.futures.Future[dict[str, Any]]":
        """Run a ``%%vast_run`` cell on the given workers (None: one ready worker)."""
        return self._submit(self._run_cell(cell, workers, sink_for))

    def benchmark(self, function: str) -> "concurrent.futures.Future[dict[str, float]]":
        fn = self.spec.functions.get(function)
        if fn is None or fn.benchmark is None:
            raise ConfigurationError(f"{function!r} is not a remote function with a benchmark in deployment "
                                     f"{self.spec.name!r}.")
        return self._submit(self._benchmark(fn.benchmark))

    def snapshot(self) -> DeploymentSnapshot:
        """The deployment now. A shut-down one reads stopped and zero: every worker stopped, no load, no capacity,
        nothing queued."""
        now = time.monotonic()
        down = self.state == "shut down"
        workers = tuple(self._worker_snapshot(h, now, down) for h in list(self.workers.values()))
        last = self.decisions[-1] if self.decisions else None
        figures = self.autoscaler or AutoscalerSnapshot(target_util=0.9, target_workers=self.target,
                                                         max_workers=self.target)
        figures = dataclasses.replace(
            figures, last_decision=last,
            load=0.0 if down else self.shown_load,  # decays to 0 within LOAD_WINDOW_S of the last call
            capacity=0.0 if down else self.capacity(),  # serving workers only
            queue_time=0.0 if down else self.shown_queue_time,
            **({"target_workers": 0} if down else {}))
        failing = not down and self.failing()
        return DeploymentSnapshot(
            name=self.spec.name,
            backend=self.name,
            state="failing" if failing else self.state,
            workers=workers,
            autoscaler=figures,
            decisions=tuple(self.decisions),
            history=tuple(self.history),
            code_version=self.spec.code_version,
            time=time.time(),
            queued=0 if down else self.pending.waiting(),
            benchmark_function=self.spec.benchmark,
            start_failures=self.start_failures,
            start_error=self.start_summary if self.start_failures else None,
        )

    def _worker_snapshot(self, handle: WorkerHandle, now: float, down: bool) -> Any:
        snap = handle.snapshot(self._code_version(handle), now)
        if down and snap.state != WorkerState.STOPPED:  # error workers keep their error text and failed phase
            snap = dataclasses.replace(snap, state=WorkerState.STOPPED, load=0.0, queue=0, busy_share=0.0,
                                       stopped_at=snap.stopped_at or time.time())
        return snap

    def logs(self, worker: str | None = None) -> dict[str, list[str]]:
        if worker is not None and worker not in self.workers:
            known = ", ".join(self.workers) or "none"
            raise LookupError(f"no worker {worker!r} in deployment {self.spec.name!r} (known: {known}; only the last "
                              f"{self.stopped_kept} stopped workers are kept).")
        handles = [self.workers[worker]] if worker else list(self.workers.values())
        return {h.id: list(h.log) for h in handles}

    def arrivals(self) -> list[tuple[float, float]]:
        return list(self.arrival_log)

    def machine_max_workers(self) -> int | None:
        """GPU slots when the machine has GPUs; without one, a bound that keeps a laptop usable."""
        if self.gpus:
            return len(self._machine_slots())
        return max(CPU_WORKER_CAP, os.cpu_count() or 1)

    def shutdown(self, keep_endpoint: bool = False, timeout: float = 15.0) -> None:
        """Drain and stop every worker, fail calls still waiting, stop the loop. Idempotent."""
        if keep_endpoint:
            raise NotSupportedByBackend(
                "shutdown(keep_endpoint=True): the local backend's workers live in this kernel and cannot outlive it. "
                "Call shutdown() without keep_endpoint.")
        self.direct.close()
        if self._thread is None or self.state == "shut down":
            self.state = "shut down"
            return
        try:
            self._thread.run(self._shutdown(timeout), timeout + 5)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass
        self._thread.stop()
        self.state = "shut down"

    def kill_all_now(self) -> None:
        """Last resort at interpreter exit: SIGKILL every worker process group, then remove the shared memory they
        created that nobody read (this process's own segments are removed by the wire's exit hook)."""
        pids = []
        for h in list(self.workers.values()):
            proc = h.process
            if proc is not None:
                pids.append(proc.pid)
            if proc is not None and proc.returncode is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        if pids:
            wait_dead(pids, 2.0)
            sweep_segments(pids)

    # ================================================================== drills
    def kill_worker(self, worker_id: str, sig: int = signal.SIGKILL) -> None:
        """Send a signal to a worker process (fault drills)."""
        handle = self.workers[worker_id]
        if handle.process is not None and handle.process.returncode is None:
            os.kill(handle.process.pid, sig)

    # ================================================================== figures
    def _code_version(self, handle: WorkerHandle) -> str:
        wanted = {f.hash for f in self.spec.functions.values()}
        if wanted <= handle.code and all(handle.contexts.get(n) == c.hash for n, c in self.spec.contexts.items()):
            return self.spec.code_version
        return "stale" if handle.code else ""

    # ================================================================== loop side
    def _next_id(self) -> int:
        return next(self.call_ids)

    def _thread_call(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._thread is None:
            raise RuntimeError("the runtime is not started")
        self._thread.call_soon(fn, *args)

    def _submit(self, coro: Any) -> "concurrent.futures.Future[Any]":
        if self._thread is None:
            coro.close()
            raise RuntimeError("the runtime is not started")
        return self._thread.submit(coro)

    def _shut_down_error(self) -> DeploymentShutDown:
        return DeploymentShutDown(
            f"deployment {self.spec.name!r} is shut down; create a new vastnb.Deployment (or run "
            "%vast_deployment again) to start workers."
        )

    async def _start(self) -> None:
        self._control_task = asyncio.create_task(self._control_loop())

    async def _control_loop(self) -> None:
        last_sample = 0.0
        while self.state not in ("shut down", "shutting down"):
            try:
                self._control_step()
                now = time.monotonic()
                if now - last_sample >= 1.0:
                    last_sample = now
                    self._sample_history()
                await self._health_checks()
            except Exception:  # noqa: BLE001 - the loop must survive a bug in one step
                import traceback

                traceback.print_exc()
            await asyncio.sleep(self.control_period)

    def _control_step(self) -> None:
        """Ask the policy, then apply its recommendation as returned: start ``start``, drain the workers in ``stop``."""
        assert self.policy is not None
        self.direct.account()
        now = time.monotonic()
        self.shown_load, self.shown_queue_time = self.load_rate(LOAD_WINDOW_S), self.recent_queue_time()
        rec = self.policy(self, now)
        if isinstance(self.policy, Autoscaler):
            self.autoscaler = rec.to_snapshot(self.policy.local_settings())
        if rec.target != self.target or rec.reason != self.reason:
            current = sum(1 for h in self.workers.values() if h.state.alive)
            decision = Decision(time=time.time(), current=current, target=rec.target, reason=rec.reason)
            if rec.target != self.target:
                self.decisions.append(decision)
                self.events.publish(Event(EventKind.DECISION, time.time(), data={"decision": decision}))
            self.target, self.reason = rec.target, rec.reason
        self._apply(rec, now)
        if self.state == "starting" and any(h.serving for h in self.workers.values()):
            self.state = "running"

    def _apply(self, rec: Recommendation, now: float) -> None:
        alive = [h for h in self.workers.values() if h.state.alive and not h.stopping]
        if len(alive) < rec.target and now >= self.next_start_at:  # replaces workers that died since, too
            for _ in range(rec.target - len(alive)):
                self._launch()
        for worker_id in rec.stop:
            handle = self.workers.get(worker_id)
            if handle is not None and handle.state.alive and not handle.stopping and handle.id not in self.direct.claimed:
                asyncio.create_task(self._drain(handle))
        held, activated = set(rec.inactive), False
        for handle in alive:  # Vast's inactive cold workers: loaded, kept out of routing until the policy needs them
            if handle.inactive != (handle.id in held):
                handle.inactive, activated = handle.id in held, activated or handle.inactive
                self._publish_worker(handle)
        if activated:
            self._dispatch()  # calls waiting in the queue may go to the worker that serves again

    def _sample_history(self) -> None:
        self._prune_stopped()
        counts: dict[str, int] = {}
        for h in self.workers.values():
            if h.state in (WorkerState.STOPPED,) and h.stopped_at and time.time() - h.stopped_at > 60:
                continue
            counts[h.state.value] = counts.get(h.state.value, 0) + 1
        self.history.append((time.time(), counts))
        self.events.publish(Event(EventKind.AUTOSCALER, time.time(), data={"snapshot": self.snapshot().autoscaler}))

    async def _wait_ready(self, min_ready: int) -> None:
        while True:
            serving = [h for h in self.workers.values() if h.serving]
            if len(serving) >= min_ready:
                return
            starting = [h for h in self.workers.values() if h.state.starting]
            if serving and not starting and self.start_failures > 0:
                return  # some workers serve and the others keep failing: go on with what there is
            error = self._start_error()
            if error is not None:
                raise error
            if self.state in ("shut down", "shutting down"):
                raise self._shut_down_error()
            fut = self.loop.create_future()
            self.ready_waiters.append(fut)
            try:
                await asyncio.wait_for(fut, 1.0)
            except asyncio.TimeoutError:
                pass

    def _resolve_waiters(self) -> None:
        waiters, self.ready_waiters = self.ready_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _update(self, spec: DeploymentSpec) -> None:
        changed_contexts = [c for n, c in spec.contexts.items()
                            if n not in self.spec.contexts or self.spec.contexts[n].hash != c.hash]
        if spec.code_version != self.spec.code_version and self.start_failures:
            self.start_failures, self.next_start_at = 0, 0.0  # new code: starting workers is worth trying again
        self.spec = spec
        waits = []
        for handle in self.workers.values():
            if not handle.state.alive or handle.conn is None or handle.conn.closed:
                continue
            missing = [f for f in spec.functions.values() if f.hash not in handle.code]
            if missing:
                handle.code |= {f.hash for f in missing}
                waits.append(self._request_ok(handle, m.Install(tuple(m.InstallFunction.of(f) for f in missing))))
            stale = [c for c in changed_contexts if handle.contexts.get(c.name) != c.hash]
            if stale:
                for c in stale:
                    handle.contexts[c.name] = c.hash
                waits.append(self._request_ok(handle, m.EnterContexts(tuple(stale))))
        results = await asyncio.gather(*waits, return_exceptions=True)
        for h in self.workers.values():
            self._publish_worker(h)
        self.events.publish(Event(EventKind.CODE, time.time(),
                                  data={"version": spec.code_version, "functions": sorted(spec.functions)}))
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def _run_cell(self, cell: CellRequest, worker_ids: Sequence[str] | None,
                        sink_for: Callable[[str], OutputSink | None]) -> dict[str, Any]:
        if worker_ids is None:
            await self._wait_ready(1)
            candidates = sorted(self.serving(), key=lambda h: h.load / (h.perf_score or self.default_perf()))
            handles = candidates[:1]
        else:
            handles = []
            for wid in worker_ids:
                handle = self.workers.get(wid)
                if handle is None or not handle.serving:
                    known = ", ".join(h.id for h in self.serving()) or "none"
                    raise LookupError(f"worker {wid!r} is not serving; serving workers: {known}.")
                handles.append(handle)
        message = m.RunCell(cell.source, cell.filename, cell.push, tuple(cell.pull))
        results = await asyncio.gather(
            *(self._request_ok(h, message, sink_for(h.id)) for h in handles), return_exceptions=True)
        return {h.id: r for h, r in zip(handles, results)}

    async def _benchmark(self, benchmark: Any) -> dict[str, float]:
        handles = self.serving()
        results = await asyncio.gather(*(self._request_ok(h, m.RunBenchmark(benchmark)) for h in handles))
        out = {}
        for h, score in zip(handles, results):
            h.perf_score = score
            self._publish_worker(h)
            out[h.id] = score
        return out

    async def _shutdown(self, timeout: float) -> None:
        self.state = "shutting down"
        if self._control_task is not None:
            self._control_task.cancel()
        for call in list(self.pending):
            self._fail(call, self._shut_down_error())
        self.pending.clear()
        self.live.clear()
        handles = [h for h in self.workers.values() if h.state.alive]
        await asyncio.gather(*(self._drain(h, grace=timeout / 2) for h in handles), return_exceptions=True)
        for h in self.workers.values():
            self._kill(h)
        for h in self.workers.values():
            if h.process is not None:
                try:
                    await asyncio.wait_for(h.process.wait(), 5)
                except asyncio.TimeoutError:
                    pass
                close_pipes(h.process)
            if h.conn is not None:
                try:
                    await asyncio.wait_for(h.conn.writer.wait_closed(), 1)
                except (asyncio.TimeoutError, ConnectionError, OSError):
                    pass
        tasks = [t for h in self.workers.values() for t in h.tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.state = "shut down"
        self.events.publish(Event(EventKind.SHUTDOWN, time.time()))
        self._resolve_waiters()


def _check_seconds(label: str, value: Any, *, allow_zero: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and value == value and value != float("inf")
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ConfigurationError(f"`{label}` must be a positive number of seconds. Instead got {value!r}.")
