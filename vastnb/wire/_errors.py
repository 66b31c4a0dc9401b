"""Exceptions across the wire: raised on a worker, re-raised in the notebook with their type, message and traceback.

The worker turns an exception into an :class:`~vastnb.wire.messages.ErrorRecord`
(:func:`format_remote_error`: type name, message, the user's frames, and the pickled
exception when it pickles). In the notebook it becomes the original
exception type again when possible (else :class:`~vastnb.errors.RemoteError`),
chained ``from`` a :class:`RemoteTraceback` that prints the remote frames the way
IPython prints local ones: ``Cell In[4], line 3, in square``.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

from ..errors import RemoteError
from .messages import ErrorRecord

__all__ = [
    "RemoteTraceback",
    "build_remote_exception",
    "filename_label",
    "format_remote_error",
    "internal_frame",
    "render_user_traceback",
]

_VASTNB_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MACHINERY = tuple(os.sep + part + os.sep for part in ("asyncio", "concurrent", "IPython", "ipykernel", "nbclient"))
_MACHINERY_FILES = tuple(os.sep + name for name in ("threading.py", "runpy.py"))


def internal_frame(filename: str) -> bool:
    """True for frames of vastnb itself and the machinery around user code (asyncio, futures, IPython's cell
    runner and its ``open`` wrapper): a traceback shows the user's frames, not these."""
    return (filename.startswith(_VASTNB_DIR) or any(part in filename for part in _MACHINERY)
            or filename.endswith(_MACHINERY_FILES))


def render_user_traceback(exc: BaseException) -> list[str]:
    """IPython's ``_render_traceback_`` for vastnb's own errors: the caller's frames, then the message."""
    lines = ["Traceback (most recent call last):"]
    for fs in traceback.extract_tb(exc.__traceback__):
        if not internal_frame(fs.filename):
            lines.extend(_frame_lines(fs.filename, fs.lineno or 0, fs.name, (fs.line or "").strip()))
    text = str(exc)
    lines.append(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
    return lines


def filename_label(filename: str) -> str:
    """``Cell In[N]`` for a notebook cell's file when IPython knows it, else the file name."""
    ipython = sys.modules.get("IPython")
    if ipython is not None:
        try:
            shell = ipython.get_ipython()
        except Exception:  # noqa: BLE001
            shell = None
        if shell is not None:
            number = getattr(getattr(shell, "compile", None), "_filename_map", {}).get(filename)
            if number is not None:
                return f"Cell In[{number}]"
    if filename.startswith("<ipython-input-"):
        parts = filename.strip("<>").split("-")
        if len(parts) >= 3 and parts[2].isdigit():
            return f"Cell In[{parts[2]}]"
    return filename


class RemoteTraceback(Exception):
    """The remote part of a traceback; shown above the exception it caused."""

    def __init__(self, type_name: str, message: str, frames: list[tuple[str, int, str, str]], where: str) -> None:
        super().__init__(type_name, message)
        self.type_name = type_name
        self.message = message
        self.frames = frames
        self.where = where

    def __reduce__(self) -> Any:
        return (RemoteTraceback, (self.type_name, self.message, self.frames, self.where))

    def __str__(self) -> str:
        lines = [f"\nTraceback on {self.where} (most recent call last):"]
        for filename, lineno, name, line in self.frames:
            label = filename_label(filename)
            if label.startswith("Cell In["):
                lines.append(f"  {label}, line {lineno}, in {name}")
            else:
                lines.append(f'  File "{label}", line {lineno}, in {name}')
            if line:
                lines.append(f"    {line}")
        lines.append(f"{self.type_name}: {self.message}" if self.message else self.type_name)
        return "\n".join(lines)


def format_remote_error(exc: BaseException) -> ErrorRecord:
    """An exception as data: type, message, the user's frames (vastnb's and the machinery's dropped), and the
    pickled exception (None when it does not pickle)."""
    from ._pickle import dumps_payload

    frames = tuple(
        (fs.filename, fs.lineno or 0, fs.name, (fs.line or "").strip())
        for fs in traceback.extract_tb(exc.__traceback__) if not internal_frame(fs.filename)
    )
    try:
        blob: bytes | None = dumps_payload(exc, "exception").to_bytes()
    except Exception:  # noqa: BLE001 - the record still carries type, message and frames
        blob = None
    cls = type(exc)
    qualified = cls.__qualname__ if cls.__module__ in ("builtins", "__main__") else f"{cls.__module__}.{cls.__qualname__}"
    return ErrorRecord(type=qualified, message=str(exc), frames=frames, exception=blob)


def build_remote_exception(error: ErrorRecord, where: str, loads: Any = None) -> BaseException:
    """The exception to raise in the caller for a remote error record.

    ``loads`` loads the pickled exception (default: :func:`~vastnb.wire.loads_payload`; replies from untrusted
    hosts pass :func:`~vastnb.wire.loads_untrusted`); when it fails, the type name and message still travel."""
    from ._pickle import loads_payload

    exc: BaseException | None = None
    if error.exception is not None:
        try:
            exc = (loads or loads_payload)(error.exception)
        except Exception:  # noqa: BLE001 - e.g. the class is not importable here, or refused
            exc = None
    if not isinstance(exc, BaseException):
        exc = RemoteError(error.message, type_name=error.type)
    cause = RemoteTraceback(error.type, error.message, list(error.frames), where)
    exc.__cause__ = cause
    exc.__suppress_context__ = True
    try:  # IPython draws one traceback: the calling cell, then the remote frames, no vastnb internals
        setattr(exc, "_render_traceback_", _Renderer(exc, cause))
    except (AttributeError, TypeError):
        pass
    if hasattr(exc, "add_note"):
        notes = getattr(exc, "__notes__", [])
        note = f"(raised on {where})"
        if note not in notes:
            exc.add_note(note)
    return exc


class _Renderer:
    """``_render_traceback_`` for IPython: the caller's own frames, then the worker's."""

    def __init__(self, exc: BaseException, cause: RemoteTraceback) -> None:
        self.exc = exc
        self.cause = cause

    def __call__(self) -> list[str]:
        lines = ["Traceback (most recent call last):"]
        for fs in traceback.extract_tb(self.exc.__traceback__):
            if internal_frame(fs.filename):
                continue
            lines.extend(_frame_lines(fs.filename, fs.lineno or 0, fs.name, (fs.line or "").strip()))
        lines.append(f"  --- on {self.cause.where} ---")
        for filename, lineno, name, line in self.cause.frames:
            lines.extend(_frame_lines(filename, lineno, name, line))
        head = self.cause.type_name
        lines.append(f"{head}: {self.cause.message}" if self.cause.message else head)
        return lines


def _frame_lines(filename: str, lineno: int, name: str, line: str) -> list[str]:
    label = filename_label(filename)
    head = f"  {label}, line {lineno}, in {name}" if label.startswith("Cell In[") else f'  File "{label}", line {lineno}, in {name}'
    return [head, f"    {line}"] if line else [head]
