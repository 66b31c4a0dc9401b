"""Output and completions of requests on workers, handed to the thread that made them.

A backend calls a request's output sink and resolves its future on its own
thread; the notebook must write that output in the cell that made the request.
An :class:`OutputRelay` queues both, in the order they happened, and the calling
thread takes them off and writes them: ``fn.call``/``fn.map`` and ``%%vast_run``
both wait this way.
"""

from __future__ import annotations

import concurrent.futures
import queue
import sys
from typing import Any, Callable

__all__ = ["OutputRelay", "write_output"]


def write_output(stream: str, text: str) -> None:
    """Write a worker's output to this thread's stdout or stderr (in Jupyter: the running cell's)."""
    target = sys.stderr if stream == "stderr" else sys.stdout
    target.write(text)
    target.flush()


class OutputRelay:
    """Events ``("out", key, stream, text)`` and ``("done", key, future, None)`` from any thread, read in order.

    A backend calls a request's sink before it resolves the request's future, on one thread, so a request's
    output always comes off the relay before its "done"."""

    def __init__(self) -> None:
        self._events: queue.SimpleQueue[tuple[str, Any, Any, Any]] = queue.SimpleQueue()

    def sink(self, key: Any = None) -> Callable[[str, str], None]:
        """An output sink that queues ``(stream, text)`` under ``key``."""
        put = self._events.put

        def sink(stream: str, text: str) -> None:
            put(("out", key, stream, text))

        return sink

    def watch(self, future: "concurrent.futures.Future[Any]", key: Any = None) -> None:
        """Queue a "done" event when ``future`` resolves."""
        future.add_done_callback(lambda f: self._events.put(("done", key, f, None)))

    def next(self, timeout: float | None = None) -> tuple[str, Any, Any, Any] | None:
        """The next event (None when ``timeout`` passes first)."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    def flush_output(self, write: Callable[[Any, str, str], None]) -> None:
        """Write the output already queued (what arrived with the last result), without waiting."""
        while True:
            try:
                kind, key, a, b = self._events.get_nowait()
            except queue.Empty:
                return
            if kind == "out":
                write(key, a, b)
