"""The boundary between a :class:`~vastnb.Deployment` and where its workers run.

A backend is built with its own options (declared parameters), receives one
frozen :class:`~vastnb.spec.DeploymentSpec` on :meth:`Backend.start` and a new one
on every :meth:`Backend.update`, and reports everything it knows through
:meth:`Backend.snapshot` and its :class:`~vastnb.events.EventBus`. It never reads
the ``Deployment``; magics and widgets never read the backend's internals.

Every method is thread-safe; long operations return a
``concurrent.futures.Future`` so the notebook can block on it, await it, or poll it.
A capability a backend lacks raises :class:`~vastnb.errors.NotSupportedByBackend`.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol, runtime_checkable

from ..events import DeploymentSnapshot, EventBus
from ..spec import DeploymentSpec, FunctionSpec

__all__ = ["Backend", "CallRequest", "CellRequest", "OutputSink"]

#: Where a worker's ``print`` output goes while a call or cell runs: ``sink(stream, text)``, stream "stdout"/"stderr".
OutputSink = Callable[[str, str], None]


@dataclass(frozen=True, eq=False)
class CallRequest:
    """One call of a remote function, already checked against its signature and serialized in the caller.

    ``kind="map"`` marks one call of a batch: it may queue past ``max_queue_time`` (a batch is meant to queue)."""

    function: FunctionSpec
    payload: Any  # vastnb.wire.Payload: the pickled call
    workload: float
    sink: OutputSink | None = None
    kind: Literal["call", "map"] = "call"


@dataclass(frozen=True)
class CellRequest:
    """A ``%%vast_run`` cell: its source (compiled on the worker under ``filename``), names pushed and pulled."""

    source: str
    filename: str
    push: dict[str, Any] = field(default_factory=dict)
    pull: list[str] = field(default_factory=list)


@runtime_checkable
class Backend(Protocol):
    """What every backend does. ``name`` is how users select it: ``Deployment(backend="local")``."""

    name: str
    events: EventBus
    #: Whether workers refuse to start without a benchmark (Vast's do: "Missing EndpointHandler with
    #: BenchmarkConfig"). A ``Deployment`` then refuses a spec without one before :meth:`start`/:meth:`update`;
    #: with False it only notes that Vast will require one.
    requires_benchmark: bool

    def start(self, spec: DeploymentSpec) -> None:
        """Begin bringing up workers for ``spec`` (non-blocking). Raises before anything starts on bad settings."""

    def update(self, spec: DeploymentSpec) -> "concurrent.futures.Future[None]":
        """New code or settings: running workers get changed functions without a restart; only changed contexts
        are re-entered. Resolves once every running worker has the new code."""

    def ready_target(self) -> int:
        """How many serving workers ``ensure_ready()`` waits for."""

    def wait_ready(self, min_ready: int) -> "concurrent.futures.Future[None]":
        """Resolves when ``min_ready`` workers serve; fails with the reason when workers cannot start."""

    def submit(self, request: CallRequest) -> "concurrent.futures.Future[Any]":
        """Queue one call; the future holds its result or its (remote) exception."""

    def call_direct(self, request: CallRequest) -> tuple[bool, Any]:
        """Run a blocking call at once from the calling thread if the backend can (``(True, result)``, its
        exception raised), else ``(False, None)``: then it is submitted as usual."""

    async def call_direct_async(self, request: CallRequest) -> tuple[bool, Any]:
        """:meth:`call_direct` for ``await fn(x)``, on the caller's event loop."""

    def submit_many(self, requests: Sequence[CallRequest]) -> "list[concurrent.futures.Future[Any]]":
        """Queue calls together (a map), in order; one future per request."""

    def cancel(self, future: "concurrent.futures.Future[Any]") -> None:
        """Cancel a submitted call, on its worker too when it already runs there."""

    def cancel_many(self, futures: "Sequence[concurrent.futures.Future[Any]]") -> None:
        """Cancel submitted calls together (what a failed or interrupted map has not finished)."""

    def run_cell(self, cell: CellRequest, workers: Sequence[str] | None,
                 sink_for: Callable[[str], OutputSink | None]) -> "concurrent.futures.Future[dict[str, Any]]":
        """Run a cell on ``workers`` (None: one ready worker): ``{worker id: {"repr", "pulled"} or exception}``."""

    def benchmark(self, function: str) -> "concurrent.futures.Future[dict[str, float]]":
        """Run ``function``'s benchmark again on the serving workers: ``{worker id: perf score}``."""

    def snapshot(self) -> DeploymentSnapshot:
        """Everything a view draws, now (also after shutdown: how the workers ended)."""

    def logs(self, worker: str | None = None) -> dict[str, list[str]]:
        """Log lines per worker (or per Vast log source)."""

    def arrivals(self) -> list[tuple[float, float]]:
        """``(monotonic time, workload)`` of the calls received, oldest first (``app.simulate()`` replays them)."""

    def machine_max_workers(self) -> int | None:
        """The most workers this backend can run at once, when it has a limit (a machine's GPU slots)."""

    def shutdown(self, keep_endpoint: bool = False) -> None:
        """Stop every worker; calls still waiting fail clearly. ``keep_endpoint`` leaves cloud workers serving."""

    def kill_all_now(self) -> None:
        """At interpreter exit: stop at once, never raising."""
