"""``Deployment``: the official SDK's API, notebook-aware.

Declaring (``image``, ``remote``, ``context``, ``configure_autoscaling``) only
records and validates; nothing starts until ``ensure_ready()`` or the first
call. Code is captured by value when deployed, and captured again when the
notebook changes it: a redefined function is swapped on warm workers without a
restart, and only a changed context is re-entered.

A deployment hands its backend one frozen :class:`~vastnb.spec.DeploymentSpec`
(:meth:`Deployment.spec`) through the :class:`~vastnb.backends.Backend` protocol
and reads everything back as snapshots and events.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import sys
import threading
from collections.abc import Sequence
from typing import Any, Callable, TypeVar

from ..backends import BACKENDS, Backend, CallRequest, CellRequest, OutputSink, create_backend
from ..errors import ConfigurationError, DeploymentShutDown, NotOnWorker
from ..events import AutoscalerSnapshot, DeploymentSnapshot
from ..spec import DEFAULT_BENCHMARK_RUNS, DEFAULT_MAX_QUEUE_TIME, DEFAULT_RETRIES, DEFAULT_TIMEOUT, DeploymentSpec, FunctionSpec
from . import _session
from ._capture import build_spec, check_benchmark, check_get_context
from ._clients import SdkClients
from ._image import Image
from ._remote import RemoteFunction, RemoteOptions, validate_remote
from ._views import progress, views

__all__ = ["Deployment", "DeploymentState"]

T = TypeVar("T")


class DeploymentState(str, enum.Enum):
    DECLARED = "declared"
    RUNNING = "running"
    SHUT_DOWN = "shut down"


class Deployment(SdkClients):
    """A Vast Deployment you can run from a notebook.

    ``backend="local"`` (the default) runs workers as processes on this machine;
    ``backend="vast"`` deploys to Vast Serverless through the official SDK; a
    :class:`~vastnb.backends.Backend` instance (e.g. ``VastBackend(ready_timeout=...)``)
    brings its own options. The constructor and methods take the same names and
    defaults as ``vastai.Deployment``; ``workers_per_gpu`` and ``health_check_timeout``
    are the local backend's. Without a ``name`` it is named, as in the SDK, after the module
    that creates it (``deploy.py`` -> ``"deploy"``; a notebook or script: its file name).
    """

    def __init__(
        self,
        name: str | None = None,
        tag: str = "default",
        version_label: str | None = None,
        backend: str | Backend = "local",
        ttl: float | None = None,
        *,
        api_key: str | None = None,
        webserver_url: str | None = None,
        autoscaler_url: str | None = None,
        workers_per_gpu: int = 1,
        health_check_timeout: float = 30.0,
    ) -> None:
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigurationError(f"`name` must be a non-empty string or None. Instead got {name!r}.")
        if not isinstance(tag, str) or not tag:
            raise ConfigurationError(f"`tag` must be a non-empty string. Instead got {tag!r}.")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0):
            raise ConfigurationError(f"`ttl` must be a positive number of seconds or None. Instead got {ttl!r}.")
        from ..autoscaling import AutoscalingSettings

        if isinstance(backend, str):
            if backend not in BACKENDS:
                raise ConfigurationError(
                    f"`backend` must be one of {', '.join(map(repr, BACKENDS))} or a Backend instance. "
                    f"Instead got {backend!r}.")
            options: dict[str, Any] = (
                {"workers_per_gpu": workers_per_gpu, "health_check_timeout": health_check_timeout}
                if backend == "local" else
                {"api_key": api_key, "webserver_url": webserver_url, "autoscaler_url": autoscaler_url})
            self._backend: Backend = create_backend(backend, **options)
        elif isinstance(backend, Backend):
            self._backend = backend
        else:
            raise ConfigurationError(
                f"`backend` must be one of {', '.join(map(repr, BACKENDS))} or a Backend instance. Instead got {backend!r}.")
        self.name = name or _session.default_name(*_session.calling_module())
        self.tag = tag
        self.version_label = version_label
        self.ttl = ttl
        self._image: Image | None = None
        self._functions: dict[str, RemoteFunction] = {}
        self._contexts: dict[str, tuple[type, tuple, dict]] = {}
        self._autoscaling = AutoscalingSettings()
        self._autoscaler_instance: str | None = None  # configure_autoscaling(autoscaler_instance=...)
        self._state = DeploymentState.DECLARED
        self._lock = threading.RLock()
        self._spec: DeploymentSpec | None = None
        self._stale = True
        self._registered_since_sync = False
        self._dashboard: Any = None
        self._benchmark_noted = False
        _session.watch_notebook(self)

    @property
    def backend(self) -> str:
        """The backend's name: ``"local"`` or ``"vast"``."""
        return self._backend.name

    @property
    def events(self) -> Any:
        """The :class:`~vastnb.events.EventBus` every state change is published on."""
        return self._backend.events

    # ================================================================== declaring
    def image(self, from_image: str, storage: float = 50, **docker_login: str) -> Image:
        """Set the image workers run on; returns it for chaining ``require``, ``pip_install``, …

        ``storage`` is the disk in GB (the official SDK requires it; vastnb defaults to 50). For an image in a
        private registry pass the official SDK's ``docker_login_user``, ``docker_login_pass`` and
        ``docker_login_repo``: ``backend="vast"`` sends them with the deployment; the local backend needs none.
        """
        self._image = Image(from_image, storage, on_change=self._on_image_change, **docker_login)
        return self._image

    @property
    def current_image(self) -> Image | None:
        """The image declared with :meth:`image` (None before), e.g. for the GPU picker."""
        return self._image

    def remote(
        self,
        f: Callable[..., Any] | None = None,
        *,
        benchmark_dataset: list[dict] | None = None,
        benchmark_generator: Callable[[], dict] | None = None,
        benchmark_runs: int = DEFAULT_BENCHMARK_RUNS,
        workload_calculator: Callable[..., float] | None = None,
        allow_parallel_requests: bool = False,
        max_queue_time: float = DEFAULT_MAX_QUEUE_TIME,
        retries: int = DEFAULT_RETRIES,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Any:
        """Mark an ``async def`` to run on workers. Same parameters and defaults as the official SDK,
        plus ``retries`` (re-runs after a worker dies; 0 for non-idempotent code) and ``timeout`` (seconds)."""
        opts = RemoteOptions(
            benchmark_dataset=benchmark_dataset, benchmark_generator=benchmark_generator,
            benchmark_runs=benchmark_runs, workload_calculator=workload_calculator,
            allow_parallel_requests=allow_parallel_requests, max_queue_time=max_queue_time,
            retries=retries, timeout=timeout,
        )

        def decorator(fn: Callable[..., Any]) -> RemoteFunction:
            if isinstance(fn, RemoteFunction):
                fn = fn._fn
            validate_remote(fn, opts)
            rf = RemoteFunction(self, fn, opts)
            with self._lock:
                self._functions[fn.__name__] = rf
                self._stale = True
                self._registered_since_sync = True
            return rf

        return decorator(f) if f is not None else decorator

    def context(self, *args: Any, **kwargs: Any) -> Callable[[type[T]], type[T]]:
        """Register an async context manager class, entered once per worker and kept warm.
        Arguments are passed to the class's constructor."""
        import inspect

        def decorator(cls: type[T]) -> type[T]:
            if not isinstance(cls, type):
                raise ConfigurationError(f"@app.context() decorates a class. Instead got {cls!r}.")
            missing = [m for m in ("__aenter__", "__aexit__") if not callable(getattr(cls, m, None))]
            if missing:
                raise ConfigurationError(
                    f"context class `{cls.__name__}` lacks {' and '.join(missing)}: a context is an async "
                    "context manager. Define `async def __aenter__(self): ...; return self` and "
                    "`async def __aexit__(self, *exc): ...`."
                )
            try:
                inspect.signature(cls).bind(*args, **kwargs)
            except TypeError as exc:
                raise ConfigurationError(
                    f"@app.context(...) arguments do not fit `{cls.__name__}`'s constructor: {exc}."
                ) from None
            with self._lock:
                key = cls.__qualname__
                cls.__vastnb_context__ = key  # type: ignore[attr-defined]  # travels with the class, names it on workers
                self._contexts[key] = (cls, args, kwargs)
                self._stale = True
                self._registered_since_sync = True
            return cls

        return decorator

    def get_context(self, context_class: type[T]) -> T:
        """Inside remote code, the worker's entered context. In the notebook there is none to return."""
        name = getattr(context_class, "__vastnb_context__", None) or getattr(context_class, "__qualname__", repr(context_class))
        if name not in self._contexts:
            known = ", ".join(sorted(self._contexts)) or "none"
            raise ConfigurationError(
                f"get_context({name}): {name} is not a registered context of deployment {self.name!r} "
                f"(registered: {known}). Decorate it with @app.context()."
            )
        raise NotOnWorker(
            f"get_context({name}) returns the context entered on a worker; call it inside a remote function "
            "(or a %%vast_run cell), not in the notebook itself."
        )

    def configure_autoscaling(self, **kwargs: Any) -> None:
        """Set autoscaling parameters (Vast's names); later calls update earlier ones.

        ``autoscaler_instance`` (an official SDK option naming Vast's autoscaler) is used by
        the Vast backend, and has no meaning locally."""
        instance = kwargs.pop("autoscaler_instance", None)
        self._autoscaling = self._autoscaling.merged(**kwargs)
        if instance is not None:
            self._autoscaler_instance = str(instance)
        self._stale = True

    @property
    def autoscaling(self) -> Any:
        return self._autoscaling

    def simulate(self, load_trace: Any = None, *, perf_score: float | None = None, cold_start_s: float | None = None,
                 control_period_s: float = 1.0, **settings: Any) -> Any:
        """What-if: replay a load trace against candidate autoscaling settings, with a simulated clock.

        ``load_trace`` is a :class:`vastnb.autoscaling.LoadTrace`, a list of requests per
        second (one per second), or None for the calls this deployment really received.
        ``settings`` override this deployment's autoscaling settings (nothing is applied).
        Perf score and cold-start time default to what this deployment's workers measured.
        Returns a :class:`vastnb.autoscaling.SimulationResult` (timeline, decisions, figures)."""
        from ..autoscaling import LoadTrace, simulate

        candidate = self._autoscaling.merged(**settings)
        workers = [w for w in self.snapshot().workers if w.perf_score]
        if perf_score is None:
            if not workers:
                raise ConfigurationError(
                    "simulate() needs a perf score: no worker of this deployment has benchmarked yet. "
                    "Run app.ensure_ready() first, or pass perf_score=<workload units per second>."
                )
            perf_score = sum(w.perf_score or 0.0 for w in workers) / len(workers)
        if cold_start_s is None:
            starts = [sum(s for _, s in w.phases) for w in workers if w.phases]
            cold_start_s = sum(starts) / len(starts) if starts else 1.0
        if load_trace is None:
            calls = self._backend.arrivals() if self._state != DeploymentState.DECLARED else []
            if not calls:
                raise ConfigurationError("simulate() with no load_trace replays this deployment's calls, but it has received none yet.")
            trace = LoadTrace.from_calls(calls, start=calls[0][0])
        elif isinstance(load_trace, LoadTrace):
            trace = load_trace
        else:
            trace = LoadTrace.from_rps([float(x) for x in load_trace])
        return simulate(trace, candidate, perf_score=perf_score, cold_start_s=cold_start_s,
                        control_period_s=control_period_s, machine_max_workers=self._backend.machine_max_workers())

    @property
    def functions(self) -> dict[str, RemoteFunction]:
        return dict(self._functions)

    @property
    def contexts(self) -> dict[str, type]:
        return {n: c[0] for n, c in self._contexts.items()}

    def context_arguments(self, name: str) -> tuple[tuple, dict]:
        """The constructor arguments a context was registered with: ``(args, kwargs)``."""
        _cls, args, kwargs = self._contexts[name]
        return args, dict(kwargs)

    def __reduce__(self) -> Any:
        # remote code that refers to `app` gets the worker's stand-in
        from ..worker.core import worker_deployment

        return (worker_deployment, (self.name,))

    def __repr__(self) -> str:
        return (f"<vastnb.Deployment {self.name!r} backend={self.backend} state={self.state} "
                f"functions={sorted(self._functions)} contexts={sorted(self._contexts)}>")

    # ================================================================== lifecycle
    @property
    def state(self) -> str:
        return self._state.value

    def ensure_ready(self, *, progress: bool | None = None) -> None:
        """Start the deployment (if needed) and block until its workers are ready.

        Safe inside Jupyter's running event loop: the runtime runs on its own thread."""
        fut, finish = self._start_and_wait(progress)
        try:
            fut.result()
        finally:
            finish()  # the bar's last line is drawn before ensure_ready returns

    async def async_ensure_ready(self) -> None:
        await asyncio.wrap_future(self._start_and_wait(False)[0])

    def _start_and_wait(self, show: bool | None) -> "tuple[concurrent.futures.Future[None], Callable[[], None]]":
        self._ensure_started()
        want = max(1, self._backend.ready_target())
        fut = self._backend.wait_ready(want)
        if show is not False:
            return fut, _session.follow_ready(self, fut, want)
        return fut, lambda: None

    def _ensure_started(self) -> None:
        with self._lock:
            if self._state == DeploymentState.SHUT_DOWN:
                raise DeploymentShutDown(
                    f"deployment {self.name!r} is shut down; create a new vastnb.Deployment to start workers again."
                )
            if self._state == DeploymentState.RUNNING:
                self._sync()
                return
            self._check_declarations()
            spec = self._capture()
            self._check_benchmark(spec)
            self._backend.start(spec)
            self._state = DeploymentState.RUNNING
            _session.register_atexit(self)

    def shutdown(self, keep_endpoint: bool = False) -> None:
        """Stop every worker (their contexts exit, GPUs are freed). Calls still waiting fail clearly.

        On ``backend="vast"`` the Vast deployment and its endpoint are deleted too, unless
        ``keep_endpoint=True``: then they keep serving (and costing) after this kernel lets go,
        and a later ``Deployment`` with the same name and tag picks them up again.
        """
        try:
            self._backend.shutdown(keep_endpoint=keep_endpoint)
        except ConfigurationError:
            raise  # refused before anything was stopped: the deployment is as it was
        except BaseException:
            self._state = DeploymentState.SHUT_DOWN  # stopped here, though the backend reports a problem
            raise
        self._state = DeploymentState.SHUT_DOWN

    # ================================================================== code sync
    def _check_declarations(self) -> None:
        """Checks that need the whole notebook: e.g. get_context of a class that was never registered."""
        check_get_context(self.name, [(rf.name, rf._fn) for rf in self._functions.values()], self._contexts)

    def _check_benchmark(self, spec: DeploymentSpec) -> None:
        """A backend that requires a benchmark (Vast) refuses a spec without one; locally, a one-line notice."""
        notice = check_benchmark(spec, required=self._backend.requires_benchmark)
        if notice is not None and not self._benchmark_noted:
            self._benchmark_noted = True
            print(f"vastnb: {notice}", file=sys.stderr)

    def _capture(self) -> DeploymentSpec:
        """Capture every function and context by value into a new spec."""
        with self._lock:
            self._spec = build_spec(
                name=self.name, tag=self.tag, version_label=self.version_label, ttl=self.ttl,
                functions={n: (rf._fn, rf.options) for n, rf in self._functions.items()}, contexts=self._contexts,
                image=self._image.spec() if self._image is not None else None,
                autoscaling=self._autoscaling, autoscaler_instance=self._autoscaler_instance,
            )
            self._stale = False
            self._registered_since_sync = False
            return self._spec

    def spec(self) -> DeploymentSpec:
        """The deployment as its backend sees it: every function and context captured now, frozen."""
        with self._lock:
            self._check_declarations()
            return self._capture()

    def _sync(self, wait: bool = True) -> None:
        """Push changed code to running workers; with ``wait``, return once every worker has it."""
        if self._state != DeploymentState.RUNNING:
            return
        self._check_declarations()
        before = self._spec
        spec = self._capture()
        if before is None or spec.code_version != before.code_version or spec.autoscaling != before.autoscaling:
            try:
                self._check_benchmark(spec)
            except ConfigurationError:
                self._spec, self._stale = before, True  # the workers keep what they run
                raise
            fut = self._backend.update(spec)
            if wait:
                fut.result()

    def sync(self) -> None:
        """Capture the notebook's current code and make every running worker use it (blocking)."""
        with self._lock:
            if self._state == DeploymentState.RUNNING:
                self._sync()
            else:
                self._check_declarations()
                self._capture()

    def _function_spec(self, name: str) -> FunctionSpec:
        with self._lock:
            if self._state == DeploymentState.DECLARED:
                self._ensure_started()
            elif self._state == DeploymentState.SHUT_DOWN:
                raise DeploymentShutDown(
                    f"deployment {self.name!r} is shut down; create a new vastnb.Deployment to call {name}() again."
                )
            elif self._stale:
                self._sync()
            assert self._spec is not None
            return self._spec.functions[name]

    def _submit_many(self, requests: "list[CallRequest]") -> "list[concurrent.futures.Future[Any]]":
        if self._state != DeploymentState.SHUT_DOWN:
            return self._backend.submit_many(requests)
        futures: list[concurrent.futures.Future[Any]] = [concurrent.futures.Future() for _ in requests]
        for fut in futures:
            fut.set_exception(DeploymentShutDown(f"deployment {self.name!r} is shut down."))
        return futures

    def _call_direct(self, request: CallRequest) -> tuple[bool, Any]:
        return self._backend.call_direct(request) if self._state == DeploymentState.RUNNING else (False, None)

    async def _call_direct_async(self, request: CallRequest) -> tuple[bool, Any]:
        if self._state != DeploymentState.RUNNING:
            return False, None
        return await self._backend.call_direct_async(request)

    def _cancel_many(self, futures: "list[concurrent.futures.Future[Any]]") -> None:
        """Cancel calls (on their workers too); those already resolved are left alone, those cancelled by
        their caller (``future.cancel()``) leave the queue."""
        if self._state == DeploymentState.RUNNING:
            self._backend.cancel_many([f for f in futures if not f.done() or f.cancelled()])

    def _on_image_change(self, what: str) -> str | None:
        self._stale = True
        if self._state == DeploymentState.RUNNING:
            return f"deployment {self.name!r} is running: new workers will use the new {what}; running workers keep theirs."
        return None

    # ================================================================== running things on workers
    def run_cell(self, source: str, *, workers: Sequence[str] | None = None, push: dict[str, Any] | None = None,
                 pull: Sequence[str] = (), filename: str = "<vast_run>",
                 output: Callable[[str], OutputSink | None] | None = None,
                 wait: bool = True) -> Any:
        """Run ``source`` on ``workers`` (None: one ready worker), in the namespace each worker keeps across cells.

        ``push`` copies notebook values there first; ``pull`` names values to bring back. ``output(worker_id)``
        gives the sink for that worker's ``print`` output. Returns ``{worker id: {"repr": repr of the last
        expression or None, "pulled": {...}} or the exception}``; with ``wait=False`` a future of it."""
        self._ensure_started()
        cell = CellRequest(source=source, filename=filename, push=dict(push or {}), pull=list(pull))
        future = self._backend.run_cell(cell, list(workers) if workers is not None else None,
                                        output or (lambda _worker: None))
        return future.result() if wait else future

    def benchmark(self, function: str | None = None) -> dict[str, float]:
        """Run a function's benchmark again on every serving worker; returns ``{worker id: perf score}``.

        ``function`` defaults to the deployment's benchmark function (the first with a benchmark)."""
        name = self.benchmark_function(function)
        self._ensure_started()
        result: dict[str, float] = self._backend.benchmark(name).result()
        return result

    def benchmark_function(self, function: str | None = None) -> str:
        """The name of the function :meth:`benchmark` runs; a clear error when it has no benchmark."""
        if function is None:
            chosen = next((n for n, rf in self._functions.items() if rf.options.has_benchmark), None)
            if chosen is None:
                raise ConfigurationError(
                    f"no remote function of deployment {self.name!r} has a benchmark; give one with "
                    "%%vast_remote --benchmark-dataset EXPR (or benchmark_dataset=... in @app.remote).")
            return chosen
        rf = self._functions.get(function)
        if rf is None:
            raise ConfigurationError(
                f"{function!r} is not a remote function of deployment {self.name!r} "
                f"(remote functions: {', '.join(sorted(self._functions)) or 'none'}).")
        if not rf.options.has_benchmark:
            raise ConfigurationError(
                f"`{function}` has no benchmark; give it one with %%vast_remote --benchmark-dataset EXPR "
                "(or benchmark_dataset=... in @app.remote).")
        return function

    # ================================================================== views
    def snapshot(self) -> DeploymentSnapshot:
        if self._state != DeploymentState.DECLARED:
            return self._backend.snapshot()
        s = self._autoscaling
        return DeploymentSnapshot(
            name=self.name, backend=self.backend, state=self.state,
            autoscaler=AutoscalerSnapshot(target_util=s.target_util, max_workers=s.max_workers),
        )

    def logs(self, worker: str | None = None) -> dict[str, list[str]]:
        return self._backend.logs(worker) if self._state != DeploymentState.DECLARED else {}

    def dashboard(self) -> Any:
        """The live dashboard widget (built on first use and cached)."""
        if self._dashboard is None:
            module = views()
            if module is None:
                raise ImportError("the dashboard needs vastnb.widgets (ipywidgets); install ipywidgets")
            self._dashboard = module.Dashboard(self)
        return self._dashboard

    def _progress(self, total: int, description: str, unit: str = "calls", initial: int = 0) -> Any:
        return progress(total, description, unit=unit, initial=initial)

    def _repr_html_(self) -> str:
        module = views()
        return module.render_html(self.snapshot()) if module is not None else f"<pre>{self!r}</pre>"
