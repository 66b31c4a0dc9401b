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
from dataclasses import dataclass
from typing import Any

import cloudpickle

from .errors import SerializationError
from .wire import dumps_code

__all__ = ["CodeBlob", "capture", "code_filenames", "is_notebook_code"]

_STDLIB_DIRS = {
    os.path.realpath(p)
    for p in {sysconfig.get_paths().get("stdlib"), sysconfig.get_paths().get("platstdlib")}
    if p
}
_SITE_MARKERS = ("site-packages", "dist-packages")
_VASTNB_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class CodeBlob:
    """Pickled code plus what a worker needs to show tracebacks from it."""

    hash: str
    data: bytes
    sources: dict[str, list[str]]  # filename -> lines
    name: str


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
