"""What a worker does, independent of how requests reach it.

A :class:`WorkerCore` holds the code it was given (by content hash), the entered
contexts, and the namespace shared by ``%%vast_run`` cells. It enters contexts
concurrently (as the official worker does), runs the benchmark the official way
(one warm-up call, then ``benchmark_runs`` timed runs of 10 concurrent requests
when parallel requests are allowed, else 1: 1 + runs x 10 calls, or 1 + runs;
score = best run's workload units per second; inputs in the order of
:class:`BenchmarkInputs`), runs calls (serial functions one at a time in
arrival order, parallel ones as tasks), and captures each call's ``print``
output separately, even when calls overlap.
"""

from __future__ import annotations

import ast
import asyncio
import contextvars
import inspect
import linecache
import pickle
import sys
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from ..errors import ContextNotFound
from ..spec import BenchmarkSpec, ContextSpec, workload_of
from ..wire.messages import InstallFunction

__all__ = ["WorkerCore", "current_core"]

Sink = Callable[[str, str], None]
_sink: contextvars.ContextVar[Sink | None] = contextvars.ContextVar("vastnb_sink", default=None)
_core: "WorkerCore | None" = None


def current_core() -> "WorkerCore":
    if _core is None:
        raise RuntimeError("not running on a vastnb worker")
    return _core


class _RoutedStream:
    """Stands in for sys.stdout/sys.stderr: writes go to the current call's sink, else to the log."""

    def __init__(self, name: str, fallback: Any) -> None:
        self.name = name
        self.fallback = fallback

    def write(self, text: str) -> int:
        sink = _sink.get()
        if sink is None:
            return self.fallback.write(text)
        if text:
            sink(self.name, text)
        return len(text)

    def flush(self) -> None:
        if _sink.get() is None:
            self.fallback.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.fallback.fileno()

    @property
    def encoding(self) -> str:
        return "utf-8"

    def writable(self) -> bool:
        return True


def log_to_stderr(msg: str, tag: str = "") -> None:
    """One timestamped line on the process's real stderr (the worker log), past any output routing."""
    stream = sys.__stderr__
    if stream is not None:
        stream.write(f"[{tag}{time.strftime('%H:%M:%S')}] {msg}\n")
        stream.flush()


def install_output_routing() -> None:
    if not isinstance(sys.stdout, _RoutedStream):
        sys.stdout = _RoutedStream("stdout", sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, _RoutedStream):
        sys.stderr = _RoutedStream("stderr", sys.stderr)  # type: ignore[assignment]


@dataclass
class FunctionEntry:
    fn: Callable[..., Awaitable[Any]]
    name: str
    allow_parallel: bool


@dataclass
class ContextEntry:
    name: str
    spec_hash: str
    manager: Any
    value: Any
    entered: int = 1


