"""``%%vast_run``: a cell executed on workers, in a namespace each worker keeps across cells.

Output comes back into the cell that ran it: the runtime hands each worker's
``print`` output to a sink on its own thread; the sink only queues it, and the
cell's thread writes it, so it lands under this cell and no other. With several
workers every line is labelled ``[w1]``; the workers run concurrently, and their
output is shown grouped in worker order (the first worker's live, the next one's
as soon as the ones before it have finished), so it reads the same every time.
"""

from __future__ import annotations

import concurrent.futures
import sys
from dataclasses import dataclass, field
from typing import Any

from IPython.core.error import UsageError

from ..deployment import OutputRelay
from ._cell_code import format_remote_failure, show_short

__all__ = ["CellRun", "PerWorker", "WorkerValue"]

_POLL = 0.05  # seconds between checks for Ctrl-C while waiting


class WorkerValue:
    """The value of a cell's last expression on one worker, shown by its repr (the value stays there)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.text)


class PerWorker(dict):
    """``{worker id: repr of the last expression}``, shown one labelled line per worker."""

    def __repr__(self) -> str:
        return "\n".join(_prefix(wid, text) for wid, text in self.items())

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


def _prefix(worker_id: str, text: str) -> str:
    return "\n".join(f"[{worker_id}] {line}" for line in (text.splitlines() or [""]))


@dataclass
class _Writer:
    """Writes one worker's output to this cell's stdout/stderr, line-labelled when asked."""

    worker_id: str
    labelled: bool
    partial: dict[str, str] = field(default_factory=dict)

    def write(self, stream: str, text: str) -> None:
        target = sys.stderr if stream == "stderr" else sys.stdout
        if not self.labelled:
            target.write(text)
            target.flush()
            return
        buf = self.partial.get(stream, "") + text
        *lines, rest = buf.split("\n")
        self.partial[stream] = rest
        if lines:
            target.write("".join(f"[{self.worker_id}] {line}\n" for line in lines))
            target.flush()

    def close(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                self.write(stream, "\n")


class CellRun:
    """One ``%%vast_run`` execution: submit to the workers, relay output in order, collect results."""

    def __init__(self, app: Any, cell: dict[str, Any], targets: list[str] | None, labelled: bool) -> None:
        self.app = app
        self.cell = cell
        self.targets = targets
        self.labelled = labelled
        self.relay = OutputRelay()

    def run(self) -> dict[str, Any]:
        """Run the cell; returns ``{worker id: {"repr", "pulled"} or exception}`` in worker order."""
        futures: list[concurrent.futures.Future[dict[str, Any]]] = []
        if self.targets is None:  # one worker, the backend picks it
            futures.append(self.app.run_cell(**self.cell, output=self.relay.sink, wait=False))
        else:
            for wid in self.targets:
                futures.append(self.app.run_cell(**self.cell, workers=[wid], output=self.relay.sink, wait=False))
        for i, fut in enumerate(futures):
            self.relay.watch(fut, i)
        try:
            self._relay(futures)
        except KeyboardInterrupt:
            for fut in futures:
                fut.cancel()
            where = ", ".join(self.targets) if self.targets else "its worker"
            print(f"vastnb: interrupted; cancelling the cell on {where}.", file=sys.stderr)
            raise
        results: dict[str, Any] = {}
        for i, fut in enumerate(futures):
            try:
                results.update(fut.result())
            except BaseException as exc:  # noqa: BLE001 - a worker that could not run the cell
                wid = self.targets[i] if self.targets is not None else "?"
                results[wid] = exc
        return results

    def _relay(self, futures: list[concurrent.futures.Future[dict[str, Any]]]) -> None:
        # The runtime calls a worker's sink before it resolves that worker's future, on one
        # thread, so a worker's output is always queued ahead of its "done".
        order = list(self.targets) if self.targets is not None else []
        writers: dict[str, _Writer] = {}
        held: dict[str, list[tuple[str, str]]] = {}
        done: set[str] = set()
        cursor = 0
        finished = 0

        def writer(wid: str) -> _Writer:
            if wid not in writers:
                writers[wid] = _Writer(wid, self.labelled)
            return writers[wid]

        while finished < len(futures):
            event = self.relay.next(timeout=_POLL)  # wakes to let Ctrl-C in
            if event is None:
                continue
            kind, a, stream, text = event
            if kind == "out":
                if not order or (cursor < len(order) and a == order[cursor]):
                    writer(a).write(stream, text)
                else:
                    held.setdefault(a, []).append((stream, text))
                continue
            finished += 1
            if order:
                done.add(order[a])
            while cursor < len(order) and order[cursor] in done:
                writer(order[cursor]).close()
                cursor += 1
                if cursor < len(order):
                    nxt = order[cursor]
                    for s, t in held.pop(nxt, []):
                        writer(nxt).write(s, t)
        for w in writers.values():
            w.close()


def raise_failures(results: dict[str, Any]) -> None:
    """Raise for workers where the cell failed: the first exception, rendered with every failure's remote frames."""
    failures = {wid: r for wid, r in results.items() if isinstance(r, BaseException)}
    if not failures:
        return
    first = next(iter(failures.values()))
    if isinstance(first, NameError) and str(first).startswith("--pull:"):
        raise UsageError(f"%%vast_run {first}") from None
    if type(first) is LookupError:  # the runtime's "worker … is not serving", raised here, not on a worker
        raise UsageError(f"%%vast_run: {first}") from None
    lines: list[str] = []
    for wid, exc in failures.items():
        if lines:
            lines.append("")
        rendered = format_remote_failure(exc)
        if rendered and not rendered[0].startswith("Traceback on worker"):
            rendered[0] = f"[{wid}] {rendered[0]}"
        lines.extend(rendered)
    show_short(first, ["\n".join(lines)])
    raise first
