"""Capturing notebook code by value, and telling users in plain words when it fails.

Functions and classes defined in a notebook cell (module ``__main__``) or in a
local ``.py`` file that is not an installed package are pickled *by value* with
cloudpickle, so the worker needs nothing but the bytes. Code is captured when it
is deployed (``ensure_ready``, the first call, or a redefinition), not when it is
decorated, so globals defined later in the notebook are seen. The content hash
of the captured bytes names a code version: a worker that already has a hash
never receives the same code again.

For readable remote tracebacks, the source lines of every file the captured code
comes from (notebook cells live in files such as ``/tmp/ipykernel_…/….py``)
travel along and are put into the worker's ``linecache``.
"""

from __future__ import annotations

import hashlib
import inspect
import linecache
import os
import sys
import sysconfig
import types
from collections.abc import Mapping
from typing import Any

import cloudpickle

from ..errors import ConfigurationError, SerializationError
from ..spec import BenchmarkSpec, CodeBlob, ContextSpec, DeploymentSpec, FunctionSpec, ImageSpec
from ..wire import dumps_code

__all__ = [
    "build_spec",
    "capture",
    "check_benchmark",
    "check_get_context",
    "code_filenames",
    "context_identity",
    "is_notebook_code",
    "stable_digest",
]

_STDLIB_DIRS = {
    os.path.realpath(p)
    for p in {sysconfig.get_paths().get("stdlib"), sysconfig.get_paths().get("platstdlib")}
    if p
}
_SITE_MARKERS = ("site-packages", "dist-packages")
_VASTNB_DIR = os.path.dirname(os.path.abspath(__file__))


def is_notebook_code(module_name: str | None) -> bool:
    """True when code from ``module_name`` must travel by value (notebook or local file)."""
    if not module_name or module_name == "__main__":
        return True
    module = sys.modules.get(module_name)
    if module is None:
        return True
    path = getattr(module, "__file__", None)
    if not path:
        return True
    real = os.path.realpath(path)
    if real.startswith(_VASTNB_DIR):
        return False
    if any(marker in real.split(os.sep) for marker in _SITE_MARKERS):
        return False
    if any(real.startswith(d + os.sep) for d in _STDLIB_DIRS):
        return False
    return True


def _register_by_value(obj: Any) -> None:
    module_name = getattr(obj, "__module__", None)
    if module_name and module_name != "__main__" and is_notebook_code(module_name):
        module = sys.modules.get(module_name)
        if module is not None:
            try:
                cloudpickle.register_pickle_by_value(module)
            except ValueError:
                pass


def code_filenames(obj: Any, _seen: set[int] | None = None) -> set[str]:
    """Files the code of ``obj`` (a function, class, or code object) and its notebook globals come from."""
    seen = _seen if _seen is not None else set()
    out: set[str] = set()
    if id(obj) in seen:
        return out
    seen.add(id(obj))
    if isinstance(obj, types.CodeType):
        out.add(obj.co_filename)
        for const in obj.co_consts:
            if isinstance(const, types.CodeType):
                out |= code_filenames(const, seen)
        return out
    if isinstance(obj, (tuple, list)):
        for item in obj:
            out |= code_filenames(item, seen)
        return out
    if isinstance(obj, (staticmethod, classmethod)):
        return code_filenames(obj.__func__, seen)
    if isinstance(obj, property):
        for part in (obj.fget, obj.fset, obj.fdel):
            if part is not None:
                out |= code_filenames(part, seen)
        return out
    if isinstance(obj, types.FunctionType):
        out |= code_filenames(obj.__code__, seen)
        g = obj.__globals__
        for name in _global_names(obj.__code__):
            value = g.get(name)
            if _is_local_definition(value):
                out |= code_filenames(value, seen)
        for cell in obj.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            if _is_local_definition(value):
                out |= code_filenames(value, seen)
        return out
    if isinstance(obj, type):
        for value in vars(obj).values():
            if isinstance(value, (types.FunctionType, staticmethod, classmethod, property)):
                out |= code_filenames(value, seen)
        return out
    inner = getattr(obj, "__wrapped__", None) or getattr(obj, "fn", None)
    if inner is not None and inner is not obj:
        return code_filenames(inner, seen)
    return out


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _is_local_definition(value: Any) -> bool:
    if isinstance(value, (types.FunctionType, type)):
        return is_notebook_code(getattr(value, "__module__", None))
    inner = getattr(value, "__wrapped__", None)
    return isinstance(inner, types.FunctionType) and is_notebook_code(inner.__module__)


