"""The Vast backend: a notebook's deployment on Vast Serverless, through the official ``vastai`` SDK.

``Deployment(..., backend="vast")`` builds a :class:`VastBackend`. On
:meth:`~VastBackend.start` it deploys vastnb's interactive-mode worker (the module
of :mod:`._module`, served by :mod:`vastnb.worker.vast`) once through the SDK; the SDK's content hash
decides whether anything is uploaded (an unchanged deployment is not) and a
changed one gets the SDK's soft update. From then on every call, ``%%vast_run``
cell and benchmark is a *frame* routed by the SDK (``/route/``, then the worker)
to the official worker runtime, which hands it to vastnb's worker core:

* a redefined function or context reaches warm workers by content hash, with
  the call that needs it, without a redeploy (:meth:`update` is instant);
* remote exceptions come back with their type, message and traceback, and
  remote ``print`` output comes back with the result;
* every call has a deadline (its ``timeout``): the SDK would wait forever for a
  worker and retry 5xx forever; here the wait ends with a message saying what it
  was waiting for.

Everything runs on one private event loop in a daemon thread (the SDK never
touches Jupyter's loop); the public methods are thread-safe and return
``concurrent.futures.Future`` objects like the local runtime's. A status poller
and the ``ttl`` heartbeat are tasks on that loop (no extra threads), stopped by
:meth:`shutdown`, which also deletes the deployment and its endpoint unless
``keep_endpoint=True``.

In a notebook (or any interactive session) a deployment without a ``ttl`` gets
:data:`DEFAULT_SESSION_TTL`: a kernel that dies without shutting down stops its
heartbeats, and Vast deletes the deployment that long after the last one, so it
does not go on billing. ``Deployment(ttl=...)`` overrides it;
``VastBackend(session_ttl=None)`` turns it off.

Replies from Vast workers are loaded with a restricted unpickler (the host is
another person's machine): see :mod:`vastnb.wire._restricted` and the README's
threat model; ``VastBackend(trust_hosts=True)`` opts out for hosts you control.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, Callable

from ..._aio import LoopThread
from ...errors import ConfigurationError, DeploymentShutDown
from ...events import DeploymentSnapshot, Event, EventBus, EventKind
from ...spec import DEFAULT_BENCHMARK_RUNS, DEFAULT_MAX_QUEUE_TIME, DEFAULT_WORKLOAD, DeploymentSpec, FunctionSpec
from ...wire import build_remote_exception
from ...wire import messages as m
from ...worker.vast import encode_frame, frame_key
from .._protocol import CallRequest, CellRequest, OutputSink
from ._calls import Deadline, FrameChannel, SessionGone, write_output
from ._module import build_snapshot, contexts_identity, generate_module
from ._monitor import Monitoring
from ._ready import Readiness
from ._sdk import DeployResult, SdkSession, VastApiError, check_name, guarded, resolve_api_key
from ._status import StatusTracker
from ._teardown import Teardown

__all__ = ["DEFAULT_SESSION_TTL", "VastApiError", "VastBackend", "interactive_session"]

log = logging.getLogger("vastnb")
#: The ``ttl`` of a deployment made from a notebook or another interactive session when it sets none: Vast deletes
#: the deployment this many seconds after the last heartbeat (one a minute while the kernel lives).
DEFAULT_SESSION_TTL = 900.0
SESSION_OPEN_TIMEOUT = 60.0
SHIPPED_PACKAGES = ("vastnb", "cloudpickle")
_AUTOSCALING_KEYS = ("cold_workers", "max_workers", "min_load", "min_cold_load", "target_util", "cold_mult",
                     "max_queue_time", "target_queue_time", "inactivity_timeout")


def interactive_session() -> bool:
    """True in a notebook kernel, IPython or the Python prompt (``__main__`` is no file), or under ``python -i``."""
    main = sys.modules.get("__main__")
    return not getattr(main, "__file__", None) or bool(sys.flags.interactive)


class VastBackend(Readiness, Teardown, Monitoring):
    """One deployment on Vast Serverless. ``Deployment(backend="vast")`` builds one; build it yourself for the options.

    ``api_key`` (else ``VAST_API_KEY``, else the SDK's key file), ``webserver_url`` (Vast's console/API server,
    else ``VAST_URL``), ``autoscaler_url`` (else ``VASTNB_AUTOSCALER_URL``), ``ready_timeout`` (seconds
    ``ensure_ready()`` waits for workers), ``ready_workers`` (serving workers it waits for; default 1, the active
    worker: Vast keeps the other cold workers inactive), ``poll_interval``/``max_poll_interval`` (seconds between
    status polls, backing off while nothing changes), ``cell_session_lifetime`` and ``cell_timeout`` (the session
    that pins ``%%vast_run`` cells to one worker), ``eager_code`` (send a function's code with its first call),
    ``session_ttl`` (the ``ttl`` of a deployment made interactively without one; None: no ttl), ``trust_hosts``
    (load worker replies with plain pickle: only for hosts you control; see the README's threat model).
    """

    name = "vast"
    requires_benchmark = True

    def __init__(
        self,
        *,
        api_key: str | None = None,
        webserver_url: str | None = None,
        autoscaler_url: str | None = None,
        ready_timeout: float = 1200.0,
        poll_interval: float = 2.0,
        max_poll_interval: float = 30.0,
        cell_session_lifetime: float = 600.0,
        cell_timeout: float = 600.0,
        eager_code: bool = True,
        ready_workers: int | None = None,
        session_ttl: float | None = DEFAULT_SESSION_TTL,
        trust_hosts: bool = False,
        events: EventBus | None = None,
    ) -> None:
        for label, value in (("ready_timeout", ready_timeout), ("poll_interval", poll_interval),
                             ("max_poll_interval", max_poll_interval), ("cell_session_lifetime", cell_session_lifetime),
                             ("cell_timeout", cell_timeout), ("session_ttl", session_ttl)):
            if label == "session_ttl" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                none = " or None" if label == "session_ttl" else ""
                raise ConfigurationError(f"`{label}` must be a positive number of seconds{none}. Instead got {value!r}.")
        if ready_workers is not None and (isinstance(ready_workers, bool) or not isinstance(ready_workers, int)
                                          or ready_workers < 1):
            raise ConfigurationError(f"`ready_workers` must be a positive integer or None. Instead got {ready_workers!r}.")
        if not isinstance(trust_hosts, bool):
            raise ConfigurationError(f"`trust_hosts` must be True or False. Instead got {trust_hosts!r}.")
        self.events = events or EventBus()
        self.spec = DeploymentSpec(name="")
        self.webserver_url: str | None = webserver_url or os.environ.get("VAST_URL")
        self.autoscaler_url: str | None = autoscaler_url or os.environ.get("VASTNB_AUTOSCALER_URL")
        self.ready_timeout = float(ready_timeout)
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.cell_session_lifetime = float(cell_session_lifetime)
        self.cell_timeout = float(cell_timeout)
        self.eager_code = bool(eager_code)
        self.ready_workers = ready_workers
        self.session_ttl = float(session_ttl) if session_ttl is not None else None
        self.trust_hosts = trust_hosts
        self.ttl: float | None = None  # the ttl the deployment was registered with
        self.ttl_from_session = False
        self._explicit_key = api_key
        self.state = "declared"
        self.deploy_result: DeployResult | None = None
        self.tracker = StatusTracker(self.events)
        self.tracker.code_version = self._worker_code_version
        self.sdk: SdkSession | None = None
        self.channel = FrameChannel(self.tracker, eager_code=self.eager_code, on_activity=self._poke)
        self.channel.trust_hosts = trust_hosts
        self._thread: LoopThread | None = None
        self._deployed: concurrent.futures.Future[DeployResult] | None = None
        self._calls: dict[concurrent.futures.Future[Any], asyncio.Task[Any]] = {}
        self._background: list[asyncio.Task[Any]] = []
        self._cell_session: Any = None
        self._cell_worker: str | None = None
        self._nudge: asyncio.Event | None = None
        self._closing = False
        self.arrival_log: collections.deque[tuple[float, float]] = collections.deque(maxlen=100_000)

    def __repr__(self) -> str:
        ids = f" endpoint={self.deploy_result.endpoint_id}" if self.deploy_result else ""
        return f"<VastBackend {self.spec.name!r} state={self.state}{ids}>"

    # ================================================================== lifecycle
    def start(self, spec: DeploymentSpec) -> None:
        """Check the declarations, then deploy in the background (non-blocking)."""
        if self._thread is not None:
            return
        if spec.image is None:
            raise ConfigurationError(
                f"deployment {spec.name!r} has no image; backend='vast' needs one, e.g. "
                "app.image('vastai/pytorch:@vastai-automatic-tag', storage=16).")
        check_name(spec.name, spec.tag)
        key = resolve_api_key(self._explicit_key)
        self._set_spec(spec)
        self.ttl_from_session = spec.ttl is None and self.session_ttl is not None and interactive_session()
        self.ttl = self.session_ttl if self.ttl_from_session else spec.ttl
        self.sdk = SdkSession(
            key, name=spec.name, tag=spec.tag, version_label=spec.version_label, ttl=self.ttl,
            webserver_url=self.webserver_url, autoscaler_url=self.autoscaler_url,
            autoscaler_instance=spec.autoscaler_instance or "prod")
        self.sdk.route.on_change = self._route_said
        self.channel.sdk = self.sdk
        self.channel.frame_key = frame_key(key, spec.name, spec.tag)
        self._thread = LoopThread(f"vastnb-vast-{spec.name}")
        self.state = "starting"
        self._deployed = self._thread.submit(self._deploy(spec))

    def _set_spec(self, spec: DeploymentSpec) -> None:
        self.spec = spec
        self.channel.contexts = dict(spec.contexts)

    @property
    def api_key(self) -> str | None:
        return self.sdk.api_key if self.sdk is not None else None

    @property
    def endpoint_id(self) -> int | None:
        return self.deploy_result.endpoint_id if self.deploy_result else None

    @property
    def deployment_id(self) -> int | None:
        return self.deploy_result.deployment_id if self.deploy_result else None

    def machine_max_workers(self) -> int | None:
        return None  # Vast's marketplace: max_workers is the limit

    def arrivals(self) -> list[tuple[float, float]]:
        return list(self.arrival_log)

    def wait_deployed(self, timeout: float | None = None) -> DeployResult:
        """Block until the deployment is registered (and uploaded if needed); what the SDK's server answered."""
        if self._deployed is None:
            raise RuntimeError("the Vast backend is not started")
        return self._deployed.result(timeout)

    async def _deploy(self, spec: DeploymentSpec) -> DeployResult:
        assert self.sdk is not None and spec.image is not None
        self._nudge = asyncio.Event()
        await self.sdk.open()
        bench = spec.benchmark_spec
        bench_fn = spec.functions.get(spec.benchmark or "")
        module = generate_module(
            spec.name, build_snapshot(spec), contexts_id=contexts_identity(spec.contexts),
            benchmark_runs=bench.runs if bench else DEFAULT_BENCHMARK_RUNS,
            max_queue_time=max((f.max_queue_time for f in spec.functions.values()), default=DEFAULT_MAX_QUEUE_TIME),
            frame_key=self.channel.frame_key, benchmark_parallel=bool(bench_fn and bench_fn.allow_parallel))
        result = await self.sdk.deploy(module, spec.image, autoscaling=self._autoscaling(), packages=SHIPPED_PACKAGES)
        self.deploy_result = result
        if result.uploaded:  # workers start from this upload, so they have these functions already
            self.channel.confirmed |= {f.hash for f in spec.functions.values()}
        await self.sdk.routing_endpoint()
        self._background.append(asyncio.create_task(self._poll_loop()))
        if self.ttl:
            self._background.append(asyncio.create_task(self._heartbeat_loop(float(self.ttl))))
        self.events.publish(Event(EventKind.CODE, time.time(), data={
            "version": spec.code_version, "functions": sorted(spec.functions),
            "vast": {"deployment_id": result.deployment_id, "endpoint_id": result.endpoint_id,
                     "action": result.action, "uploaded": result.uploaded}}))
        return result

    def _autoscaling(self) -> dict[str, Any]:
        settings = self.spec.autoscaling
        raw = settings.to_vast_dict() if settings is not None else {}
        return {k: v for k, v in dict(raw).items() if k in _AUTOSCALING_KEYS and v is not None}

    async def _ensure_deployed(self) -> DeployResult:
        if self._closing:
            raise self._shut_down_error()
        assert self._deployed is not None
        return await asyncio.wrap_future(self._deployed)

    # ================================================================== calls
    def submit(self, request: CallRequest) -> "concurrent.futures.Future[Any]":
        """Run one call on a worker Vast routes it to."""
        if self._closing or self._thread is None:
            return self._submit(asyncio.sleep(0))
        payload = request.payload
        data = payload.to_bytes() if hasattr(payload, "to_bytes") else bytes(payload)
        self.arrival_log.append((time.monotonic(), request.workload))
        return self._submit(self._call(request.function, data, request.workload, request.sink, request.kind))

    def call_direct(self, request: CallRequest) -> tuple[bool, Any]:
        return False, None  # every call goes through Vast's /route/

    async def call_direct_async(self, request: CallRequest) -> tuple[bool, Any]:
        return False, None

    def submit_many(self, requests: Sequence[CallRequest]) -> "list[concurrent.futures.Future[Any]]":
        return [self.submit(request) for request in requests]

    def cancel(self, future: "concurrent.futures.Future[Any]") -> None:
        if self._thread is not None:
            self._thread.call_soon(self._cancel, future)

    def cancel_many(self, futures: "Sequence[concurrent.futures.Future[Any]]") -> None:
        for future in futures:
            self.cancel(future)

    def _cancel(self, future: "concurrent.futures.Future[Any]") -> None:
        task = self._calls.get(future)
        if task is not None:
            task.cancel()
        future.cancel()

    def _spawn(self, future: "concurrent.futures.Future[Any]", coro: Any) -> None:
        if future.done():
            coro.close()
            return
        loop = asyncio.get_running_loop()
        task = loop.create_task(coro)
        self._calls[future] = task
        # a caller that cancels the future (KeyboardInterrupt in a cell) stops the work too
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(task.cancel) if f.cancelled() else None)

        def done(t: "asyncio.Task[Any]") -> None:
            self._calls.pop(future, None)
            if future.done():
                return
            if t.cancelled():
                if self._closing:
                    future.set_exception(self._shut_down_error())
                else:
                    future.cancel()
            elif t.exception() is not None:
                future.set_exception(t.exception())
            else:
                future.set_result(t.result())

        task.add_done_callback(done)

    async def _call(self, spec: FunctionSpec, payload: bytes, workload: float, sink: Any, kind: str) -> Any:
        await self._ensure_deployed()
        deadline = Deadline(spec.timeout)
        what = f"{spec.name}()"
        retries = None if kind == "map" else spec.retries + 1
        reply = await self.channel.send(
            {"op": "call", "fn": spec.hash, "payload": payload}, spec, workload, deadline, what, retries)
        write_output(reply, sink)
        if reply.get("ok"):
            return reply.get("value")
        raise build_remote_exception(reply["error"], f"Vast worker {reply.get('worker')} running {what}",
                                     self.channel.exception_loader())

    # ================================================================== code, cells, benchmark
    def update(self, spec: DeploymentSpec) -> "concurrent.futures.Future[None]":
        """New code: each worker gets it with the first call that needs it (no restart, no redeploy)."""
        self._set_spec(spec)
        self.events.publish(Event(EventKind.CODE, time.time(), data={
            "version": spec.code_version, "functions": sorted(spec.functions)}))
        for view in list(self.tracker.workers.values()):
            self.tracker._publish(view)
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        done.set_result(None)
        return done

    def run_cell(self, cell: CellRequest, workers: Sequence[str] | None,
                 sink_for: Callable[[str], OutputSink | None]) -> "concurrent.futures.Future[dict[str, Any]]":
        """Run a ``%%vast_run`` cell on the notebook's pinned worker (an SDK session keeps cells on one worker)."""
        return self._submit(self._run_cell(cell, workers, sink_for))

    async def _run_cell(self, cell: CellRequest, worker_ids: Sequence[str] | None,
                        sink_for: Callable[[str], OutputSink | None]) -> dict[str, Any]:
        await self._ensure_deployed()
        deadline = Deadline(self.cell_timeout)
        message = m.RunCell(cell.source, cell.filename, cell.push, tuple(cell.pull))
        frame = {"op": "run", "payload": encode_frame(message, "the cell's pushed values")}
        notice = ""
        reply: dict[str, Any] = {}
        for attempt in range(2):
            session, notice = await self._cell_session_for(deadline)
            if worker_ids is not None:
                if self._cell_worker is None and session is not None:
                    hello = await self.channel.send({"op": "hello"}, None, 1.0, deadline, "the cell session", 1, session)
                    self._cell_worker = str(hello.get("worker"))
                wrong = [w for w in worker_ids if w != self._cell_worker]
                if wrong:
                    raise LookupError(
                        f"worker(s) {', '.join(wrong)}: Vast routes each request to a worker of its choosing, so "
                        f"vastnb runs cells on the worker this notebook's cell session is pinned to "
                        f"({self._cell_worker or 'none yet'}). Leave out the worker to run there.")
            try:
                reply = await self.channel.send(frame, None, 1.0, deadline, "the %%vast_run cell", 1, session)
                break
            except SessionGone:
                self._cell_session = None
                if attempt:
                    raise VastApiError("the %%vast_run cell: the worker of the cell session went away twice") from None
        worker = str(reply.get("worker"))
        sink = sink_for(worker)
        if sink is not None:
            if notice:
                sink("stderr", notice)
            if self._cell_worker is not None and worker != self._cell_worker:
                sink("stderr", f"vastnb: the cell session moved to worker {worker}; names defined by earlier "
                               f"cells on worker {self._cell_worker} are not there.\n")
        self._cell_worker = worker
        write_output(reply, sink)
        if reply.get("ok"):
            return {worker: reply.get("value")}
        return {worker: build_remote_exception(reply["error"], f"Vast worker {worker} running a %%vast_run cell",
                                                 self.channel.exception_loader())}

    async def _cell_session_for(self, deadline: Deadline) -> tuple[Any, str]:
        """The SDK session pinning cells to one worker; (None, why) when Vast would not open one."""
        if self._cell_session is None or not getattr(self._cell_session, "open", False):
            assert self.sdk is not None
            endpoint = await self.sdk.routing_endpoint()
            remaining = max(1.0, min(deadline.remaining(), SESSION_OPEN_TIMEOUT))
            try:
                self._cell_session = await guarded("opening a cell session on a worker", asyncio.wait_for(
                    self.sdk.client.start_endpoint_session(endpoint, cost=1, lifetime=self.cell_session_lifetime,
                                                           timeout=remaining), remaining))
            except (VastApiError, asyncio.TimeoutError) as exc:
                why = str(exc) or f"no answer within {remaining:g} s"
                return None, (f"vastnb: could not pin %%vast_run cells to one worker ({why}); this cell runs on "
                              "whichever worker Vast routes it to.\n")
        return self._cell_session, ""

    def benchmark(self, function: str) -> "concurrent.futures.Future[dict[str, float]]":
        """Run ``function``'s benchmark again on one routed worker; ``{worker_id: score}``."""
        fn = self.spec.functions.get(function)
        if fn is None or fn.benchmark is None:
            raise ConfigurationError(f"{function!r} is not a remote function with a benchmark in deployment "
                                     f"{self.spec.name!r}.")
        return self._submit(self._benchmark(fn))

    async def _benchmark(self, fn: FunctionSpec) -> dict[str, float]:
        await self._ensure_deployed()
        assert fn.benchmark is not None
        frame = {"op": "bench", "fn": fn.hash, "payload": encode_frame(fn.benchmark, "the benchmark")}
        reply = await self.channel.send(frame, fn, DEFAULT_WORKLOAD, Deadline(self.cell_timeout), "the benchmark", 1)
        worker = str(reply.get("worker"))
        if not reply.get("ok"):
            raise build_remote_exception(reply["error"], f"Vast worker {worker} running the benchmark",
                                         self.channel.exception_loader())
        score = float(reply["value"]["score"])
        self.tracker.set_perf(worker, score)
        return {worker: score}

    # ================================================================== status
    def _worker_code_version(self, view: Any) -> str:
        wanted = {f.hash for f in self.spec.functions.values()}
        if wanted and wanted <= view.code:
            return self.spec.code_version
        return "stale" if view.code else ""

    def snapshot(self) -> DeploymentSnapshot:
        state = "running" if self.state == "starting" and self.tracker.serving() else self.state
        snap = self.tracker.snapshot(self.spec.name, state, self.spec.code_version)
        return dataclasses.replace(snap, endpoint_id=self.endpoint_id)

    # ================================================================== helpers
    def _submit(self, coro: Any) -> "concurrent.futures.Future[Any]":
        """Run ``coro`` on the loop as a tracked task (shutdown cancels it and fails its future clearly)."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if self._thread is None or self._closing:
            coro.close()
            future.set_exception(self._shut_down_error())
            return future
        self._thread.call_soon(self._spawn, future, coro)
        return future

    def _shut_down_error(self) -> DeploymentShutDown:
        return DeploymentShutDown(
            f"deployment {self.spec.name!r} is shut down; create a new vastnb.Deployment (or run %vast_deployment "
            "again) to deploy it again.")

