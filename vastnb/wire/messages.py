"""The messages between a deployment's runtime and its workers, defined once.

The local runtime and the worker server exchange these over a :class:`~vastnb.wire.Connection`
(the request id travels in each frame's header, not in the message). On Vast the
same :class:`CallFunction`, :class:`RunCell` and :class:`Result` ride inside the
frames that :mod:`vastnb.worker.vast` handles. Each message is a small frozen
dataclass that pickles as its field values (no ``__dict__``), so the hot path stays cheap.

==========================  ====================  =================================================
message                     direction             meaning
==========================  ====================  =================================================
:class:`Init`               runtime → worker      code, contexts and benchmark to start with
:class:`Install`            runtime → worker      more functions (by content hash); answered by Ack
:class:`EnterContexts`      runtime → worker      (re-)enter these contexts; answered by Result
:class:`CallFunction`       runtime → worker      one call; answered by Result (Output before it)
:class:`RunCell`            runtime → worker      a ``%%vast_run`` cell; answered by Result
:class:`RunBenchmark`       runtime → worker      the benchmark again; answered by Result (score)
:class:`Cancel`             runtime → worker      cancel the request with id ``target``
:class:`Ping`               runtime → worker      health check; answered by Pong
:class:`Stop`               runtime → worker      finish what runs (``grace`` s), exit contexts; Bye
:class:`StateChanged`       worker → runtime      start-up progress (loading, benchmarking)
:class:`BenchmarkRun`       worker → runtime      one timed benchmark run finished
:class:`Ready`              worker → runtime      serving, with its perf score
:class:`StartFailed`        worker → runtime      a start-up phase failed (error record)
:class:`Output`             worker → runtime      ``print`` output of a running request
:class:`Result`             worker → runtime      a request's value or error record
:class:`Ack`, :class:`Pong`, :class:`Bye`   worker → runtime      replies to Install, Ping, Stop
==========================  ====================  =================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Ack",
    "BenchmarkRun",
    "Bye",
    "CallBatch",
    "CallFunction",
    "Cancel",
    "EnterContexts",
    "ErrorRecord",
    "Init",
    "Install",
    "InstallFunction",
    "Message",
    "Output",
    "Ping",
    "Pong",
    "Ready",
    "Result",
    "ResultBatch",
    "RunBenchmark",
    "RunCell",
    "StartFailed",
    "StateChanged",
    "Stop",
]


class Message:
    """Base of every message: pickles compactly as ``(class, field values)``."""

    __slots__ = ()

    def __reduce__(self) -> Any:
        cls = type(self)
        return (cls, tuple(getattr(self, name) for name in cls.__match_args__))  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ErrorRecord(Message):
    """An exception as data: its qualified type name, message, the user's frames, and the pickled exception
    (None when it does not pickle). :func:`vastnb.wire.build_remote_exception` turns it back into an exception."""

    type: str
    message: str
    frames: Sequence[tuple[str, int, str, str]] = ()
    exception: bytes | None = None


@dataclass(frozen=True, slots=True)
class InstallFunction(Message):
    """A remote function's code (pickled by value) and what a worker needs to run and show it."""

    hash: str
    data: bytes
    sources: Mapping[str, list[str]]
    name: str
    allow_parallel: bool

    @classmethod
    def of(cls, function: Any) -> "InstallFunction":
        """The install item of a :class:`vastnb.spec.FunctionSpec`."""
        return cls(function.hash, function.blob.data, function.blob.sources, function.name, function.allow_parallel)


# --------------------------------------------------------------------------- runtime → worker
@dataclass(frozen=True, slots=True)
class Init(Message):
    functions: Sequence[InstallFunction] = ()
    contexts: Sequence[Any] = ()  # vastnb.spec.ContextSpec
    benchmark: Any = None  # vastnb.spec.BenchmarkSpec or None


@dataclass(frozen=True, slots=True)
class Install(Message):
    functions: Sequence[InstallFunction] = ()


@dataclass(frozen=True, slots=True)
class EnterContexts(Message):
    contexts: Sequence[Any] = ()  # vastnb.spec.ContextSpec


@dataclass(frozen=True, slots=True)
class CallFunction(Message):
    fn: str  # content hash of the function's code
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallBatch(Message):
    """Small calls for one worker sent together: ``(request id, the pickled CallFunction)`` each, in order."""

    calls: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True, slots=True)
class RunCell(Message):
    source: str
    filename: str
    push: Mapping[str, Any] = field(default_factory=dict)
    pull: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class RunBenchmark(Message):
    benchmark: Any  # vastnb.spec.BenchmarkSpec


@dataclass(frozen=True, slots=True)
class Cancel(Message):
    target: int  # request id


@dataclass(frozen=True, slots=True)
class Ping(Message):
    pass


@dataclass(frozen=True, slots=True)
class Stop(Message):
    grace: float = 10.0


# --------------------------------------------------------------------------- worker → runtime
@dataclass(frozen=True, slots=True)
class StateChanged(Message):
    state: str  # a vastnb.events.WorkerState value
    phases: Sequence[tuple[str, float]] = ()


@dataclass(frozen=True, slots=True)
class BenchmarkRun(Message):
    run: int
    throughput: float


@dataclass(frozen=True, slots=True)
class Ready(Message):
    score: float | None
    phases: Sequence[tuple[str, float]] = ()


@dataclass(frozen=True, slots=True)
class StartFailed(Message):
    phase: str  # "context <name>" (its __aenter__ failed), "loading" or "benchmarking"
    error: ErrorRecord
    phases: Sequence[tuple[str, float]] = ()


@dataclass(frozen=True, slots=True)
class Output(Message):
    chunks: Sequence[tuple[str, str]]  # (stream, text)


@dataclass(frozen=True, slots=True)
class Result(Message):
    ok: bool
    value: Any = None
    error: ErrorRecord | None = None
    cancelled: bool = False
    stamps: tuple[float, ...] | None = None  # (received, started, finished) on the worker, with VASTNB_TRACE_CALLS=1


@dataclass(frozen=True, slots=True)
class ResultBatch(Message):
    """Results of calls that finished together on a worker: ``(request id, Result)`` each, in order."""

    results: tuple[tuple[int, Result], ...]


@dataclass(frozen=True, slots=True)
class Ack(Message):
    error: ErrorRecord | None = None


@dataclass(frozen=True, slots=True)
class Pong(Message):
    inflight: int = 0
    queued: int = 0
    calls_done: int = 0
    gpu_memory_mb: float | None = None


@dataclass(frozen=True, slots=True)
class Bye(Message):
    pass