def capture(obj: Any, name: str) -> CodeBlob:
    """Pickle ``obj`` by value; raise :class:`SerializationError` in plain words if it cannot be."""
    _register_by_value(obj)
    try:
        data = dumps_code(obj)
    except Exception as exc:
        raise SerializationError(
            f"cannot send the code of {name!r} to workers: {type(exc).__name__}: {exc}. "
            "A remote function or context can only use globals that can be pickled: "
            "create open files, locks, sockets or GPU handles inside the function or in a "
            "context's __aenter__ instead of in the notebook."
        ) from exc
    sources: dict[str, list[str]] = {}
    for filename in sorted(code_filenames(obj)):
        if filename.startswith(_VASTNB_DIR):
            continue
        lines = linecache.getlines(filename)
        if lines:
            sources[filename] = lines
    digest = hashlib.sha256(data).hexdigest()[:16]
    return CodeBlob(hash=digest, data=data, sources=sources, name=name)


def source_of(obj: Any) -> str | None:
    """The source text of a function or class, when Python can find it."""
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return None


def context_identity(cls: type, args: tuple, kwargs: dict, sources: Mapping[str, list[str]], fallback: str) -> str:
    """A digest of a context's class source and constructor arguments that is the same in every kernel.

    Cell file names (which change with every kernel) and memory addresses are left out, so re-running an
    unchanged notebook gives the same identity (the Vast backend then keeps its workers)."""
    import re

    texts = sorted("".join(linecache.getlines(f)) for f in code_filenames(cls))
    texts = [t for t in texts if t] or sorted("".join(lines) for lines in sources.values())
    if not texts:
        return fallback
    arguments = re.sub(r" at 0x[0-9a-f]+", "", repr((args, sorted(kwargs.items()))))
    return hashlib.sha256(("\n".join(texts) + "\n" + arguments).encode()).hexdigest()[:16]


_VALUE_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING",
              "SHORT_BINBYTES", "BINBYTES", "BINBYTES8"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}


def stable_digest(data: bytes) -> str:
    """A digest of a pickle that does not depend on which equal strings share a memo slot.

    Pickling the same class twice can give different bytes: an equal string is
    written again or referenced from the memo depending on object identity. A
    content hash of the raw bytes then changes although nothing did, and a
    worker would re-enter a context (reload a model) for nothing. Here strings
    and bytes are always hashed by value and memo bookkeeping is left out.
    """
    import pickletools

    h = hashlib.sha256()
    values: dict[int, Any] = {}  # memo slot -> str/bytes stored there
    slots: dict[int, int] = {}  # memo slot of another object -> its order among those
    n_memo = 0
    last: Any = None
    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name == "FRAME":
            continue
        if name == "MEMOIZE" or name in _PUT_OPS:
            slot = n_memo if name == "MEMOIZE" else int(arg or 0)
            n_memo += name == "MEMOIZE"
            if last is not None:
                values[slot] = last
            else:
                slots[slot] = len(slots)
            continue
        if name in _GET_OPS:
            slot = int(arg or 0)
            if slot in values:
                last = values[slot]
                h.update(b"V" + repr(last).encode() + b"\0")
            else:
                last = None
                h.update(b"G" + str(slots.get(slot, -1)).encode() + b"\0")
            continue
        last = arg if name in _VALUE_OPS else None
        h.update((("V" + repr(arg)) if name in _VALUE_OPS else f"{name} {arg!r}").encode() + b"\0")
    return h.hexdigest()[:16]


