"""What the Vast backend watches while a deployment runs: worker status polls, the ttl heartbeat, logs, offers."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from ...errors import ConfigurationError, VastnbError
from ...events import Event, EventBus, EventKind
from ...spec import DeploymentSpec
from ._offers import OffersSummary, find_offers, search_offers
from ._sdk import DeployResult, SdkSession, VastApiError, redact, resolve_api_key
from ._status import StatusTracker

__all__ = ["Monitoring"]

log = logging.getLogger("vastnb")


class Monitoring:
    """The monitoring half of :class:`~vastnb.backends.vast.VastBackend` (its loops run on the backend's loop)."""

    # provided by VastBackend
    spec: DeploymentSpec
    sdk: SdkSession | None
    events: EventBus
    deploy_result: DeployResult | None
    tracker: StatusTracker
    webserver_url: str | None
    poll_interval: float
    max_poll_interval: float
    _explicit_key: str | None
    _closing: bool
    _nudge: asyncio.Event | None

    def cost_per_hour(self) -> float | None:
        """What the endpoint's workers cost per hour in GPU time (ready, busy, loading: the billed states, at the
        prices Vast reports); None when Vast reported no price for one of them (unknown, not free)."""
        return self.tracker.cost_per_hour()

    def _route_said(self, line: str) -> None:
        """``/route/`` said something new (waiting for workers, no offers, a failure): show it, do not wait silently."""
        self.tracker.set_route_status("" if line.endswith("a worker is ready") else line)
        log.info("vastnb: %s: Vast %s", self.spec.name, line)
        self.events.publish(Event(EventKind.LOG, time.time(), data={"line": f"Vast {line}", "source": "route"}))

    def offers(self, query: Any = None, *, limit: int = 256) -> OffersSummary:
        """How many Vast offers match ``query`` (default: the image's requirement) and the cheapest price."""
        query, image = self._offer_query(query)
        return search_offers(query, api_key=self._key(), webserver_url=self.webserver_url,
                             storage=image.storage if image is not None else None, limit=limit)

    def find_offers(self, query: Any = None, *, limit: int = 256) -> list[Any]:
        """The SDK's ``Offer`` objects for ``query``, cheapest first (a ``GpuPicker(offers=...)`` provider)."""
        query, image = self._offer_query(query)
        return find_offers(query, api_key=self._key(), webserver_url=self.webserver_url,
                           storage=image.storage if image is not None else None, limit=limit)

    def _offer_query(self, query: Any) -> tuple[Any, Any]:
        image = self.spec.image
        if query is None:
            if image is None:
                raise ConfigurationError("offers() needs a query, or an image with requirements (app.image(...)).")
            query = image.requirement
        return query, image

    def _key(self) -> str:
        return self.sdk.api_key if self.sdk is not None else resolve_api_key(self._explicit_key)

    def logs(self, worker: str | None = None) -> dict[str, list[str]]:
        """Vast's endpoint and workergroup logs (lines mentioning ``worker`` when given), through the SDK."""
        if self.sdk is None or self.deploy_result is None:
            return {}
        sdk, result = self.sdk.vast(), self.deploy_result
        out: dict[str, list[str]] = {}
        sources: list[tuple[str, Callable[[], Any]]] = [
            (f"endpoint {result.endpoint_id}", lambda: sdk.get_endpt_logs(result.endpoint_id, tail=500))]
        if result.workergroup_id:
            wg = result.workergroup_id
            sources.append((f"workergroup {wg}", lambda: sdk.get_wrkgrp_logs(wg, tail=500)))
        for label, fetch in sources:
            err: VastApiError | None = None
            try:
                lines = _log_lines(fetch())
            except Exception as exc:  # noqa: BLE001
                err = VastApiError(redact(f"reading the {label} logs failed: {exc}"))
            if err is not None:
                raise err
            out[label] = [redact(line) for line in lines if worker is None or worker in line]
        return out

    async def _poll_loop(self) -> None:
        assert self.sdk is not None and self._nudge is not None
        interval, failures, n = self.poll_interval, 0, 0
        while not self._closing:
            try:
                endpoint = (await self.sdk.endpoint_data()).config if n % 5 == 0 else None
                rows = await self.sdk.workers()
                changed = self.tracker.apply_poll(rows, endpoint) if rows is not None else False
                failures = 0
            except VastnbError as exc:
                failures += 1
                changed = False
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("vastnb: polling Vast for %r failed (%d time(s)): %s", self.spec.name, failures, exc)
            n += 1
            interval = self.poll_interval if changed else min(self.max_poll_interval, interval * 1.5)
            self._nudge.clear()
            try:
                await asyncio.wait_for(self._nudge.wait(), interval)
                interval = self.poll_interval
            except asyncio.TimeoutError:
                pass

    def _poke(self) -> None:
        """Activity: poll soon (the backoff is for idle endpoints)."""
        if self._nudge is not None:
            self._nudge.set()

    async def _heartbeat_loop(self, ttl: float) -> None:
        assert self.sdk is not None
        interval = min(ttl / 2, 60.0)
        while not self._closing:
            try:
                await self.sdk.heartbeat()
            except VastnbError as exc:
                log.warning("vastnb: %s (the deployment is deleted by Vast %g s after the last heartbeat)", exc, ttl)
            await asyncio.sleep(interval)



def _log_lines(data: Any) -> list[str]:
    """Lines from the SDK's log reply (keys info0, info1, trace, debug; strings or lists)."""
    if isinstance(data, dict):
        for key in ("info1", "info0", "trace", "debug", "logs", "error"):
            if data.get(key):
                return _log_lines(data[key])
        return []
    if isinstance(data, (list, tuple)):
        return [str(x) for x in data]
    return str(data or "").splitlines()

