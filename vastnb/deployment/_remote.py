"""Remote functions: declaration checks, and the ways to call them from a notebook.

``await fn(x)`` runs on the quickest ready worker; ``fn.call(x)`` blocks (also
inside Jupyter's running loop); ``fn.map(inputs)`` spreads many calls over the
workers and returns results in order. Arguments are checked against the
signature and serialized in the caller, before anything is sent, so mistakes
raise where they were made. Remote ``print`` output is written by the caller,
in the caller's own context, so it lands under the cell that made the call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal

from ..backends import CallRequest
from ..errors import ConfigurationError, SerializationError
from ..spec import (
    DEFAULT_BENCHMARK_RUNS,
    DEFAULT_MAX_QUEUE_TIME,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    FunctionSpec,
    workload_of,
)
from ..wire import Payload, dumps_payload, dumps_small
from ..wire.messages import CallFunction
from ._relay import OutputRelay, write_output
from ._views import progress as progress_bar

if TYPE_CHECKING:
    from ._deployment import Deployment

__all__ = ["RemoteFunction", "RemoteOptions"]

#: A call ready to submit: the function version, the pickled call, its workload.
Prepared = tuple[FunctionSpec, Payload, float]


@dataclass(frozen=True)
class RemoteOptions:
    benchmark_dataset: list[dict] | None = None
    benchmark_generator: Callable[[], dict] | None = None
    benchmark_runs: int = DEFAULT_BENCHMARK_RUNS
    workload_calculator: Callable[..., float] | None = None
    allow_parallel_requests: bool = False
    max_queue_time: float = DEFAULT_MAX_QUEUE_TIME
    retries: int = DEFAULT_RETRIES
    timeout: float = DEFAULT_TIMEOUT

    @property
    def has_benchmark(self) -> bool:
        return self.benchmark_dataset is not None or self.benchmark_generator is not None


def validate_remote(fn: Any, opts: RemoteOptions) -> None:
    """Raise :class:`ConfigurationError` for anything wrong in a remote declaration."""
    name = getattr(fn, "__name__", repr(fn))
    if not callable(fn):
        raise ConfigurationError(f"@app.remote decorates an `async def` function. Instead got {fn!r}.")
    if not inspect.iscoroutinefunction(fn):
        raise ConfigurationError(
            f"remote function `{name}` must be defined with `async def` (Vast runs remote functions as "
            f"coroutines). Change `def {name}(...)` to `async def {name}(...)`."
        )
    if opts.benchmark_dataset is not None and opts.benchmark_generator is not None:
        raise ConfigurationError(
            f"remote function `{name}` has both benchmark_dataset and benchmark_generator; give one of them (the "
            "official SDK would silently use benchmark_dataset and ignore benchmark_generator)."
        )
    runs = opts.benchmark_runs
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ConfigurationError(f"`benchmark_runs` of `{name}` must be an integer >= 1. Instead got {runs!r}.")
    for label, value in (("benchmark_generator", opts.benchmark_generator), ("workload_calculator", opts.workload_calculator)):
        if value is not None and not callable(value):
            raise ConfigurationError(f"`{label}` of `{name}` must be a function. Instead got {value!r}.")
    if not isinstance(opts.allow_parallel_requests, bool):
        raise ConfigurationError(
            f"`allow_parallel_requests` of `{name}` must be True or False. Instead got {opts.allow_parallel_requests!r}."
        )
    for label, seconds in (("max_queue_time", opts.max_queue_time), ("timeout", opts.timeout)):
        if (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds)
                or seconds <= 0):  # nan compares false with everything: it would disable the check or never expire
            raise ConfigurationError(
                f"`{label}` of `{name}` must be a positive, finite number of seconds. Instead got {seconds!r}.")
    if isinstance(opts.retries, bool) or not isinstance(opts.retries, int) or opts.retries < 0:
        raise ConfigurationError(f"`retries` of `{name}` must be an integer >= 0. Instead got {opts.retries!r}.")
    if opts.benchmark_dataset is not None:
        _validate_dataset(fn, name, opts.benchmark_dataset)


def _validate_dataset(fn: Any, name: str, dataset: Any) -> None:
    if not isinstance(dataset, list) or not dataset:
        raise ConfigurationError(
            f"`benchmark_dataset` of `{name}` must be a non-empty list of dicts of arguments, "
            f"e.g. [{{'x': 2}}]. Instead got {dataset!r}."
        )
    sig = inspect.signature(fn)
    params = list(sig.parameters)
    for i, item in enumerate(dataset):
        if not isinstance(item, dict):
            raise ConfigurationError(
                f"`benchmark_dataset[{i}]` of `{name}` must be a dict of arguments such as "
                f"{{{params[0] if params else 'x'!r}: ...}}. Instead got {item!r}."
            )
        try:
            sig.bind(**item)
        except TypeError:
            unknown = sorted(set(item) - set(params))
            missing = [
                p for p, spec in sig.parameters.items()
                if spec.default is inspect.Parameter.empty and p not in item
                and spec.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
            ]
            parts = []
            if unknown:
                parts.append(f"unknown key(s) {', '.join(map(repr, unknown))}")
            if missing:
                parts.append(f"missing key(s) {', '.join(map(repr, missing))}")
            raise ConfigurationError(
                f"`benchmark_dataset[{i}]` of `{name}` does not match its parameters "
                f"({', '.join(params) or 'none'}): {'; '.join(parts) or 'positional-only parameters'}. "
                "Use the parameter names as keys."
            ) from None
        for key, value in item.items():
            try:
                dumps_payload(value, f"benchmark_dataset[{i}][{key!r}]")
            except SerializationError as exc:
                raise ConfigurationError(str(exc)) from None


class RemoteFunction:
    """A notebook function that runs on the deployment's workers."""

    def __init__(self, app: "Deployment", fn: Callable[..., Any], options: RemoteOptions) -> None:
        self._app = app
        self._fn = fn
        self.options = options
        self.__signature__ = inspect.signature(fn)
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]
        params = list(self.__signature__.parameters.values())
        # a signature of plain parameters binds without inspect (what a map's many calls need); others bind by it
        self._plain_names = tuple(p.name for p in params) if all(
            p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params) else None
        self._required = sum(1 for p in params if p.default is inspect.Parameter.empty)

    @property
    def name(self) -> str:
        return self._fn.__name__

    def __repr__(self) -> str:
        return f"<remote function {self.name}{self.__signature__} on deployment {self._app.name!r}>"

    def __reduce__(self) -> Any:
        # inside remote code (another remote function calling this one) it is the plain function
        from ..worker.core import unwrap

        return (unwrap, (self._fn,))

    # ------------------------------------------------------------------ preparing a call
    def _bind(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """``(args, kwargs)`` as ``inspect.Signature.bind`` normalizes them (parameters given by name in order
        after the positional ones become positional); its TypeError when they do not fit."""
        names = self._plain_names
        if names is not None and len(args) <= len(names) and not kwargs.keys() & set(names[:len(args)]):
            pos, rest = list(args), dict(kwargs)
            for name in names[len(args):]:
                if name not in rest:
                    break
                pos.append(rest.pop(name))
            if all(name in names for name in rest) and all(
                    i < len(pos) or names[i] in rest for i in range(self._required)):
                return tuple(pos), rest
        try:
            bound = self.__signature__.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}{self.__signature__}: {exc}") from None
        return tuple(bound.args), dict(bound.kwargs)

    def _prepare(self, args: tuple, kwargs: dict, spec: FunctionSpec | None = None) -> "Prepared":
        __tracebackhide__ = True
        args, kwargs = self._bind(args, kwargs)
        spec = spec or self._app._function_spec(self.name)
        msg = CallFunction(spec.hash, args, kwargs)
        try:
            payload = dumps_small(msg, f"the arguments of {self.name}()")
        except SerializationError:
            for pname, value in self.__signature__.bind(*args, **kwargs).arguments.items():
                try:
                    dumps_payload(value)
                except SerializationError as exc:
                    raise SerializationError(
                        f"cannot send argument `{pname}` of {self.name}() to a worker: a {type(value).__module__}."
                        f"{type(value).__qualname__} cannot be serialized ({exc.__cause__}). Pass plain data, "
                        "or create the object on the worker (in a context's __aenter__)."
                    ) from None
            raise
        return spec, payload, workload_of(self.options.workload_calculator, args, kwargs)

    def _prepare_all(self, inputs: Iterable[Any]) -> "list[Prepared]":
        __tracebackhide__ = True
        items = list(inputs)
        if not items:
            return []
        spec = self._app._function_spec(self.name)
        return [self._prepare(*_as_args(item), spec=spec) for item in items]

    # ------------------------------------------------------------------ ways to call
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``await fn(...)``: run on the quickest ready worker."""
        __tracebackhide__ = True
        return self._acall(self._prepare(args, kwargs))

    async def _acall(self, prepared: "Prepared") -> Any:
        __tracebackhide__ = True
        done, value = await self._app._call_direct_async(CallRequest(*prepared, write_output, "call"))
        if done:
            return value
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()  # output is written in the calling cell's context
        waiter: asyncio.Future[Any] = loop.create_future()

        def sink(stream: str, text: str) -> None:
            loop.call_soon_threadsafe(write_output, stream, text, context=ctx)

        spec, payload, workload = prepared
        (future,) = self._app._submit_many([CallRequest(spec, payload, workload, sink)])
        # scheduled after any output callbacks of the same call, so output comes first
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(_settle, waiter, f))
        try:
            return await waiter
        except asyncio.CancelledError:
            if not future.done():
                self._app._cancel_many([future])
            raise

    def submit(self, *args: Any, **kwargs: Any) -> "concurrent.futures.Future[Any]":
        """Queue one call and return at once: a ``concurrent.futures.Future`` of its result.

        Submitted calls queue like a :meth:`map`'s (no ``max_queue_time`` refusal: you chose to queue them);
        ``future.cancel()`` cancels the call on its worker too. Remote ``print`` output is not shown."""
        spec, payload, workload = self._prepare(args, kwargs)
        (future,) = self._app._submit_many([CallRequest(spec, payload, workload, None, "map")])
        future.add_done_callback(lambda f: self._app._cancel_many([f]) if f.cancelled() else None)
        return future

    def call(self, *args: Any, **kwargs: Any) -> Any:
        """Run on a worker and block until the result is back (works inside a running event loop)."""
        __tracebackhide__ = True
        prepared = self._prepare(args, kwargs)
        done, value = self._app._call_direct(CallRequest(*prepared, write_output, "call"))
        if done:
            return value
        return _wait_all(self._app, [prepared], self.name, progress=None)[0]

    def map(self, inputs: Iterable[Any], *, return_exceptions: bool = False, progress: bool | None = None) -> list[Any]:
        """Call once per input, spread over the workers; results in input order.

        Each input is a dict of keyword arguments, a tuple of positional
        arguments, or a single value for the first parameter. With
        ``return_exceptions=True`` a failed call's exception is returned in its
        place instead of raised.
        """
        __tracebackhide__ = True
        prepared = self._prepare_all(inputs)
        return _wait_all(self._app, prepared, self.name, progress=progress, return_exceptions=return_exceptions)

    async def amap(self, inputs: Iterable[Any], *, return_exceptions: bool = False) -> list[Any]:
        """Like :meth:`map`, awaited."""
        prepared = self._prepare_all(inputs)
        loop = asyncio.get_running_loop()

        def sink(stream: str, text: str) -> None:
            loop.call_soon_threadsafe(write_output, stream, text)

        futures = self._app._submit_many([CallRequest(spec, p, w, sink, "map") for spec, p, w in prepared])
        try:
            results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures), return_exceptions=return_exceptions)
        except asyncio.CancelledError:
            self._app._cancel_many(futures)
            raise
        return list(results)


def _settle(waiter: "asyncio.Future[Any]", future: "concurrent.futures.Future[Any]") -> None:
    if waiter.done():
        return
    if future.cancelled():
        waiter.cancel()
    elif future.exception() is not None:
        waiter.set_exception(future.exception())  # type: ignore[arg-type]
    else:
        waiter.set_result(future.result())


def _as_args(item: Any) -> tuple[tuple, dict]:
    if isinstance(item, dict):
        return (), item
    if isinstance(item, tuple):
        return item, {}
    return (item,), {}


def _wait_all(app: "Deployment", prepared: "list[Prepared]", name: str, *,
              progress: bool | None, return_exceptions: bool = False) -> list[Any]:
    """Submit calls and block the calling thread, writing their output as it arrives."""
    __tracebackhide__ = True
    relay = OutputRelay()
    sink = relay.sink()
    kind: Literal["call", "map"] = "map" if len(prepared) > 1 or progress is not None else "call"
    futures = app._submit_many([CallRequest(spec, payload, workload, sink, kind) for spec, payload, workload in prepared])
    relay.watch_many(futures, wake_on_error=not return_exceptions)
    bar = progress_bar(len(futures), f"{name}.map") if (progress or (progress is None and len(futures) > 1)) else None
    shown = 0
    try:
        while True:
            event = relay.next(timeout=0.1 if bar is not None else None)
            if event is not None and event[0] == "out":
                write_output(event[2], event[3])
                continue
            if bar is not None and relay.resolved > shown:
                bar.update(relay.resolved - shown)
                shown = relay.resolved
            if event is None:
                continue
            if event[0] == "failed":  # the first failure ends the map: cancel what has not run yet
                app._cancel_many(futures)
                raise event[2].exception()
            if event[0] == "all done":
                break
    except KeyboardInterrupt:
        app._cancel_many(futures)
        raise
    finally:
        if bar is not None:
            bar.close()
    relay.flush_output(lambda _key, stream, text: write_output(stream, text))
    results: list[Any] = []
    for f in futures:
        if f.cancelled():
            results.append(asyncio.CancelledError())
        elif f.exception() is not None:
            results.append(f.exception())
        else:
            results.append(f.result())
    return results
