"""Replies from machines vastnb does not trust, loaded without running their code: a restricted unpickler.

Vast is a marketplace: the operator of the host a worker runs on controls that
worker, its Python and every byte it answers. A plain ``pickle.loads`` of its
reply would run whatever the host put in it (``os.system`` is one ``REDUCE``
away) on the user's laptop. So replies from Vast workers are loaded by
:func:`loads_untrusted`, whose unpickler resolves only these globals:

* builtins that are data types (``int``, ``list``, ``set``, ``complex``, …) and
  built-in exception classes; a few stdlib value types (``datetime``,
  ``decimal.Decimal``, ``collections.OrderedDict``, ``uuid.UUID``, …);
* NumPy's own array, dtype and scalar rebuilders; torch tensors through
  vastnb's tensor reduction (:mod:`vastnb.wire._pickle`), whose dtype must name a
  ``torch.dtype``;
* vastnb's message classes and its exceptions;
* classes the notebook itself defined (module ``__main__`` or a module the
  notebook sends by value), matched by module and qualified name to the
  notebook's own copies, looked up, never imported, and never rebuilt from code
  the host sent;
* exception classes of modules the notebook has already imported (never an
  import triggered by the reply), built from their arguments as pickle does,
  or through vastnb's exception rebuilder (its class checked to be one of the
  exception classes above, its arguments a tuple and its state a dict).

Anything else (a function, ``cloudpickle``'s code rebuilders, ``eval``,
``getattr``, a module never imported here) stops the load with
:class:`UntrustedReply`, before any of the reply is used. Workers pickle
notebook classes by reference for this reason (:func:`dumps_reply`), so a result
that is an instance of a notebook class arrives as the notebook's own class.

What this does not protect from: a host can still return wrong data, large data,
or an instance of a notebook class with any attribute values (objects are built
with ``__new__`` and their state set, as pickle does; a notebook class with a
custom ``__setstate__`` or ``__reduce__`` runs that code, which is the
notebook's own). A user who controls the hosts may opt out:
``VastBackend(trust_hosts=True)``.
"""

from __future__ import annotations

import builtins
import io
import pickle
import sys
from typing import Any

import cloudpickle

from ..errors import SerializationError
from ._pickle import Payload, _parse, _Pickler

__all__ = ["UntrustedReply", "dumps_reply", "loads_untrusted", "notebook_class"]

_DATA_BUILTINS = frozenset({
    "bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int", "list", "range", "set", "slice",
    "str", "tuple", "Ellipsis", "NotImplemented",
})
_STDLIB: dict[str, frozenset[str]] = {
    "collections": frozenset({"OrderedDict", "deque", "defaultdict", "Counter"}),
    "datetime": frozenset({"date", "time", "datetime", "timedelta", "timezone"}),
    "decimal": frozenset({"Decimal"}),
    "fractions": frozenset({"Fraction"}),
    "uuid": frozenset({"UUID"}),
    "types": frozenset({"SimpleNamespace"}),
    "pathlib": frozenset({"PurePath", "PurePosixPath", "PureWindowsPath", "Path", "PosixPath", "WindowsPath"}),
}
_NUMPY: dict[tuple[str, str], tuple[str, ...]] = {  # what a pickle names -> where this NumPy keeps it
    ("numpy", "ndarray"): ("numpy",),
    ("numpy", "dtype"): ("numpy",),
    **{(mod, "_reconstruct"): ("numpy._core.multiarray", "numpy.core.multiarray")
       for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "scalar"): ("numpy._core.multiarray", "numpy.core.multiarray")
       for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "_frombuffer"): ("numpy._core.numeric", "numpy.core.numeric")
       for mod in ("numpy.core.numeric", "numpy._core.numeric")},
}
_CODE_MODULES = ("cloudpickle", "marshal", "types", "copyreg", "functools", "operator", "importlib")


class UntrustedReply(SerializationError):
    """A reply from an untrusted host (a Vast worker) asked to load something vastnb does not load from one."""


