"""Calls that reach a worker together (a :class:`~vastnb.wire.messages.CallBatch`): run in order, answered together.

A map of small calls is sent to a worker in batches; the worker runs a batch's
serial calls one after the other in one task (no task and lock per call) and
answers them in :class:`~vastnb.wire.messages.ResultBatch` frames, at least
every ``FLUSH_SECONDS`` so results and progress keep flowing. Each call is still
its own request: a Cancel stops just that call (a waiting one is skipped, a
running one is cancelled and the batch goes on), its output is its own, and a
result that cannot be pickled fails just that call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import TYPE_CHECKING, Any

from ..errors import SerializationError
from ..wire import ProtocolError, dumps_small, format_remote_error, loads_payload
from ..wire import messages as m

if TYPE_CHECKING:
    from .server import _Session

__all__ = ["SerialBatch", "unpack"]

FLUSH_SECONDS = 0.005  # results of a running batch go out at least this often
FLUSH_CALLS = 512
SLOW_CALL_S = 0.001


@dataclasses.dataclass(eq=False)
class SerialBatch:
    """The serial calls of one CallBatch, in order, and which of them to skip or is running."""

    calls: list[tuple[int, m.CallFunction]]
    received: float = 0.0
    skip: set[int] = dataclasses.field(default_factory=set)
    current: int | None = None
    task: "asyncio.Task[None] | None" = None

    def cancel(self, req_id: int) -> None:
        """Cancel one call of the batch: skip it if it waits, cancel it if it runs."""
        if req_id == self.current and self.task is not None:
            self.task.cancel()
        else:
            self.skip.add(req_id)


def unpack(session: "_Session", batch: m.CallBatch) -> list[tuple[int, m.CallFunction]]:
    """The batch's calls, loaded; one that cannot be loaded is answered with its error at once."""
    calls = []
    for req_id, body in batch.calls:
        try:
            call = loads_payload(body)
        except ProtocolError:
            raise
        except Exception as exc:  # noqa: BLE001 - as for a single call that does not load
            err = format_remote_error(exc)
            err = dataclasses.replace(err, message=f"the worker could not load the request: {err.message}")
            session.send(m.Result(ok=False, error=err), req_id)
            continue
        if not isinstance(call, m.CallFunction):
            raise ProtocolError(f"a call batch holds a {type(call).__name__}")
        calls.append((req_id, call))
    return calls


async def run_serial(session: "_Session", batch: SerialBatch) -> None:
    """Run the batch's calls in order under the session's serial lock, answering in ResultBatch frames.

    Results wait to go out together at most ``FLUSH_SECONDS`` while calls are fast: a timer sends them when a
    call awaits, and they go out before the next call starts once that much time has passed or the last call
    was slow (a slow call gains nothing from company, and the next may block the event loop for long)."""
    loop = asyncio.get_running_loop()
    held: list[tuple[int, m.Result]] = []
    timer: asyncio.TimerHandle | None = None
    oldest = 0.0

    def flush() -> None:
        nonlocal held, timer
        if timer is not None:
            timer.cancel()
            timer = None
        if held:
            send_results(session, held)
            held = []

    await session.serial.acquire()
    try:
        slow = False
        for req_id, call in batch.calls:
            if held and (slow or len(held) >= FLUSH_CALLS or time.monotonic() - oldest >= FLUSH_SECONDS):
                flush()
            began = time.monotonic()
            if req_id in batch.skip:
                result = m.Result(ok=False, cancelled=True)
            else:
                batch.current = req_id
                result = await session.run_one(req_id, call, batch.received)
                batch.current = None
            session.queued.pop(req_id, None)
            now = time.monotonic()
            slow = now - began > SLOW_CALL_S
            if not held:
                oldest, timer = now, loop.call_later(FLUSH_SECONDS, flush)
            held.append((req_id, result))
    finally:
        session.serial.release()
        for req_id, _ in batch.calls:
            session.queued.pop(req_id, None)
        flush()


def send_results(session: "_Session", results: list[tuple[int, m.Result]]) -> None:
    """Answer calls together; if the batch cannot be pickled, each alone (an unpicklable value fails its own call)."""
    if session.conn.closed:
        return
    if len(results) == 1:
        session.send(results[0][1], results[0][0])
        return
    try:
        payload: Any = dumps_small(m.ResultBatch(tuple(results)), "results")
    except SerializationError:
        for req_id, result in results:
            session.send(result, req_id)
        return
    session.conn.send(payload, 0)
