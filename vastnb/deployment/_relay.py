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
import threading
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
        self._count_lock = threading.Lock()
        self.resolved = 0  # futures resolved of those given to watch_many

    def sink(self, key: Any = None) -> Callable[[str, str], None]:
        """An output sink that queues ``(stream, text)`` under ``key``."""
        put = self._events.put

        def sink(stream: str, text: str) -> None:
            put(("out", key, stream, text))

        return sink

    def watch(self, future: "concurrent.futures.Future[Any]", key: Any = None) -> None:
        """Queue a "done" event when ``future`` resolves."""
        future.add_done_callback(lambda f: self._events.put(("done", key, f, None)))

    def watch_many(self, futures: "list[concurrent.futures.Future[Any]]", *, wake_on_error: bool) -> None:
        """Count the futures as they resolve (:attr:`resolved`) without waking the reader for each: the reader is
        woken by ``("all done", None, None, None)`` when the last one resolves and, with ``wake_on_error``, by
        ``("failed", None, future, None)`` for each one that fails. A map of 100,000 calls wakes its thread a
        handful of times, not 100,000 (it reads :attr:`resolved` when it wakes, e.g. for a progress bar)."""
        total = len(futures)
        if total == 0:
            self._events.put(("all done", None, None, None))
            return

        def resolved(f: "concurrent.futures.Future[Any]") -> None:
            with self._count_lock:
                self.resolved += 1
                last = self.resolved == total
            if wake_on_error and not f.cancelled() and f.exception() is not None:
                self._events.put(("failed", None, f, None))
            if last:
                self._events.put(("all done", None, None, None))

        for f in futures:
            f.add_done_callback(resolved)

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