class _Refused(Exception):
    def __init__(self, module: str, name: str, why: str) -> None:
        super().__init__(module, name, why)
        self.module, self.name, self.why = module, name, why


def _notebook_modules() -> set[str]:
    """``__main__`` and the modules the notebook sends to workers by value (its cells and local files)."""
    return {"__main__", *cloudpickle.list_registry_pickle_by_value()}


def notebook_class(module: str, qualname: str) -> type:
    """The notebook's own class ``module.qualname`` (a cell's, or a local file's sent by value); never imports."""
    if module not in _notebook_modules():
        raise _Refused(module, qualname, "not a module of this notebook")
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        if obj is None or part.startswith("__") or part == "<locals>":
            obj = None
            break
        obj = getattr(obj, part, None)
    if not isinstance(obj, type) or obj.__module__ != module or obj.__qualname__ != qualname:
        raise _Refused(module, qualname, "no such class in this notebook")
    return obj


def _rebuild_tensor(buf: Any, dtype: Any, shape: Any, requires_grad: Any) -> Any:
    """vastnb's tensor rebuilder, with its arguments checked (a dtype name must name a ``torch.dtype``)."""
    import torch

    from ._pickle import _rebuild_tensor as rebuild

    if not isinstance(dtype, str) or not isinstance(getattr(torch, dtype, None), torch.dtype):
        raise _Refused("torch", str(dtype), "not a torch dtype")
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise _Refused("torch", "Size", f"not a tensor shape: {shape!r}")
    return rebuild(buf, dtype, shape, bool(requires_grad))


class _ExceptionOf:
    """Rebuilds an exception of a library the notebook already imported: ``cls(*args)`` as pickle does (an
    exception's constructor stores its arguments); one that refuses them is made without its ``__init__``."""

    def __init__(self, cls: type[BaseException]) -> None:
        self.cls = cls

    def __call__(self, *args: Any) -> BaseException:
        try:
            return self.cls(*args)
        except Exception:  # noqa: BLE001 - arguments its constructor does not take: the args alone
            exc = self.cls.__new__(self.cls, *args)
            exc.args = args
            return exc


def _rebuild_exception(cls: Any, args: Any, state: Any) -> BaseException:
    """vastnb's exception rebuilder (:mod:`vastnb.wire._pickle`), with its arguments checked: the class must be
    an exception class this loader already allowed, ``args`` a tuple and the state a dict of attributes."""
    from ._pickle import _rebuild_exception as rebuild

    if isinstance(cls, _ExceptionOf):
        cls = cls.cls
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        raise _Refused("vastnb.wire._pickle", "_rebuild_exception", f"not an exception class: {cls!r}")
    if not isinstance(args, tuple) or not (state is None or isinstance(state, dict)):
        raise _Refused("vastnb.wire._pickle", "_rebuild_exception", "arguments that are not an exception's")
    return rebuild(cls, args, state)


def _allowed(module: str, name: str) -> Any:
    if module == "builtins":
        value = getattr(builtins, name, None)
        if name in _DATA_BUILTINS or (isinstance(value, type) and issubclass(value, BaseException)):
            return value
        raise _Refused(module, name, "not a data type")
    if name in _STDLIB.get(module, ()):
        return getattr(__import__(module), name)
    places = _NUMPY.get((module, name))
    if places is not None:
        import importlib

        for place in places:
            try:
                return getattr(importlib.import_module(place), name)
            except (ImportError, AttributeError):
                continue
        raise _Refused(module, name, "this NumPy has no such rebuilder")
    if (module, name) == ("vastnb.wire._pickle", "_rebuild_tensor"):
        return _rebuild_tensor
    if (module, name) == ("vastnb.wire._pickle", "_rebuild_exception"):
        return _rebuild_exception
    if (module, name) == ("vastnb.wire._restricted", "notebook_class"):
        return notebook_class
    if module == "torch" and "torch" in sys.modules:
        import torch

        value = getattr(torch, name, None)
        if isinstance(value, torch.dtype):
            return value
        raise _Refused(module, name, "not a torch dtype")
    if module == "vastnb.wire.messages":
        from . import messages

        value = getattr(messages, name, None) if name in messages.__all__ else None
        if isinstance(value, type):
            return value
    if module in ("vastnb.errors", "vastnb.wire._errors"):
        value = getattr(sys.modules.get(module), name, None)
        if isinstance(value, type) and issubclass(value, BaseException):
            return value
    if module in _notebook_modules():
        return notebook_class(module, name)
    if module.split(".")[0] not in _CODE_MODULES and "." not in name:
        value = getattr(sys.modules.get(module), name, None)
        if isinstance(value, type) and issubclass(value, BaseException):
            return _ExceptionOf(value)
    raise _Refused(module, name, "not a type vastnb loads from untrusted hosts")


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return _allowed(module, name)


