"""Ending a deployment on Vast: stop everything local, delete the deployment and its endpoint, and say so if not.

``DELETE deployment/{id}/`` already deletes the endpoint on Vast, so the
``DELETE endptjobs/{id}/`` that follows may answer 404, or 400 ("delete update
failed"). Neither means the endpoint is still there: when that second delete
fails, Vast is asked whether the endpoint still exists, and only an endpoint
that does (or a question Vast cannot answer) is a failure. A real failure to
delete is loud: it may go on costing money, so the message names the command
that deletes it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from typing import TYPE_CHECKING, Any

from ..._aio import LoopThread
from ...events import Event, EventBus, EventKind
from ...spec import DeploymentSpec
from ._sdk import SdkSession, VastApiError, redact

__all__ = ["Teardown", "run_on"]

log = logging.getLogger("vastnb")


class Teardown:
    """The teardown half of :class:`~vastnb.backends.vast.VastBackend`."""

    # provided by VastBackend
    spec: DeploymentSpec
    sdk: SdkSession | None
    events: EventBus
    state: str
    ttl: float | None
    ttl_from_session: bool
    _thread: LoopThread | None
    _deployed: "concurrent.futures.Future[Any] | None"
    _closing: bool
    _background: list["asyncio.Task[Any]"]
    _calls: dict[Any, "asyncio.Task[Any]"]
    _cell_session: Any

    def shutdown(self, keep_endpoint: bool = False, timeout: float = 30.0) -> None:
        """Stop polling, heartbeats and calls; delete the deployment and its endpoint (unless ``keep_endpoint``).

        Raises :class:`VastApiError` (after stopping everything local) when Vast could not be told to
        delete the endpoint, since it may go on costing money."""
        if self._thread is None or self.state == "shut down":
            self.state = "shut down"
            return
        self._closing = True
        self.state = "shutting down"
        thread = self._thread
        if self._deployed is not None and not self._deployed.done():
            try:  # a deploy in flight: let it finish (bounded) so what it registered is known and torn down
                self._deployed.result(timeout)
            except BaseException:  # noqa: BLE001 - its error was (or will be) reported to whoever waited for it
                pass
        errors: list[str] = []
        try:
            run_on(thread, self._stop_tasks(), timeout)
        except Exception as exc:  # noqa: BLE001
            errors.append(redact(exc))
        managed = self.sdk.managed if self.sdk is not None else None
        if managed is not None and not keep_endpoint:
            errors += self._teardown(thread, timeout)
        elif managed is not None and self.ttl_from_session:
            log.warning("vastnb: deployment %r is kept, but it was deployed with the notebook-session ttl (%g s): Vast "
                        "deletes it %g s after this kernel's last heartbeat. To keep it for good, deploy it with "
                        "VastBackend(session_ttl=None).", self.spec.name, self.ttl, self.ttl)
        try:
            run_on(thread, self._close_clients(), timeout)
        except Exception as exc:  # noqa: BLE001
            errors.append(redact(exc))
        thread.stop()
        self.state = "shut down"
        self.events.publish(Event(EventKind.SHUTDOWN, time.time()))
        if errors:
            ids = f"endpoint {managed.endpoint_id} (deployment {managed.id})" if managed else "the endpoint"
            raise VastApiError(
                f"could not tear down {ids} of {self.spec.name!r}: {'; '.join(errors)}. It may still be running and "
                f"cost money: delete it with `vastai delete endpoint {managed.endpoint_id if managed else '<id>'}` "
                "or in the console (https://cloud.vast.ai/serverless/).")

    def _teardown(self, thread: LoopThread, timeout: float) -> list[str]:
        """Delete the deployment, then its endpoint; the errors that mean something may still run."""
        assert self.sdk is not None and self.sdk.managed is not None
        errors = []
        try:
            self.sdk.delete_deployment()
        except Exception as exc:  # noqa: BLE001
            if "404" not in str(exc):
                errors.append(redact(f"deleting deployment {self.sdk.managed.id}: {exc}"))
        try:
            run_on(thread, self.sdk.delete_endpoint(), timeout)
        except Exception as exc:  # noqa: BLE001 - 404 or 400: likely gone with its deployment; Vast is asked
            try:
                gone = not run_on(thread, self.sdk.endpoint_exists(), timeout)
            except Exception as check:  # noqa: BLE001
                gone = False
                errors.append(redact(f"{exc} (and checking whether it is gone failed: {check})"))
            else:
                if not gone:
                    errors.append(redact(exc))
        return errors

    async def _stop_tasks(self) -> None:
        tasks = list(self._background) + list(self._calls.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        session, self._cell_session = self._cell_session, None
        if session is not None:
            try:
                await asyncio.wait_for(session.close(), 5.0)
            except Exception:  # noqa: BLE001 - it expires on its own
                pass

    async def _close_clients(self) -> None:
        if self.sdk is not None:
            await self.sdk.close()
        await asyncio.get_running_loop().shutdown_default_executor()

    def kill_all_now(self) -> None:
        """At interpreter exit: tear the endpoint down quickly, never raising."""
        try:
            self.shutdown(timeout=5.0)
        except Exception:  # noqa: BLE001
            pass


def run_on(thread: LoopThread, coro: Any, timeout: float) -> Any:
    """Run ``coro`` on the backend's loop for at most ``timeout`` seconds (then cancel it, and say so)."""
    future = thread.submit(coro)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        try:
            future.result(2.0)
        except BaseException:  # noqa: BLE001 - cancelled, as asked
            pass
        raise TimeoutError(f"Vast did not answer within {timeout:g} s") from None
