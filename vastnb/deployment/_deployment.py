"""``Deployment``: the official SDK's API, notebook-aware.

Declaring (``image``, ``remote``, ``context``, ``configure_autoscaling``) only
records and validates; nothing starts until ``ensure_ready()`` or the first
call. Code is captured by value when deployed, and captured again when the
notebook changes it: a redefined function is swapped on warm workers without a
restart, and only a changed context is re-entered.
"""

from __future__ import annotations

import asyncio
import ast
import concurrent.futures
import enum
import inspect
import os
import sys
import textwrap
import threading
import weakref
from typing import Any, Callable, TypeVar

from .._code import capture
from ..errors import ConfigurationError, DeploymentShutDown
from ..events import DeploymentSnapshot, EventBus
from ..runtime._handle import ContextSpec, FunctionSpec
from ._image import Image
from ._remote import RemoteFunction, RemoteOptions, validate_remote

__all__ = ["Deployment", "DeploymentState"]

T = TypeVar("T")
_LIVE: "weakref.WeakSet[Deployment]" = weakref.WeakSet()
BACKENDS = ("local", "vast")


class DeploymentState(str, enum.Enum):
    DECLARED = "declared"
    RUNNING = "running"
    SHUT_DOWN = "shut down"


class Deployment:
    """A Vast Deployment you can run from a notebook.

    ``backend="local"`` (the default) runs workers as processes on this machine;
    ``backend="vast"`` deploys to Vast Serverless through the official SDK.
    The constructor and methods take the same names and defaults as
    ``vastai.Deployment``.
    """

    def __init__(
        self,
        name: str | None = None,
        tag: str = "default",
        version_label: str | None = None,
        backend: str = "local",
        ttl: float | None = None,
        *,
        api_key: str | None = None,
        workers_per_gpu: int = 1,
        health_check_timeout: float = 30.0,
    ) -> None:
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigurationError(f"`name` must be a non-empty string or None. Instead got {name!r}.")
        if backend not in BACKENDS:
            raise ConfigurationError(f"`backend` must be one of {', '.join(map(repr, BACKENDS))}. Instead got {backend!r}.")
        if not isinstance(tag, str) or not tag:
            raise ConfigurationError(f"`tag` must be a non-empty string. Instead got {tag!r}.")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0):
            raise ConfigurationError(f"`ttl` must be a positive number of seconds or None. Instead got {ttl!r}.")
        if isinstance(workers_per_gpu, bool) or not isinstance(workers_per_gpu, int) or workers_per_gpu < 1:
            raise ConfigurationError(f"`workers_per_gpu` must be an integer >= 1. Instead got {workers_per_gpu!r}.")
        from ..autoscaling import AutoscalingSettings

        self.name = name or _default_name()
        self.tag = tag
        self.version_label = version_label
        self.backend = backend
        self.ttl = ttl
        self._api_key = api_key
        self.workers_per_gpu = workers_per_gpu
        self.health_check_timeout = health_check_timeout
        self._image: Image | None = None
        self._functions: dict[str, RemoteFunction] = {}
        self._contexts: dict[str, tuple[type, tuple, dict]] = {}
        self._autoscaling = AutoscalingSettings()
        self._autoscaler_instance: str | None = None  # configure_autoscaling(autoscaler_instance=...)
        self.events = EventBus()
        self._runtime: Any = None
        self._state = DeploymentState.DECLARED
        self._lock = threading.RLock()
        self._specs: dict[str, FunctionSpec] = {}
        self._context_specs: dict[str, ContextSpec] = {}
        self._stale = True
        self._registered_since_sync = False
        self._dashboard: Any = None
        self._stopped_runtime: Any = None
        self._benchmark_blob: bytes | None = None
        _LIVE.add(self)
        _watch_notebook(self)

    # ================================================================== declaring
    def image(self, from_image: str, storage: float = 50, **docker_login: str) -> Image:
        """Set the image workers run on; returns it for chaining ``require``, ``pip_install``, …

        ``storage`` is the disk in GB (the official SDK requires it; vastnb defaults to 50). For an image in a
        private registry pass the official SDK's ``docker_login_user``, ``docker_login_pass`` and
        ``docker_login_repo``: ``backend="vast"`` sends them with the deployment; the local backend needs none.
        """
        self._image = Image(from_image, storage, on_change=self._on_image_change, **docker_login)
        return self._image

    def remote(
        self,
        f: Callable[..., Any] | None = None,
        *,
        benchmark_dataset: list[dict] | None = None,
        benchmark_generator: Callable[[], dict] | None = None,
        benchmark_runs: int = 10,
        workload_calculator: Callable[..., float] | None = None,
        allow_parallel_requests: bool = False,
        max_queue_time: float = 30.0,
        retries: int = 2,
        timeout: float = 600.0,
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
        raise RuntimeError(
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
            calls = list(self._runtime.arrivals) if self._runtime is not None and hasattr(self._runtime, "arrivals") else []
            if not calls:
                raise ConfigurationError("simulate() with no load_trace replays this deployment's calls, but it has received none yet.")
            trace = LoadTrace.from_calls(calls, start=calls[0][0])
        elif isinstance(load_trace, LoadTrace):
            trace = load_trace
        else:
            trace = LoadTrace.from_rps([float(x) for x in load_trace])
        cap = self._runtime.machine_max_workers() if self._runtime is not None and hasattr(self._runtime, "machine_max_workers") else None
        return simulate(trace, candidate, perf_score=perf_score, cold_start_s=cold_start_s,
                        control_period_s=control_period_s, machine_max_workers=cap)

    @property
    def functions(self) -> dict[str, RemoteFunction]:
        return dict(self._functions)

    @property
    def contexts(self) -> dict[str, type]:
        return {n: c[0] for n, c in self._contexts.items()}

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

    def _start_and_wait(self, progress: bool | None) -> "tuple[concurrent.futures.Future[None], Callable[[], None]]":
        self._ensure_started()
        want = max(1, self._initial_target())
        fut = self._runtime.wait_ready(want)
        if progress is not False:
            return fut, _follow_ready(self, fut, want)
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
            self._capture()
            if self.backend == "vast":
                from ..backends.vast import VastBackend

                self._runtime = VastBackend(self)
            else:
                self._runtime = self._make_local_runtime()
            self._runtime.start()
            self._state = DeploymentState.RUNNING
            _register_atexit()

    def _make_local_runtime(self) -> Any:
        from ..backends.local import make_local_runtime

        return make_local_runtime(self)

    def _initial_target(self) -> int:
        s = self._autoscaling
        cap = self._runtime.machine_max_workers() if hasattr(self._runtime, "machine_max_workers") else None
        want = max(1, s.cold_workers)
        want = min(want, s.max_workers or want)
        return min(want, cap) if cap else want

    def shutdown(self, keep_endpoint: bool = False) -> None:
        """Stop every worker (their contexts exit, GPUs are freed). Calls still waiting fail clearly.

        On ``backend="vast"`` the Vast deployment and its endpoint are deleted too, unless
        ``keep_endpoint=True``: then they keep serving (and costing) after this kernel lets go,
        and a later ``Deployment`` with the same name and tag picks them up again.
        """
        if keep_endpoint and self.backend != "vast":
            raise ConfigurationError(
                f"shutdown(keep_endpoint=True): deployment {self.name!r} runs on the {self.backend} backend, whose "
                "workers live in this kernel and cannot outlive it. Call shutdown() without keep_endpoint."
            )
        with self._lock:
            runtime, self._runtime = self._runtime, None
            self._state = DeploymentState.SHUT_DOWN
        if runtime is not None:
            self._stopped_runtime = runtime  # views still show how the workers ended
            if keep_endpoint:
                runtime.shutdown(keep_endpoint=True)
            else:
                runtime.shutdown()

    # ================================================================== code sync
    def _check_declarations(self) -> None:
        """Checks that need the whole notebook: e.g. get_context of a class that was never registered."""
        for rf in self._functions.values():
            for name in _get_context_names(rf._fn):
                value = rf._fn.__globals__.get(name)
                if value is None and rf._fn.__closure__:
                    free = dict(zip(rf._fn.__code__.co_freevars, (c.cell_contents for c in rf._fn.__closure__)))
                    value = free.get(name)
                if not isinstance(value, type):
                    continue  # a parameter or local: checked on the worker when it runs
                qual = getattr(value, "__vastnb_context__", None) or getattr(value, "__qualname__", name)
                if qual not in self._contexts:
                    known = ", ".join(sorted(self._contexts)) or "none"
                    raise ConfigurationError(
                        f"remote function `{rf.name}` calls get_context({name}), but {name} is not a registered "
                        f"context of deployment {self.name!r} (registered: {known}). Decorate the class with "
                        "@app.context() (or define it in a %%vast_context cell)."
                    )

    def _capture(self) -> bool:
        """Capture every function and context by value; True when anything changed."""
        from ..worker.core import BenchmarkSpec

        with self._lock:
            specs = {}
            for name, rf in self._functions.items():
                o = rf.options
                specs[name] = FunctionSpec(
                    name=name, blob=capture(rf._fn, name), allow_parallel=o.allow_parallel_requests,
                    max_queue_time=float(o.max_queue_time), retries=o.retries, timeout=float(o.timeout),
                    workload_calculator=o.workload_calculator,
                )
            contexts = {}
            for name, (cls, args, kwargs) in self._contexts.items():
                blob = capture((cls, args, kwargs), name)
                contexts[name] = ContextSpec(name=name, hash=blob.hash, blob=blob.data, sources=blob.sources)
            changed = (
                {n: s.hash for n, s in specs.items()} != {n: s.hash for n, s in self._specs.items()}
                or {n: c.hash for n, c in contexts.items()} != {n: c.hash for n, c in self._context_specs.items()}
            )
            self._specs, self._context_specs = specs, contexts
            bench = next((rf for rf in self._functions.values() if rf.options.has_benchmark), None)
            self._benchmark_blob = None
            if bench is not None:
                o = bench.options
                import cloudpickle

                self._benchmark_blob = cloudpickle.dumps(BenchmarkSpec(
                    fn_hash=specs[bench.name].hash, dataset=o.benchmark_dataset, generator=o.benchmark_generator,
                    runs=o.benchmark_runs, parallel=o.allow_parallel_requests, workload_calculator=o.workload_calculator,
                ))
            self._stale = False
            self._registered_since_sync = False
            return changed

    def _sync(self, wait: bool = True) -> None:
        """Push changed code to running workers; with ``wait``, return once every worker has it."""
        if self._runtime is None:
            return
        self._check_declarations()
        if self._capture():
            fut = self._runtime.update(dict(self._specs), dict(self._context_specs), self._benchmark_blob)
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
            return self._specs[name]

    def _submit(self, name: str, payload: Any, workload: float, sink: Any, kind: str = "call") -> "concurrent.futures.Future[Any]":
        spec = self._specs[name]
        runtime = self._runtime
        if runtime is None:
            fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
            fut.set_exception(DeploymentShutDown(f"deployment {self.name!r} is shut down."))
            return fut
        return runtime.submit(spec, payload, workload, sink, kind=kind)

    def _cancel(self, future: "concurrent.futures.Future[Any]") -> None:
        if self._runtime is not None:
            self._runtime.cancel(future)

    def _on_image_change(self, what: str) -> str | None:
        if self._state == DeploymentState.RUNNING:
            return f"deployment {self.name!r} is running: new workers will use the new {what}; running workers keep theirs."
        return None

    # ================================================================== views
    def snapshot(self) -> DeploymentSnapshot:
        runtime = self._runtime or self._stopped_runtime
        if runtime is not None:
            return runtime.snapshot()
        from ..events import AutoscalerSnapshot

        s = self._autoscaling
        return DeploymentSnapshot(
            name=self.name, backend=self.backend, state=self.state,
            autoscaler=AutoscalerSnapshot(target_util=s.target_util, max_workers=s.max_workers),
        )

    def logs(self, worker: str | None = None) -> dict[str, list[str]]:
        runtime = self._runtime or self._stopped_runtime
        return runtime.logs(worker) if runtime is not None else {}

    def benchmark(self) -> dict[str, float]:
        """Re-run the benchmark on every serving worker; returns {worker id: perf score}."""
        if self._runtime is None or self._benchmark_blob is None:
            raise ConfigurationError(
                f"deployment {self.name!r} has no benchmark to run: give a remote function a "
                "benchmark_dataset or benchmark_generator, and start the deployment first."
            )
        result: dict[str, float] = self._runtime.benchmark(self._benchmark_blob).result()
        return result

    def dashboard(self) -> Any:
        """The live dashboard widget (built on first use and cached)."""
        if self._dashboard is None:
            from ..widgets import Dashboard

            self._dashboard = Dashboard(self)
        return self._dashboard

    def _progress(self, total: int, description: str, unit: str = "calls", initial: int = 0) -> Any:
        try:
            from ..widgets.progress import Progress
        except ImportError:
            return None
        try:
            return Progress(total, description, unit=unit, initial=initial)
        except Exception:  # noqa: BLE001 - progress is a nicety
            return None

    def _repr_html_(self) -> str:
        from ..widgets.dashboard import render_html

        return render_html(self.snapshot())


def _get_context_names(fn: Any) -> list[str]:
    """Names passed to ``<anything>.get_context(NAME)`` in a function's source."""
    try:
        src = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(src)
    except (OSError, TypeError, SyntaxError):
        return []
    out = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get_context"
                and len(node.args) == 1 and isinstance(node.args[0], ast.Name)):
            out.append(node.args[0].id)
    return out


def _default_name() -> str:
    session = os.environ.get("JPY_SESSION_NAME")
    if session:
        base = os.path.splitext(os.path.basename(session))[0]
        if base:
            return base
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path:
        return os.path.splitext(os.path.basename(path))[0]
    return "notebook"


def _follow_ready(app: Deployment, fut: "concurrent.futures.Future[None]", want: int) -> Callable[[], None]:
    """A workers-ready progress bar, kept up to date from the event stream; returns what closes it.

    The bar starts from the workers already serving (a second ``ensure_ready`` shows them at once).
    """
    from ..events import EventKind

    seen: set[str] = set()
    lock = threading.Lock()
    bar: Any = None
    finished = False

    def serving(worker_id: str) -> None:
        with lock:
            if finished or worker_id in seen or len(seen) >= want:
                return
            seen.add(worker_id)
            if bar is not None:
                bar.update(1)

    def on_event(event: Any) -> None:
        if event.kind == EventKind.WORKER and event.worker is not None and event.worker.state.serving:
            serving(event.worker.id)

    unsubscribe = app.events.subscribe(on_event)
    for worker in app.snapshot().workers:
        if worker.state.serving:
            serving(worker.id)
    with lock:
        bar = app._progress(want, f"{app.name}: workers ready", unit="workers", initial=len(seen))
    if bar is None:
        unsubscribe()
        return lambda: None

    def finish() -> None:
        nonlocal finished
        unsubscribe()
        ready = fut.done() and not fut.cancelled() and fut.exception() is None
        with lock:
            finished = True
            if ready and len(seen) < want:  # ready by the runtime's count; some events may still be on their way
                bar.update(want - len(seen))
        bar.close(failed=not ready)

    return finish


_ATEXIT = False


def _register_atexit() -> None:
    global _ATEXIT
    if _ATEXIT:
        return
    _ATEXIT = True
    import atexit

    def stop_all() -> None:
        for app in list(_LIVE):
            rt = app._runtime
            if rt is not None:
                try:
                    rt.kill_all_now()
                except Exception:  # noqa: BLE001
                    pass

    atexit.register(stop_all)


def _watch_notebook(app: Deployment) -> None:
    """In IPython, mark code stale after each cell and push new registrations before the cell ends."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001
        return
    if shell is None:
        return
    ref = weakref.ref(app)

    def post_run_cell(*_: Any) -> None:
        a = ref()
        if a is None:
            try:
                shell.events.unregister("post_run_cell", post_run_cell)
            except ValueError:
                pass
            return
        a._stale = True
        if a._registered_since_sync and a._state == DeploymentState.RUNNING:
            try:
                a.sync()
            except Exception as exc:  # noqa: BLE001 - report, never break the shell
                print(f"vastnb: could not update deployment {a.name!r}: {exc}", file=sys.stderr)

    shell.events.register("post_run_cell", post_run_cell)

