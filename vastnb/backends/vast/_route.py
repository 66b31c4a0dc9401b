"""Vast's ``/route/``, as it really answers: transient failures retried with back-off, its words kept for the user.

The SDK asks ``/route/`` once per poll (10 s timeout, one attempt) and raises on
the first 5xx, 429 or timeout, which ends the whole request. During a cold start
a call polls ``/route/`` hundreds of times, so one 502 would end every wait. The
:class:`RoutingEndpoint` the backend routes through turns a transient failure
(HTTP 408, 429, 5xx, a timeout or a dropped connection) into one more "waiting"
answer after a back-off (429s come as plain text without ``Retry-After``, so the
back-off doubles up to :data:`MAX_BACKOFF`); the SDK's own loop then polls again,
until the request's deadline. A refusal (401, 404, …) still ends the request.

:class:`RouteState` keeps what ``/route/`` said last: the status text of a
"waiting" answer (Vast puts the reason there: no ready worker yet, no offers
match, a billing problem) or the last failure, for progress lines, the status
view and timeout messages.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from typing import Any, Callable

from ._sdk import redact

try:
    from vastai.serverless.client.endpoint import Endpoint, RouteResponse
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "backend='vast' needs the official Vast SDK, which is not installed (or not importable: on Python >= 3.12 it "
        "also needs setuptools). Install both with `pip install 'vastnb[vast]'`."
    ) from _exc

__all__ = ["MAX_BACKOFF", "RouteState", "RoutingEndpoint", "status_text"]

MAX_BACKOFF = 30.0  # seconds between /route/ attempts after repeated failures
_TRANSIENT = re.compile(r"^Failed to route endpoint: HTTP (408|429|5\d\d)\b")


def status_text(status: Any) -> str:
    """The ``status`` of a waiting ``/route/`` answer in words: a string as is, a breakdown as ``key value`` pairs."""
    if isinstance(status, dict):
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in status.items())
    return str(status).strip() if status is not None else ""


class RouteState:
    """What ``/route/`` said last, and the back-off of its transient failures."""

    def __init__(self) -> None:
        self.status = ""  # the last "waiting" answer's status text
        self.error = ""  # the last transient failure ("" once /route/ answers again)
        self.failures = 0  # transient failures in a row
        self.at = 0.0
        self.on_change: Callable[[str], None] = lambda line: None

    def describe(self) -> str:
        """One line for messages and views: the failure in progress, else the waiting status, else ""."""
        if self.error:
            return f"/route/ failing ({self.failures} in a row, retrying): {self.error}"
        return f"/route/ says: {self.status}" if self.status else ""

    def waiting(self) -> str:
        """What a wait for a worker saw, for timeout messages: ``answering WAITING: …`` or ``failing: …``."""
        if self.error:
            return f"kept failing, retried until the deadline: {self.error}"
        return f"kept answering WAITING: {self.status}" if self.status else "kept answering WAITING"

    def answered(self, body: dict[str, Any]) -> None:
        before = self.describe()
        self.error, self.failures, self.at = "", 0, time.time()
        self.status = "" if "url" in body else (status_text(body.get("status")) or "no ready worker (no status given)")
        self._changed(before)

    def failed(self, text: str) -> float:
        """Record a transient failure; the seconds to wait before the next attempt."""
        before = self.describe()
        self.failures += 1
        self.error, self.at = text, time.time()
        self._changed(before)
        return min(MAX_BACKOFF, 2.0 ** min(self.failures - 1, 8)) * random.uniform(0.75, 1.0)

    def _changed(self, before: str) -> None:
        now = self.describe()
        if now != before:
            try:
                self.on_change(now or "/route/: a worker is ready")
            except Exception:  # noqa: BLE001 - a view must not break routing
                pass


class RoutingEndpoint(Endpoint):  # type: ignore[misc]
    """The SDK's ``Endpoint`` whose ``/route/`` rides out transient failures and reports what Vast says."""

    def __init__(self, *args: Any, route: RouteState, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.route = route

    async def _route(self, cost: float = 0.0, req_idx: int = 0, timeout: float = 60.0) -> Any:
        try:
            response = await super()._route(cost=cost, req_idx=req_idx, timeout=timeout)
        except RuntimeError as exc:
            text = redact(str(exc))
            if not (_TRANSIENT.match(text) or exc.__cause__ is not None):
                raise
            wait = self.route.failed(text.removeprefix("Failed to route endpoint: ")[:300])
            await asyncio.sleep(wait)
            return RouteResponse({"request_idx": req_idx})  # "waiting": the SDK polls again, until the deadline
        self.route.answered(response.body)
        return response
