"""What a deployment hands to a backend: one frozen :class:`DeploymentSpec`, and the defaults it is made of.

A :class:`~vastnb.Deployment` validates what the notebook declares, captures the
code by value, and builds a ``DeploymentSpec`` (its functions, contexts, image and
autoscaling settings) each time the notebook changes something. A backend starts
from one spec and is updated with the next; it never reads the ``Deployment``
itself. Specs are immutable, so a backend may keep one while the notebook moves on.

The defaults shared by the API, the magics, the runtime, the workers and the
export live here, once.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

__all__ = [
    "BENCHMARK_CONCURRENCY",
    "DEFAULT_BENCHMARK_RUNS",
    "DEFAULT_MAX_QUEUE_TIME",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WORKLOAD",
    "BenchmarkSpec",
    "CodeBlob",
    "ContextSpec",
    "DeploymentSpec",
    "FunctionSpec",
    "ImageSpec",
    "workload_of",
]

#: Workload units of one request when its function has no ``workload_calculator`` (as Vast counts it).
DEFAULT_WORKLOAD = 100.0
#: ``@app.remote(max_queue_time=...)``: seconds a call may wait for a worker (the official SDK's default).
DEFAULT_MAX_QUEUE_TIME = 30.0
#: ``@app.remote(benchmark_runs=...)``: timed benchmark runs after one warm-up (the official SDK's default).
DEFAULT_BENCHMARK_RUNS = 10
#: Requests per benchmark run when a function allows parallel requests (the official worker's figure).
BENCHMARK_CONCURRENCY = 10
#: ``@app.remote(retries=...)``: re-runs of a call whose worker died (vastnb; 0 for non-idempotent code).
DEFAULT_RETRIES = 2
#: ``@app.remote(timeout=...)``: seconds a call may take from submission to result (vastnb).
DEFAULT_TIMEOUT = 600.0


def workload_of(calculator: Callable[..., float] | None, args: tuple = (), kwargs: Mapping[str, Any] | None = None) -> float:
    """The workload of one request: ``calculator(*args, **kwargs)``, or the default when there is none, it
    fails, or it gives something that is not a positive finite number (as the official worker counts it)."""
    if calculator is None:
        return DEFAULT_WORKLOAD
    try:
        value = float(calculator(*args, **(kwargs or {})))
    except Exception:  # noqa: BLE001 - the official worker falls back to the default too
        return DEFAULT_WORKLOAD
    return value if value > 0 and math.isfinite(value) else DEFAULT_WORKLOAD


@dataclass(frozen=True)
class CodeBlob:
    """Pickled code plus what a worker needs to show tracebacks from it."""

    hash: str
    data: bytes
    sources: Mapping[str, list[str]]  # filename -> lines
    name: str


@dataclass(frozen=True)
class BenchmarkSpec:
    """How a worker measures its perf score: the official benchmark (one warm-up run, then ``runs`` timed runs of
    ``concurrency`` requests when parallel requests are allowed, else 1; score = the best run's workload/s)."""

    fn_hash: str
    dataset: list[dict] | None
    generator: Callable[[], dict] | None
    runs: int
    parallel: bool
    workload_calculator: Callable[..., float] | None
    concurrency: int = BENCHMARK_CONCURRENCY


@dataclass(frozen=True)
class FunctionSpec:
    """One version of a remote function, captured by value, with its call settings and benchmark (if any)."""

    name: str
    blob: CodeBlob
    allow_parallel: bool = False
    max_queue_time: float = DEFAULT_MAX_QUEUE_TIME
    retries: int = DEFAULT_RETRIES
    timeout: float = DEFAULT_TIMEOUT
    workload_calculator: Callable[..., float] | None = None
    benchmark: BenchmarkSpec | None = None

    @property
    def hash(self) -> str:
        return self.blob.hash


@dataclass(frozen=True)
class ContextSpec:
    """One version of a context: the pickled ``(class, args, kwargs)`` and the sources of its code.

    ``identity`` names the context's code and arguments the same way in every kernel (cell file names and
    memory addresses left out): the Vast backend decides from it whether workers must be replaced."""

    name: str
    hash: str
    blob: bytes
    sources: Mapping[str, list[str]]
    identity: str = ""


@dataclass(frozen=True)
class ImageSpec:
    """The worker image as declared with ``app.image(...)`` and its chained methods."""

    name: str
    storage: float
    requirement: Any  # vastnb.query.Query (with Vast's search defaults)
    envs: Mapping[str, str] = field(default_factory=dict)
    runs: tuple[str | tuple[str, ...], ...] = ()
    venv: str | None = None
    pip_installs: tuple[str, ...] = ()
    apt_gets: tuple[str, ...] = ()
    copies: tuple[tuple[str, str], ...] = ()
    ports: tuple[tuple[int, str], ...] = ()
    docker_login: Mapping[str, str] = field(default_factory=dict, repr=False)  # never shown


@dataclass(frozen=True)
class DeploymentSpec:
    """Everything a backend needs to run a deployment, at one moment of the notebook."""

    name: str
    tag: str = "default"
    version_label: str | None = None
    ttl: float | None = None
    functions: Mapping[str, FunctionSpec] = field(default_factory=dict)
    contexts: Mapping[str, ContextSpec] = field(default_factory=dict)
    benchmark: str | None = None  # the function whose benchmark scores workers (the first that has one)
    image: ImageSpec | None = None
    autoscaling: Any = None  # vastnb.autoscaling.AutoscalingSettings
    autoscaler_instance: str | None = None

    @cached_property
    def code_version(self) -> str:
        """A short digest of every function's and context's content hash: what "up to date" means for a worker."""
        h = hashlib.sha256()
        for name in sorted(self.functions):
            h.update(self.functions[name].hash.encode())
        for name in sorted(self.contexts):
            h.update(self.contexts[name].hash.encode())
        return h.hexdigest()[:8]

    @property
    def benchmark_spec(self) -> BenchmarkSpec | None:
        fn = self.functions.get(self.benchmark) if self.benchmark else None
        return fn.benchmark if fn is not None else None

    def function_by_hash(self, fn_hash: str) -> FunctionSpec | None:
        return next((f for f in self.functions.values() if f.hash == fn_hash), None)