def loads_untrusted(body: bytes | bytearray | memoryview, where: str) -> Any:
    """Load a vastnb payload from an untrusted host; :class:`UntrustedReply` names what it refused and why."""
    main, buffers = _parse(memoryview(body), copy_buffers=True)
    err: Exception
    try:
        return _RestrictedUnpickler(io.BytesIO(main), buffers=buffers).load()
    except _Refused as refused:
        err = UntrustedReply(_refusal(refused, where))
    except Exception as exc:  # noqa: BLE001 - a malformed reply, or a notebook class refusing its state
        err = SerializationError(f"{where}: unreadable reply ({type(exc).__name__}: {exc}); nothing from it was run.")
    finally:
        main.release()
    raise err


def _refusal(refused: _Refused, where: str) -> str:
    target = f"{refused.module}.{refused.name}"
    head = f"{where}: the reply asks to load `{target}`"
    if refused.module.split(".")[0] in ("cloudpickle", "marshal", "types"):
        return (f"{head}, which rebuilds code: vastnb never runs code sent back by a Vast host (another person's "
                "machine). Return data (numbers, strings, lists, dicts, arrays, tensors, instances of classes defined "
                "in this notebook) rather than functions or classes defined on the worker.")
    if refused.why == "no such class in this notebook":
        return (f"{head}, but this notebook has no class {refused.name} in {refused.module}: the worker's copy is not "
                "loaded from the host. Define the class in the notebook (and run that cell), or return plain data.")
    return (f"{head} ({refused.why}). A Vast worker runs on another person's machine, so its replies may only "
            "contain data: builtins, NumPy arrays, torch tensors, vastnb's messages and classes defined in this "
            "notebook. Nothing from the reply was run. If you control the hosts, VastBackend(trust_hosts=True) "
            "loads their replies without this check.")


class _ReplyPickler(_Pickler):
    """Pickles a worker's reply with classes the worker received by value as references to the notebook's copies."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type) and not _importable_here(obj):
            return (notebook_class, (obj.__module__, obj.__qualname__))
        return super().reducer_override(obj)


def _importable_here(cls: type) -> bool:
    """True when ``cls`` is what its module and qualified name find in this process (pickle's by-reference test)."""
    obj: Any = sys.modules.get(cls.__module__)
    for part in cls.__qualname__.split("."):
        obj = getattr(obj, part, None)
    return obj is cls


def dumps_reply(obj: Any, what: str = "the result") -> bytes:
    """Pickle a worker's reply for :func:`loads_untrusted`: notebook classes by reference, never by value."""
    out = io.BytesIO()
    buffers: list[memoryview] = []
    try:
        _ReplyPickler(out, protocol=5, buffer_callback=lambda b: buffers.append(b.raw())).dump(obj)
    except Exception as exc:
        raise SerializationError(f"cannot serialize {what}: {type(exc).__name__}: {exc}") from exc
    data = out.getvalue()
    return Payload([data], len(data), buffers).to_bytes()
