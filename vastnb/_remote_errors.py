"""Re-raising remote exceptions in the notebook with their type, message and remote traceback.

The worker sends an exception as data (type name, message, the user's frames,
and the pickled exception when it pickles). Here it becomes the original
exception type again when possible (else :class:`~vastnb.errors.RemoteError`),
chained ``from`` a :class:`RemoteTraceback` that prints the remote frames the way
IPython prints local ones: ``Cell In[4], line 3, in square``.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

from .errors import RemoteError

__all__ = ["RemoteTraceback", "build_remote_exception", "filename_label", "internal_frame", "render_user_traceback"]

_VASTNB_DIR = os.path.dirname(os.path.abspath(__file__))
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


def build_remote_exception(error: dict[str, Any], where: str) -> BaseException:
    """The exception to raise in the caller for a remote error record."""
    from .wire import loads_payload

    exc: BaseException | None = None
    blob = error.get("exception")
    if blob is not None:
        try:
            exc = loads_payload(blob)
        except Exception:  # noqa: BLE001 - e.g. the class is not importable here
            exc = None
    if not isinstance(exc, BaseException):
        exc = RemoteError(error.get("message", ""), type_name=error.get("type", "Exception"))
    cause = RemoteTraceback(error.get("type", type(exc).__name__), error.get("message", ""), list(error.get("frames", [])), where)
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