@dataclass
class WorkerCore:
    worker_id: str
    functions: dict[str, FunctionEntry] = field(default_factory=dict)
    contexts: dict[str, ContextEntry] = field(default_factory=dict)
    namespace: dict[str, Any] = field(default_factory=dict)
    _serial: asyncio.Queue | None = None
    _serial_task: asyncio.Task | None = None

    def __post_init__(self) -> None:
        self.namespace.setdefault("__name__", "__vast_run__")
        self.namespace.setdefault("__builtins__", __builtins__)

    def activate(self) -> "WorkerCore":
        """Make this the process's worker core (what ``get_context`` and ``worker_namespace()`` use in remote code)."""
        global _core
        _core = self
        return self

    # ------------------------------------------------------------------ code
    def install(self, item: InstallFunction) -> None:
        add_sources(item.sources)
        if item.hash in self.functions:
            return
        fn = pickle.loads(item.data)
        self.functions[item.hash] = FunctionEntry(fn=fn, name=item.name, allow_parallel=item.allow_parallel)

    # ------------------------------------------------------------------ contexts
    async def enter_context(self, spec: ContextSpec) -> float:
        """Enter one context (replacing an older one of that name); returns seconds spent."""
        name, spec_hash = spec.name, spec.hash
        add_sources(spec.sources)
        cls, args, kwargs = pickle.loads(spec.blob)
        old = self.contexts.get(name)
        if old is not None:
            if old.spec_hash == spec_hash:
                return 0.0
            await self._exit_one(old)
        t0 = time.perf_counter()
        manager = cls(*args, **kwargs)
        value = await manager.__aenter__()
        self.contexts[name] = ContextEntry(name=name, spec_hash=spec_hash, manager=manager, value=value)
        return time.perf_counter() - t0

    async def _exit_one(self, entry: ContextEntry) -> None:
        self.contexts.pop(entry.name, None)
        try:
            await entry.manager.__aexit__(None, None, None)
        except Exception:
            traceback.print_exc()

    async def exit_contexts(self) -> None:
        entries = list(self.contexts.values())
        await asyncio.gather(*(self._exit_one(e) for e in entries), return_exceptions=True)

    def get_context(self, cls: Any) -> Any:
        name = getattr(cls, "__vastnb_context__", None) or getattr(cls, "__qualname__", None) or str(cls)
        entry = self.contexts.get(name)
        if entry is None:
            known = ", ".join(sorted(self.contexts)) or "none"
            raise ContextNotFound(
                f"get_context({name}) found no context named {name!r} on worker {self.worker_id}. "
                f"Registered contexts: {known}. Decorate the class with @app.context() "
                "(or define it in a %%vast_context cell) before the deployment starts."
            )
        return entry.value

    # ------------------------------------------------------------------ calls
    async def call(self, fn_hash: str, args: tuple, kwargs: Mapping[str, Any], sink: Sink | None) -> Any:
        entry = self.functions.get(fn_hash)
        if entry is None:
            raise LookupError(f"worker {self.worker_id} has no code for {fn_hash}")
        token = _sink.set(sink)
        try:
            return await entry.fn(*args, **kwargs)
        finally:
            _sink.reset(token)

    # ------------------------------------------------------------------ cells
    async def run_cell(self, source: str, filename: str, push: dict[str, Any], pull: list[str], sink: Sink | None) -> dict[str, Any]:
        """Run a ``%%vast_run`` cell in the shared namespace; return the last expression's repr and pulled values."""
        self.namespace.update(push)
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        tree = ast.parse(source, filename=filename, mode="exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            expr = tree.body.pop()
            assert isinstance(expr, ast.Expr)
            last = ast.Expression(expr.value)
        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        token = _sink.set(sink)
        try:
            body = compile(tree, filename, "exec", flags=flags)
            result = eval(body, self.namespace)
            if inspect.iscoroutine(result):
                await result
            value = None
            if last is not None:
                code = compile(last, filename, "eval", flags=flags)
                value = eval(code, self.namespace)
                if inspect.iscoroutine(value):
                    value = await value
        finally:
            _sink.reset(token)
        missing = [n for n in pull if n not in self.namespace]
        if missing:
            raise NameError(
                f"--pull: {', '.join(repr(m) for m in missing)} not defined on worker {self.worker_id}; "
                "assign it in a %%vast_run cell first."
            )
        if value is not None:
            self.namespace["_"] = value
        return {
            "repr": None if value is None else _safe_repr(value),
            "pulled": {n: self.namespace[n] for n in pull},
        }

    # ------------------------------------------------------------------ benchmark
    async def benchmark(self, spec: BenchmarkSpec, on_run: Callable[[int, float], None]) -> float:
        """Run the benchmark the way the official worker does and return the score (workload units/s)."""
        entry = self.functions[spec.fn_hash]
        items = BenchmarkInputs(spec)
        per_run = spec.concurrency if spec.parallel else 1
        best = 0.0
        for run in range(spec.runs + 1):  # run 0 is the warm-up: one call, as the official worker makes
            batch = [items.next() for _ in range(per_run if run else 1)]
            workload = sum(workload_of(spec.workload_calculator, (), kw) for kw in batch)
            t0 = time.perf_counter()
            token = _sink.set(_discard)
            try:
                await asyncio.gather(*(entry.fn(**kw) for kw in batch))
            finally:
                _sink.reset(token)
            elapsed = max(time.perf_counter() - t0, 1e-9)
            if run == 0:
                continue
            throughput = workload / elapsed
            best = max(best, throughput)
            on_run(run, throughput)
            await asyncio.sleep(0)
        return best


def _discard(stream: str, text: str) -> None:
    return None


class BenchmarkInputs:
    """The benchmark's inputs, one per call: ``benchmark_generator()`` each time, or the dataset in its order.

    The dataset is cycled in order, starting over after its last item: the warm-up call takes item 0, the
    first timed run items 1, 2, ... So every item is measured, and two runs of one benchmark send the same
    inputs. Vast's docs say items are "randomly selected"; the official worker 1.9.1 in fact sends only the
    last item (its serve-mode ``remote()`` keeps one). vastnb chose the documented order above, and an export
    keeps it (a dataset of several items is exported as a generator that cycles it the same way).
    """

    def __init__(self, spec: BenchmarkSpec) -> None:
        self.spec = spec
        self.i = 0

    def next(self) -> dict:
        if self.spec.generator is not None:
            return dict(self.spec.generator())
        data = self.spec.dataset or [{}]
        item = data[self.i % len(data)]
        self.i += 1
        return dict(item)


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001
        text = f"<unrepresentable {type(value).__name__}: {exc}>"
    return text if len(text) <= 100_000 else text[:100_000] + "…"


def add_sources(sources: Mapping[str, list[str]]) -> None:
    for filename, lines in sources.items():
        linecache.cache[filename] = (sum(map(len, lines)), None, list(lines), filename)


class WorkerDeployment:
    """What a notebook's ``app`` becomes inside remote code on a worker.

    ``get_context`` returns the worker's entered context; declaration methods are
    no-ops there (the deployment was declared in the notebook).
    """

    def __init__(self, name: str | None) -> None:
        self.name = name

    def get_context(self, context_class: Any) -> Any:
        return current_core().get_context(context_class)

    @property
    def namespace(self) -> dict[str, Any]:
        """The namespace shared with ``%%vast_run`` cells on this worker."""
        return current_core().namespace

    def remote(self, f: Any = None, **_: Any) -> Any:
        return f if f is not None else (lambda g: g)

    def context(self, *_: Any, **__: Any) -> Any:
        return lambda c: c

    def configure_autoscaling(self, **_: Any) -> None:
        return None

    def ensure_ready(self) -> None:
        return None

    async def async_ensure_ready(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"<deployment {self.name!r} on worker {current_core().worker_id}>"


def worker_deployment(name: str | None) -> WorkerDeployment:
    return WorkerDeployment(name)


def unwrap(fn: Any) -> Any:
    """A notebook RemoteFunction referenced from remote code is the plain function on the worker."""
    return fn
