"""``app.client`` and ``app.async_client``: the official SDK's client handles, for scripts written for it.

The official ``Deployment`` holds an API client (``async_client``) and a Serverless
client (``client``), and its example client scripts end with
``await app.client.close()``. vastnb's backends own their connections (the local
backend has none to Vast; the Vast backend closes its SDK sessions in
``shutdown()``), so these handles exist to let such scripts run unchanged: same
names, same awaitable ``close()``, nothing to close.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SdkClient", "SdkClients"]


class SdkClient:
    """What ``app.client`` / ``app.async_client`` are here: ``await close()`` (and ``async with``) as in the SDK."""

    def __init__(self, app: Any, attribute: str) -> None:
        self._app_name = app.name
        self._backend = app.backend
        self._attribute = attribute
        self.closed = False

    async def close(self) -> None:
        """Kept for the official SDK's client scripts. vastnb's backend closes its own connections in
        ``app.shutdown()`` (and at exit), so this only marks the handle closed; calls keep working."""
        self.closed = True

    async def __aenter__(self) -> SdkClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (f"<vastnb app.{self._attribute} of deployment {self._app_name!r} ({self._backend} backend, "
                f"{state}): the official SDK's handle; its connections are the backend's>")


class SdkClients:
    """``Deployment.client`` and ``Deployment.async_client``: one handle each, made on first use."""

    @property
    def client(self) -> SdkClient:
        """The official SDK's ``app.client``: ``await app.client.close()`` ends its example client scripts."""
        return self._sdk_client("client")

    @property
    def async_client(self) -> SdkClient:
        """The official SDK's ``app.async_client``, with the same ``await app.async_client.close()``."""
        return self._sdk_client("async_client")

    def _sdk_client(self, attribute: str) -> SdkClient:
        handles: dict[str, SdkClient] = self.__dict__.setdefault("_sdk_clients", {})
        if attribute not in handles:
            handles[attribute] = SdkClient(self, attribute)
        return handles[attribute]
