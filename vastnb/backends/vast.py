"""The Vast backend: a notebook's deployment on Vast Serverless, through the official ``vastai`` SDK.

``Deployment(..., backend="vast")`` builds a :class:`VastBackend`. On
:meth:`~VastBackend.start` it deploys vastnb's interactive-mode worker (see
:mod:`vastnb._vast_worker_module`) once through the SDK; the SDK's content hash
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
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import pickle
import time
from typing import Any, Callable

from .._remote_errors import build_remote_exception
from .._vast_worker_module import build_snapshot, contexts_identity, encode_frame, generate_module, stable_contexts
from ..errors import CallTimeout, ConfigurationError, DeploymentShutDown, VastnbError, WorkerStartError
from ..events import DeploymentSnapshot, Event, EventKind
from ..runtime._handle import ContextSpec, FunctionSpec
from ..runtime._loop import LoopThread
from ._vast_sdk import (
    DeployResult,
    OffersSummary,
    SdkSession,
    VastApiError,
    find_offers,
    guarded,
    redact,
    resolve_api_key,
    search_offers,
)
from ._vast_calls import Deadline, FrameChannel, SessionGone, write_output
from ._vast_status import StatusTracker

__all__ = ["VastApiError", "VastBackend"]

log = logging.getLogger("vastnb")
SESSION_OPEN_TIMEOUT = 60.0
SHIPPED_PACKAGES = ("vastnb", "cloudpickle")
_AUTOSCALING_KEYS = ("cold_workers", "max_workers", "min_load", "min_cold_load", "target_util", "cold_mult",
                     "max_queue_time", "target_queue_time", "inactivity_timeout")


class VastBackend:
    """One deployment on Vast. Options come from keyword arguments, else ``app.vast_options`` (a dict), else the
    environment (``VAST_URL`` for the console/API server, ``VASTNB_AUTOSCALER_URL`` for the autoscaler)."""

    def __init__(self, app: Any, **options: Any) -> None:
        opts = {**(getattr(app, "vast_options", None) or getattr(app, "_vast_options", None) or {}), **options}
        unknown = set(opts) - {"api_key", "webserver_url", "autoscaler_url", "autoscaler_instance", "ready_timeout",
                               "poll_interval", "max_poll_interval", "cell_session_lifetime", "cell_timeout",
                               "eager_code"}
        if unknown:
            raise ConfigurationError(f"unknown Vast backend option(s) {', '.join(sorted(unknown))}.")
        self.app = app
        self.events = app.events
        self.name: str = app.name
        self.webserver_url: str | None = opts.get("webserver_url") or os.environ.get("VAST_URL")
        self.autoscaler_url: str | None = opts.get("autoscaler_url") or os.environ.get("VASTNB_AUTOSCALER_URL")
        self.autoscaler_instance: str = (opts.get("autoscaler_instance") or getattr(app, "_autoscaler_instance", None)
                                         or "prod")
        self.ready_timeout = float(opts.get("ready_timeout", 1200.0))
        self.poll_interval = float(opts.get("poll_interval", 2.0))
        self.max_poll_interval = float(opts.get("max_poll_interval", 30.0))
        self.cell_session_lifetime = float(opts.get("cell_session_lifetime", 600.0))
        self.cell_timeout = float(opts.get("cell_timeout", 600.0))
        self.eager_code: bool = bool(opts.get("eager_code", True))
        self._explicit_key: str | None = opts.get("api_key") or getattr(app, "_api_key", None)
        self.state = "declared"
        self.deploy_result: DeployResult | None = None
        self.functions: dict[str, FunctionSpec] = dict(app._specs)
        self.contexts: dict[str, ContextSpec] = stable_contexts(app._context_specs)
        self.benchmark_blob: bytes | None = app._benchmark_blob
        self.tracker = StatusTracker(self.events)
        self.tracker.code_version = self._worker_code_version
        self.sdk: SdkSession | None = None
        self.channel = FrameChannel(self.tracker, eager_code=self.eager_code, on_activity=self._poke)
        self.channel.contexts = self.contexts
        self._thread: LoopThread | None = None
        self._deployed: concurrent.futures.Future[DeployResult] | None = None
        self._calls: dict[concurrent.futures.Future[Any], asyncio.Task[Any]] = {}
        self._background: list[asyncio.Task[Any]] = []
        self._cell_session: Any = None
        self._cell_worker: str | None = None
        self._nudge: asyncio.Event | None = None
        self._closing = False

    def __repr__(self) -> str:
        ids = f" endpoint={self.deploy_result.endpoint_id}" if self.deploy_result else ""
        return f"<VastBackend {self.name!r} state={self.state}{ids}>"

    # ================================================================== lifecycle
    def start(self) -> None:
        """Check the declarations, then deploy in the background (non-blocking)."""
        if self._thread is not None:
            return
        image = getattr(self.app, "_image", None)
        if image is None:
            raise ConfigurationError(
                f"deployment {self.name!r} has no image; backend='vast' needs one, e.g. "
                "app.image('vastai/pytorch:@vastai-automatic-tag', storage=16).")
        key = resolve_api_key(self._explicit_key)
        self.sdk = SdkSession(
            key, name=self.name, tag=getattr(self.app, "tag", "default"),
            version_label=getattr(self.app, "version_label", None), ttl=getattr(self.app, "ttl", None),
            webserver_url=self.webserver_url, autoscaler_url=self.autoscaler_url,
            autoscaler_instance=self.autoscaler_instance)
        self.channel.sdk = self.sdk
        self._thread = LoopThread(f"vastnb-vast-{self.name}")
        self.state = "starting"
        self._deployed = self._thread.submit(self._deploy(image))

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
        return None

    def wait_deployed(self, timeout: float | None = None) -> DeployResult:
        """Block until the deployment is registered (and uploaded if needed); what the SDK's server answered."""
        if self._deployed is None:
            raise RuntimeError("the Vast backend is not started")
        return self._deployed.result(timeout)

    async def _deploy(self, image: Any) -> DeployResult:
        assert self.sdk is not None
        self._nudge = asyncio.Event()
        await self.sdk.open()
        bench = pickle.loads(self.benchmark_blob) if self.benchmark_blob else None
        module = generate_module(
            self.name, build_snapshot(self.functions, self.contexts, self.benchmark_blob),
            contexts_id=contexts_identity(self.contexts), benchmark_runs=bench.runs if bench else 10,
            max_queue_time=max((f.max_queue_time for f in self.functions.values()), default=30.0))
        result = await self.sdk.deploy(module, image, autoscaling=self._autoscaling(), packages=SHIPPED_PACKAGES)
        self.deploy_result = result
        if result.uploaded:  # workers start from this upload, so they have these functions already
            self.channel.confirmed |= {f.hash for f in self.functions.values()}
        await self.sdk.routing_endpoint()
        self._background.append(asyncio.create_task(self._poll_loop()))
        ttl = getattr(self.app, "ttl", None)
        if ttl:
            self._background.append(asyncio.create_task(self._heartbeat_loop(float(ttl))))
        self.events.publish(Event(EventKind.CODE, time.time(), data={
            "version": self.code_version(), "functions": sorted(self.functions),
            "vast": {"deployment_id": result.deployment_id, "endpoint_id": result.endpoint_id,
                     "action": result.action, "uploaded": result.uploaded}}))
        return result

    def _autoscaling(self) -> dict[str, Any]:
        settings = getattr(self.app, "autoscaling", None)
        to_vast = getattr(settings, "to_vast_dict", None)
        raw = to_vast() if callable(to_vast) else {}
        return {k: v for k, v in dict(raw).items() if k in _AUTOSCALING_KEYS and v is not None}

    def wait_ready(self, min_ready: int = 1) -> "concurrent.futures.Future[None]":
        """Resolves when ``min_ready`` workers serve; fails after ``ready_timeout`` saying what Vast reports."""
        return self._submit(self._wait_ready(max(1, int(min_ready))))

    async def _wait_ready(self, min_ready: int) -> None:
        await self._ensure_deployed()
        deadline = Deadline(self.ready_timeout)
        if min_ready == 1:
            try:
                await self._hello(deadline)
                return
            except CallTimeout:
                pass
        while len(self.tracker.serving()) < min_ready and deadline.remaining() > 0:
            self._poke()
            await asyncio.sleep(1.0)
        if len(self.tracker.serving()) < min_ready:
            raise WorkerStartError(
                f"{min_ready} worker(s) of deployment {self.name!r} (Vast endpoint {self.endpoint_id}) did not "
                f"become ready within {self.ready_timeout:g} s. Vast reports: {self.tracker.summary()}. "
                "Cold starts pull the image and enter your contexts; see %vast_logs, or raise "
                "ready_timeout in vast_options.")
        if self._closing:
            raise self._shut_down_error()

    async def _hello(self, deadline: Deadline) -> dict[str, Any]:
        reply = await self.channel.exchange({"op": "hello"}, 1.0, deadline, "waiting for a ready worker", None)
        info = reply.get("value") or {}
        self.tracker.apply_reply(str(reply.get("worker")), reply.get("pid"), code=set(info.get("code", ())))
        self.channel.confirmed |= set(info.get("code", ()))
        return info

    async def _ensure_deployed(self) -> DeployResult:
        if self._closing:
            raise self._shut_down_error()
        assert self._deployed is not None
        return await asyncio.wrap_future(self._deployed)

    # ================================================================== calls
    def submit(self, spec: FunctionSpec, payload: Any, workload: float, sink: Any = None,
               kind: str = "call") -> "concurrent.futures.Future[Any]":
        """Run one call on a worker Vast routes it to."""
        if self._closing or self._thread is None:
            return self._submit(asyncio.sleep(0))
        data = payload.to_bytes() if hasattr(payload, "to_bytes") else bytes(payload)
        return self._submit(self._call(spec, data, workload, sink, kind))

    def cancel(self, future: "concurrent.futures.Future[Any]") -> None:
        if self._thread is not None:
            self._thread.call_soon(self._cancel, future)

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
        raise build_remote_exception(reply["error"], f"Vast worker {reply.get('worker')} running {what}")

    # ================================================================== code, cells, benchmark
    def update(self, functions: dict[str, FunctionSpec], contexts: dict[str, ContextSpec],
               benchmark: bytes | None) -> "concurrent.futures.Future[None]":
        """New code: each worker gets it with the first call that needs it (no restart, no redeploy)."""
        self.functions, self.contexts, self.benchmark_blob = dict(functions), stable_contexts(contexts), benchmark
        self.channel.contexts = self.contexts
        self.events.publish(Event(EventKind.CODE, time.time(), data={
            "version": self.code_version(), "functions": sorted(functions)}))
        for view in list(self.tracker.workers.values()):
            self.tracker._publish(view)
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        done.set_result(None)
        return done

    def run_cell(self, worker_ids: list[str] | None, message: dict[str, Any],
                 sink_for: Callable[[str], Any]) -> "concurrent.futures.Future[dict[str, Any]]":
        """Run a ``%%vast_run`` cell on the notebook's pinned worker (an SDK session keeps cells on one worker)."""
        return self._submit(self._run_cell(worker_ids, message, sink_for))

    async def _run_cell(self, worker_ids: list[str] | None, message: dict[str, Any],
                        sink_for: Callable[[str], Any]) -> dict[str, Any]:
        await self._ensure_deployed()
        deadline = Deadline(self.cell_timeout)
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
        return {worker: build_remote_exception(reply["error"], f"Vast worker {worker} running a %%vast_run cell")}

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

    def benchmark(self, blob: bytes) -> "concurrent.futures.Future[dict[str, float]]":
        """Run the benchmark again on one routed worker; ``{worker_id: score}``."""
        return self._submit(self._benchmark(blob))

    async def _benchmark(self, blob: bytes) -> dict[str, float]:
        await self._ensure_deployed()
        fn_hash = pickle.loads(blob).fn_hash
        spec = next((f for f in self.functions.values() if f.hash == fn_hash), None)
        frame = {"op": "bench", "fn": fn_hash, "payload": blob}
        reply = await self.channel.send(frame, spec, 100.0, Deadline(self.cell_timeout), "the benchmark", 1)
        worker = str(reply.get("worker"))
        if not reply.get("ok"):
            raise build_remote_exception(reply["error"], f"Vast worker {worker} running the benchmark")
        score = float(reply["value"]["score"])
        self.tracker.set_perf(worker, score)
        return {worker: score}

    # ================================================================== status
    def code_version(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self.functions):
            h.update(self.functions[name].hash.encode())
        for name in sorted(self.contexts):
            h.update(self.contexts[name].hash.encode())
        return h.hexdigest()[:8]

    def _worker_code_version(self, view: Any) -> str:
        wanted = {f.hash for f in self.functions.values()}
        if wanted and wanted <= view.code:
            return self.code_version()
        return "stale" if view.code else ""

    def snapshot(self) -> DeploymentSnapshot:
        state = "running" if self.state == "starting" and self.tracker.serving() else self.state
        return self.tracker.snapshot(self.name, state, self.code_version())

    def cost_per_hour(self) -> float:
        """What the endpoint's live workers cost per hour (the prices Vast reports)."""
        return self.tracker.cost_per_hour()

    def offers(self, query: Any = None, *, limit: int = 256) -> OffersSummary:
        """How many Vast offers match ``query`` (default: the image's requirement) and the cheapest price."""
        query, image = self._offer_query(query)
        return search_offers(query, api_key=self._key(), webserver_url=self.webserver_url,
                             storage=getattr(image, "_storage", None), limit=limit)

    def find_offers(self, query: Any = None, *, limit: int = 256) -> list[Any]:
        """The SDK's ``Offer`` objects for ``query``, cheapest first (a ``GpuPicker(offers=...)`` provider)."""
        query, image = self._offer_query(query)
        return find_offers(query, api_key=self._key(), webserver_url=self.webserver_url,
                           storage=getattr(image, "_storage", None), limit=limit)

    def _offer_query(self, query: Any) -> tuple[Any, Any]:
        image = getattr(self.app, "_image", None)
        if query is None:
            if image is None:
                raise ConfigurationError("offers() needs a query, or an image with requirements (app.image(...)).")
            query = image.requirement
        return query, image

    def _key(self) -> str:
        return self.sdk.api_key if self.sdk is not None else resolve_api_key(self._explicit_key)

    def logs(self, worker: str | None = None) -> dict[str, list[str]]:
        """Vast's endpoint and workergroup logs (lines mentioning ``worker`` when given), through the SDK."""
        if self.sdk is None or self.deploy_result is None:
            return {}
        sdk, result = self.sdk.vast(), self.deploy_result
        out: dict[str, list[str]] = {}
        sources: list[tuple[str, Callable[[], Any]]] = [
            (f"endpoint {result.endpoint_id}", lambda: sdk.get_endpt_logs(result.endpoint_id, tail=500))]
        if result.workergroup_id:
            wg = result.workergroup_id
            sources.append((f"workergroup {wg}", lambda: sdk.get_wrkgrp_logs(wg, tail=500)))
        for label, fetch in sources:
            err: VastApiError | None = None
            try:
                lines = _log_lines(fetch())
            except Exception as exc:  # noqa: BLE001
                err = VastApiError(redact(f"reading the {label} logs failed: {exc}"))
            if err is not None:
                raise err
            out[label] = [redact(line) for line in lines if worker is None or worker in line]
        return out

    async def _poll_loop(self) -> None:
        assert self.sdk is not None and self._nudge is not None
        interval, failures, n = self.poll_interval, 0, 0
        while not self._closing:
            try:
                endpoint = (await self.sdk.endpoint_data()).config if n % 5 == 0 else None
                changed = self.tracker.apply_poll(await self.sdk.workers(), endpoint)
                failures = 0
            except VastnbError as exc:
                failures += 1
                changed = False
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("vastnb: polling Vast for %r failed (%d time(s)): %s", self.name, failures, exc)
            n += 1
            interval = self.poll_interval if changed else min(self.max_poll_interval, interval * 1.5)
            self._nudge.clear()
            try:
                await asyncio.wait_for(self._nudge.wait(), interval)
                interval = self.poll_interval
            except asyncio.TimeoutError:
                pass

    def _poke(self) -> None:
        """Activity: poll soon (the backoff is for idle endpoints)."""
        if self._nudge is not None:
            self._nudge.set()

    async def _heartbeat_loop(self, ttl: float) -> None:
        assert self.sdk is not None
        interval = min(ttl / 2, 60.0)
        while not self._closing:
            try:
                await self.sdk.heartbeat()
            except VastnbError as exc:
                log.warning("vastnb: %s (the deployment is deleted by Vast %g s after the last heartbeat)", exc, ttl)
            await asyncio.sleep(interval)

    # ================================================================== teardown
    def shutdown(self, keep_endpoint: bool = False, timeout: float = 30.0) -> None:
        """Stop polling, heartbeats and calls; delete the deployment and its endpoint (unless ``keep_endpoint``).

        Raises :class:`VastApiError` (after stopping everything local) when Vast could not be told to
        delete the endpoint, since it may go on costing money."""
        if self._thread is None or self.state == "shut down":
            self.state = "shut down"
            return
        self._closing = True
        self.state = "shutting down"
        thread = self._thread
        if self._deployed is not None and not self._deployed.done():
            try:  # a deploy in flight: let it finish (bounded) so what it registered is known and torn down
                self._deployed.result(timeout)
            except BaseException:  # noqa: BLE001 - its error was (or will be) reported to whoever waited for it
                pass
        errors: list[str] = []
        try:
            _run(thread, self._stop_tasks(), timeout)
        except Exception as exc:  # noqa: BLE001
            errors.append(redact(exc))
        managed = self.sdk.managed if self.sdk is not None else None
        if managed is not None and not keep_endpoint:
            errors += self._teardown(thread, timeout)
        try:
            _run(thread, self._close_clients(), timeout)
        except Exception as exc:  # noqa: BLE001
            errors.append(redact(exc))
        thread.stop()
        self.state = "shut down"
        self.events.publish(Event(EventKind.SHUTDOWN, time.time()))
        if errors:
            ids = f"endpoint {managed.endpoint_id} (deployment {managed.id})" if managed else "the endpoint"
            raise VastApiError(
                f"could not tear down {ids} of {self.name!r}: {'; '.join(errors)}. It may still be running and "
                f"cost money: delete it with `vastai delete endpoint {managed.endpoint_id if managed else '<id>'}` "
                "or in the console (https://cloud.vast.ai/serverless/).")

    def _teardown(self, thread: LoopThread, timeout: float) -> list[str]:
        assert self.sdk is not None and self.sdk.managed is not None
        errors = []
        try:
            self.sdk.delete_deployment()
        except Exception as exc:  # noqa: BLE001
            if "404" not in str(exc):
                errors.append(redact(f"deleting deployment {self.sdk.managed.id}: {exc}"))
        try:
            _run(thread, self.sdk.delete_endpoint(), timeout)
        except Exception as exc:  # noqa: BLE001
            if "404" not in str(exc):
                errors.append(redact(exc))
        return errors

    async def _stop_tasks(self) -> None:
        tasks = list(self._background) + list(self._calls.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        session, self._cell_session = self._cell_session, None
        if session is not None:
            try:
                await asyncio.wait_for(session.close(), 5.0)
            except Exception:  # noqa: BLE001 - it expires on its own
                pass

    async def _close_clients(self) -> None:
        if self.sdk is not None:
            await self.sdk.close()
        await asyncio.get_running_loop().shutdown_default_executor()

    def kill_all_now(self) -> None:
        """At interpreter exit: tear the endpoint down quickly, never raising."""
        try:
            self.shutdown(timeout=5.0)
        except Exception:  # noqa: BLE001
            pass

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
            f"deployment {self.name!r} is shut down; create a new vastnb.Deployment (or run %vast_deployment "
            "again) to deploy it again.")


def _run(thread: LoopThread, coro: Any, timeout: float) -> Any:
    """Run ``coro`` on the backend's loop for at most ``timeout`` seconds (then cancel it, and say so)."""
    future = thread.submit(coro)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        try:
            future.result(2.0)
        except BaseException:  # noqa: BLE001 - cancelled, as asked
            pass
        raise TimeoutError(f"Vast did not answer within {timeout:g} s") from None


def _log_lines(data: Any) -> list[str]:
    """Lines from the SDK's log reply (keys info0, info1, trace, debug; strings or lists)."""
    if isinstance(data, dict):
        for key in ("info1", "info0", "trace", "debug", "logs", "error"):
            if data.get(key):
                return _log_lines(data[key])
        return []
    if isinstance(data, (list, tuple)):
        return [str(x) for x in data]
    return str(data or "").splitlines()