def check_get_context(deployment: str, functions: list[tuple[str, Any]], contexts: Mapping[str, Any]) -> None:
    """Refuse a remote function that calls ``get_context(C)`` on a class ``C`` that is not a registered context."""
    from ._session import get_context_names

    for fn_name, fn in functions:
        for name in get_context_names(fn):
            value = fn.__globals__.get(name)
            if value is None and fn.__closure__:
                free = dict(zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__)))
                value = free.get(name)
            if not isinstance(value, type):
                continue  # a parameter or local: checked on the worker when it runs
            qual = getattr(value, "__vastnb_context__", None) or getattr(value, "__qualname__", name)
            if qual not in contexts:
                known = ", ".join(sorted(contexts)) or "none"
                raise ConfigurationError(
                    f"remote function `{fn_name}` calls get_context({name}), but {name} is not a registered "
                    f"context of deployment {deployment!r} (registered: {known}). Decorate the class with "
                    "@app.context() (or define it in a %%vast_context cell)."
                )


def check_benchmark(spec: DeploymentSpec, *, required: bool) -> str | None:
    """A spec without a benchmark: ConfigurationError when ``required`` (on Vast), else the one-line notice to
    show (None when the spec has a benchmark).

    The official docs say at least one remote function must define a benchmark: Vast's autoscaler sizes the
    deployment by the perf score it measures, and the official worker stops at start-up without one ("Missing
    EndpointHandler with BenchmarkConfig"). Locally nothing needs it, so there it is only a notice."""
    if spec.benchmark is not None:
        return None
    names = ", ".join(spec.functions) or "none"
    how = ("@app.remote(benchmark_dataset=[{...}]) (or benchmark_generator=...), or in a notebook "
           "%%vast_remote --benchmark-dataset '[{...}]'")
    if required:
        raise ConfigurationError(
            f"deployment {spec.name!r} has no benchmark (remote functions: {names}); Vast sizes a deployment by "
            f"the perf score its benchmark measures, and the official SDK requires one (its worker refuses to "
            f"start without it); nothing was sent to Vast. Give one remote function a benchmark: {how}."
        )
    return (f"deployment {spec.name!r} has no benchmark: fine on this machine, but Vast will require one "
            f"(give one remote function benchmark_dataset=[{{...}}] or benchmark_generator=...).")


def build_spec(*, name: str, tag: str, version_label: str | None, ttl: float | None,
               functions: Mapping[str, tuple[Any, Any]], contexts: Mapping[str, tuple[type, tuple, dict]],
               image: ImageSpec | None, autoscaling: Any, autoscaler_instance: str | None) -> DeploymentSpec:
    """Capture every function (``name -> (fn, RemoteOptions)``) and context by value into a frozen spec."""
    captured = {}
    for fn_name, (fn, o) in functions.items():
        blob = capture(fn, fn_name)
        bench = BenchmarkSpec(
            fn_hash=blob.hash, dataset=o.benchmark_dataset, generator=o.benchmark_generator, runs=o.benchmark_runs,
            parallel=o.allow_parallel_requests, workload_calculator=o.workload_calculator,
        ) if o.has_benchmark else None
        captured[fn_name] = FunctionSpec(
            name=fn_name, blob=blob, allow_parallel=o.allow_parallel_requests, max_queue_time=float(o.max_queue_time),
            retries=o.retries, timeout=float(o.timeout), workload_calculator=o.workload_calculator, benchmark=bench,
        )
    entered = {}
    for ctx_name, (cls, args, kwargs) in contexts.items():
        blob = capture((cls, args, kwargs), ctx_name)
        digest = stable_digest(blob.data)
        entered[ctx_name] = ContextSpec(name=ctx_name, hash=digest, blob=blob.data, sources=blob.sources,
                                        identity=context_identity(cls, args, kwargs, blob.sources, digest))
    return DeploymentSpec(
        name=name, tag=tag, version_label=version_label, ttl=ttl, functions=captured, contexts=entered,
        benchmark=next((n for n, f in captured.items() if f.benchmark is not None), None),
        image=image, autoscaling=autoscaling, autoscaler_instance=autoscaler_instance,
    )
