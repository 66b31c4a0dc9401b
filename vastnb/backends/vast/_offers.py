"""Vast's offers (the GPU marketplace) through the SDK's search: counts and prices for the picker and ``%vast_gpus``."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any, Callable

from ._sdk import DEFAULT_WEBSERVER, VastApiError, _describe, guarded, redact, resolve_api_key

__all__ = ["OffersSummary", "find_offers", "offers_provider", "search_offers"]


@dataclass(frozen=True)
class OffersSummary:
    """What the GPU picker shows for a requirement: how many offers match and the cheapest."""

    count: int
    cheapest_price: float | None  # $/hour, dph_total
    cheapest_gpu: str | None
    query: str  # the query string sent (unparse_query)
    limit: int

    @property
    def more(self) -> bool:
        """True when the search hit its limit, so ``count`` is a lower bound."""
        return self.count >= self.limit


def find_offers(query: Any, *, api_key: str | None = None, webserver_url: str | None = None,
                storage: float | None = None, limit: int = 256, timeout: float = 30.0) -> list[Any]:
    """The SDK's ``Offer`` objects matching ``query`` (a vastnb Query), cheapest first, via ``AsyncClient.search``.

    Vast's search defaults (verified, rentable, not rented) are added where the
    query says nothing about them. The search runs on a short-lived private event
    loop (safe inside Jupyter) and ends after ``timeout`` seconds; the SDK's
    synchronous ``SyncClient.search`` has no timeout at all.
    """
    from ..._aio import LoopThread

    key = resolve_api_key(api_key)
    vast_query = _with_defaults(query)
    thread = LoopThread("vastnb-offers")
    err: VastApiError | None = None
    try:
        return thread.run(_search(key, webserver_url or DEFAULT_WEBSERVER, vast_query, storage, limit, timeout),
                          timeout + 5)
    except VastApiError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. the thread's timeout
        err = VastApiError(redact(f"searching offers for {vast_query.unparse_query()!r} failed: {_describe(exc)}"))
    finally:
        thread.stop()
    raise err


def _with_defaults(query: Any) -> Any:
    """Vast's search defaults first (as a search sends them), then ``query``, which wins where both speak."""
    from ...query import Query

    out = Query.search_defaults()
    for column, ops in query.query.items():
        out.query[column] = dict(ops)
    return out


async def _search(key: str, url: str, query: Any, storage: float | None, limit: int, timeout: float) -> list[Any]:
    from vastai.async_.client import AsyncClient

    client = AsyncClient(key, vast_server=url)
    if not url.startswith("https"):
        client._ssl_context = ssl.create_default_context()
    try:
        found = await guarded(f"searching offers for {query.unparse_query()!r}", asyncio.wait_for(client.search(
            query.to_vast(), order=[["dph_total", "asc"]], limit=limit, allocated_storage=storage), timeout))
    finally:
        await client.close(force=True)
    return [o._data for o in found]


def search_offers(query: Any, *, api_key: str | None = None, webserver_url: str | None = None,
                  storage: float | None = None, limit: int = 256) -> OffersSummary:
    """How many offers match ``query`` and the cheapest (for the GPU picker and ``%vast_gpus``)."""
    offers = find_offers(query, api_key=api_key, webserver_url=webserver_url, storage=storage, limit=limit)
    prices = [(o.dph_total, o.gpu_name) for o in offers if o.dph_total is not None]
    cheapest = min(prices, default=(None, None), key=lambda p: p[0])
    return OffersSummary(count=len(offers), cheapest_price=cheapest[0], cheapest_gpu=cheapest[1],
                         query=_with_defaults(query).unparse_query(), limit=limit)


def offers_provider(*, api_key: str | None = None, webserver_url: str | None = None,
                    limit: int = 256) -> Callable[[Any], list[Any]]:
    """A ``GpuPicker(offers=...)`` provider: query -> the SDK's offers (the key is resolved now, once)."""
    key = resolve_api_key(api_key)
    return lambda query: find_offers(query, api_key=key, webserver_url=webserver_url, limit=limit)
