"""When a deployment on Vast counts as ready, and what ``ensure_ready()`` says while it waits and when it gives up.

Vast's engine keeps ``cold_workers`` workers loaded, but with ``min_load=1``
typically only one is *active*; the others are *inactive* (stopped, model on
disk) until load needs them. So ``ensure_ready()`` waits for the capacity the
engine will serve with: one serving worker, or ``VastBackend(ready_workers=N)``
when the user asks for more, and shows inactive workers as such.

The wait asks a worker for its ``hello`` through ``/route/`` (whose transient
failures are retried until the deadline, see :mod:`._route`); that answer
also says which Python the worker runs, checked once here: notebook code travels
as bytecode and loads only on the notebook's minor version. A wait that ends
without a worker says what Vast reported and how to stop the billing, since the
deployment keeps provisioning after the notebook stops waiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import TYPE_CHECKING, Any

from ...errors import CallTimeout, DeploymentShutDown, WorkerStartError
from ...spec import DeploymentSpec
from ...worker.vast import PY
from ._calls import Deadline, FrameChannel
from ._sdk import DeployResult, SdkSession
from ._status import StatusTracker

__all__ = ["Readiness", "python_mismatch"]


def _pyver(v: Any) -> str:
    try:
        return ".".join(str(int(x)) for x in v)
    except (TypeError, ValueError):
        return str(v)


def python_mismatch(worker_python: Any) -> str | None:
    """The worker's Python when it is not the notebook's minor version (as ``"3.10"``), else None."""
    ours = _pyver(PY)
    theirs = str(worker_python or "")
    return theirs if theirs and theirs != ours else None


class Readiness:
    """The readiness half of :class:`~vastnb.backends.vast.VastBackend` (its coroutines run on the backend's loop)."""

    # provided by VastBackend
    spec: DeploymentSpec
    sdk: SdkSession | None
    tracker: StatusTracker
    channel: FrameChannel
    deploy_result: DeployResult | None
    ready_timeout: float
    ready_workers: int | None
    _closing: bool

    if TYPE_CHECKING:
        def _submit(self, coro: Any) -> "concurrent.futures.Future[Any]": ...
        def _poke(self) -> None: ...
        async def _ensure_deployed(self) -> DeployResult: ...
        def _shut_down_error(self) -> DeploymentShutDown: ...
        def offers(self, query: Any = None, *, limit: int = 256) -> Any: ...

    def ready_target(self) -> int:
        """Serving workers ``ensure_ready()`` waits for: ``ready_workers`` when given, else 1 (the active one)."""
        return self.ready_workers or 1

    def wait_ready(self, min_ready: int = 1) -> "concurrent.futures.Future[None]":
        """Resolves when ``min_ready`` workers serve; fails after ``ready_timeout`` saying what Vast reports."""
        return self._submit(self._wait_ready(max(1, int(min_ready))))

    async def _wait_ready(self, min_ready: int) -> None:
        await self._ensure_deployed()
        deadline = Deadline(self.ready_timeout)
        try:
            info = await self._hello(deadline)
        except CallTimeout:
            info = None
        if info is not None:
            theirs = python_mismatch(info.get("python"))
            if theirs is not None:
                raise WorkerStartError(self._python_message(theirs))
        while len(self.tracker.serving()) < min_ready and deadline.remaining() > 0:
            self._poke()
            await asyncio.sleep(min(1.0, max(0.0, deadline.remaining())))
        if self._closing:
            raise self._shut_down_error()
        if len(self.tracker.serving()) < min_ready:
            raise WorkerStartError(self._not_ready_message(min_ready, await self._offers_note()))

    async def _hello(self, deadline: Deadline) -> dict[str, Any]:
        reply = await self.channel.exchange({"op": "hello"}, 1.0, deadline, "waiting for a ready worker", None)
        value = reply.get("value")
        info: dict[str, Any] = value if isinstance(value, dict) else {}
        code = {str(h) for h in info.get("code", ()) if isinstance(h, str)}
        self.tracker.apply_reply(str(reply.get("worker")), reply.get("pid"), code=code)
        self.channel.confirmed |= code
        return info

    def billing_note(self) -> str:
        """How to stop what the deployment costs, with the exact command."""
        dep = self.deploy_result.deployment_id if self.deploy_result else None
        command = f"`vastai delete deployment {dep}`" if dep is not None else "the console"
        return (f"Vast keeps provisioning (and billing) its workers until the deployment is deleted: app.shutdown() "
                f"from this notebook, or {command} (https://cloud.vast.ai/serverless/).")

    def _not_ready_message(self, min_ready: int, hint: str = "") -> str:
        endpoint = self.deploy_result.endpoint_id if self.deploy_result else None
        route = self.sdk.route.describe() if self.sdk is not None else ""
        said = f"; {route}" if route else ""
        return (
            f"{min_ready} worker(s) of deployment {self.spec.name!r} (Vast endpoint {endpoint}) did not become "
            f"ready within {self.ready_timeout:g} s. Vast reports: {self.tracker.summary()}{said}. Cold starts pull "
            "the image and enter your contexts (minutes on Vast); see %vast_logs, call ensure_ready() again to keep "
            f"waiting, or raise VastBackend(ready_timeout=...).{hint} {self.billing_note()}")

    async def _offers_note(self) -> str:
        """When Vast never listed a worker: whether any offer matches the image's requirement (the usual cause)."""
        if self.tracker.workers:
            return ""
        try:
            found = await asyncio.wait_for(asyncio.to_thread(self.offers), 40.0)
        except Exception:  # noqa: BLE001 - a hint, not the error
            return ""
        if found.count == 0:
            return (f" No offer on Vast's marketplace matches the image's requirement ({found.query!r}), so no worker "
                    "can be recruited: loosen image.require(...) (see %vast_gpus).")
        return ""

    def _python_message(self, theirs: str) -> str:
        ours = _pyver(PY)
        return (
            f"the Vast workers of deployment {self.spec.name!r} run Python {theirs}, but this notebook runs Python "
            f"{ours}: notebook code travels as bytecode, which loads only on the same Python minor version, so every "
            f"call would fail. Give the workers Python {ours} (an image whose python3 is {ours}, or "
            f"image.venv('/path/to/a/python{ours}/venv') in an image that has one), or run this notebook on Python "
            f"{theirs}. {self.billing_note()}")
