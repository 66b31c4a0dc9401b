"""The official ``vastai`` SDK as the Vast backend uses it: clients, deploy, and keeping secrets out of sight.

Everything here goes through the SDK's own objects (``AsyncClient``,
``CoroutineServerless``, ``DeploymentConfig``, the tarball and content-hash
helpers, ``ManagedDeployment.upload``, ``queue_endpoint_request``). Where the
SDK's convenience layer breaks, its pieces are called directly:

* ``ensure_ready()`` calls ``asyncio.run`` (fails inside Jupyter's loop), and on
  Python 3.11 ``async_ensure_ready()`` fails on
  ``NamedTemporaryFile(delete_on_close=...)``; :meth:`SdkSession.deploy` runs the
  same steps (config and tarball from the SDK's ``Deployment``,
  ``put_deployment``, ``upload``, ``update_workers`` on a soft update) on the
  backend's own event loop, without the per-call heartbeat thread it would leak.
* ``AsyncClient`` downloads Vast's root certificate from console.vast.ai even
  when pointed at another server: for plain-http servers the session is given
  the default context it would build (nothing to verify), and for https the
  certificate it fetched gets ``VERIFY_X509_STRICT`` cleared, as the SDK's own
  ``_ServerlessBase`` does (Python 3.13 otherwise rejects Vast's root).
* ``Endpoint.get_workers()`` on a Deployment's client raises AttributeError
  (``_session`` is None under a transport owner); workers are read from the same
  autoscaler route with the SDK's ``_make_request`` and ``Worker.from_dict``.

Secrets: the user's API key and each endpoint's own key are registered with
:func:`register_secret`; :func:`redact` removes them (and any ``api_key=…`` or
``Bearer …``) from every message vastnb shows, and a logging filter does the
same for the SDK's loggers (its aiohttp errors echo URLs that carry
``?api_key=``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import ssl
import tempfile
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

from ...errors import ConfigurationError, VastnbError
from ...spec import ImageSpec

__all__ = [
    "OffersSummary",
    "SdkSession",
    "VastApiError",
    "find_offers",
    "offers_provider",
    "redact",
    "register_secret",
    "resolve_api_key",
    "search_offers",
]

T = TypeVar("T")
DEFAULT_WEBSERVER = "https://console.vast.ai"
_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_PATTERNS = [
    re.compile(r"(api_key=)[^&\s'\"<>]+"),
    re.compile(r"(['\"]api_key['\"]\s*:\s*['\"])[^'\"]*"),
    re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+"),
]
MASK = "***"


class VastApiError(VastnbError, RuntimeError):
    """A call to Vast's API (through the official SDK) failed; the message says which and why."""


# =========================================================================== secrets


def register_secret(value: str | None) -> None:
    if value and len(value) >= 4:
        with _SECRETS_LOCK:
            _SECRETS.add(value)
        _install_log_redaction()


def redact(text: Any) -> str:
    """``text`` without any registered secret, ``api_key=…`` value or bearer token."""
    out = str(text)
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        if secret in out:
            out = out.replace(secret, MASK)
    for pattern in _PATTERNS:
        out = pattern.sub(lambda m: m.group(1) + MASK, out)
    return out


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is not ours to fix
            return True
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, redact(text)
        return True


_FILTER = _RedactingFilter()
# Loggers the SDK's client side writes to (module loggers under "vastai" and one per client class).
_SDK_LOGGERS = ("vastai", "vastai.serverless.client.session", "CoroutineServerless", "Serverless", "asyncio", "vastnb")


def _install_log_redaction() -> None:
    for name in _SDK_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)


# =========================================================================== api key


def resolve_api_key(explicit: str | None) -> str:
    """The argument, else ``VAST_API_KEY``, else the SDK's key file (the SDK's own resolution)."""
    from vastai._base import _APIKEY_SENTINEL, _resolve_api_key

    if explicit is not None and (not isinstance(explicit, str) or not explicit.strip()):
        raise ConfigurationError("`api_key` must be a non-empty string or None (then VAST_API_KEY or the SDK's key file is used).")
    try:
        key = _resolve_api_key(_APIKEY_SENTINEL if explicit is None else explicit)
    except RuntimeError as exc:
        raise ConfigurationError(
            f"backend='vast' needs a Vast API key and found none: {exc}. Create one at "
            "https://cloud.vast.ai/manage-keys/ and pass api_key=..., set VAST_API_KEY, or run `vastai set api-key KEY`."
        ) from None
    register_secret(key)
    return str(key)


# =========================================================================== errors


async def guarded(what: str, awaitable: Awaitable[T]) -> T:
    """Await an SDK call; its failure becomes a redacted :class:`VastApiError` naming ``what``.

    The original exception is not chained (its text may carry a key): the new
    one is raised outside the ``except`` block, so ``__context__`` stays empty.
    """
    try:
        return await awaitable
    except (asyncio.CancelledError, VastnbError):
        raise
    except Exception as exc:  # noqa: BLE001
        err = VastApiError(redact(f"{what} failed: {_describe(exc)}"))
    raise err


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text and name not in ("Exception", "RuntimeError") else (text or name)


# =========================================================================== session


@dataclass
class DeployResult:
    deployment_id: int
    endpoint_id: int
    action: str
    uploaded: bool
    workergroup_id: int | None
    file_hash: str


class SdkSession:
    """The SDK's clients for one deployment. Create on any thread; use the async methods on one event loop."""

    def __init__(
        self,
        api_key: str,
        *,
        name: str,
        tag: str = "default",
        version_label: str | None = None,
        ttl: float | None = None,
        webserver_url: str | None = None,
        autoscaler_url: str | None = None,
        autoscaler_instance: str = "prod",
    ) -> None:
        from vastai.serverless.remote.deploy import Deployment as SdkDeployment

        self.api_key = api_key
        register_secret(api_key)
        self.webserver_url = (webserver_url or DEFAULT_WEBSERVER).rstrip("/")
        self.sdk = SdkDeployment(
            api_key=api_key, ttl=ttl, autoscaler_instance=autoscaler_instance, autoscaler_url=autoscaler_url,
            webserver_url=self.webserver_url, name=name, tag=tag, version_label=version_label,
        )
        self.async_client = self.sdk.async_client
        self.client = self.sdk.client  # CoroutineServerless sharing async_client's session
        self.autoscaler_url: str = self.client.autoscaler_url.rstrip("/")
        self.managed: Any = None  # ManagedDeployment after deploy()
        self.endpoint: Any = None  # routing Endpoint
        _install_log_redaction()

    async def open(self) -> None:
        """Prepare the SSL context the SDK would otherwise download from console.vast.ai for any server."""
        if self.async_client._ssl_context is None:
            if not (self.webserver_url.startswith("https") or self.autoscaler_url.startswith("https")):
                self.async_client._ssl_context = ssl.create_default_context()
            else:
                ctx = await guarded("fetching Vast's root certificate", self.async_client.get_ssl_context())
                ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT
        await self.async_client._get_session(use_context=True)

    async def close(self) -> None:
        try:
            await self.async_client.close(force=True)
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------------ deploy
    async def deploy(self, module_source: str, image: ImageSpec, *, autoscaling: dict[str, Any],
                     packages: tuple[str, ...] = ()) -> DeployResult:
        """Register (and upload, and soft-update) a deployment module through the SDK, as ``async_ensure_ready`` would.

        ``packages`` (importable names, e.g. ``("vastnb", "cloudpickle")``) travel in the tarball as
        their source files, so workers import exactly the notebook's versions.
        """
        from vastai.serverless.remote.deploy import _FullDeployment

        name = self.sdk.name
        staging = tempfile.mkdtemp(prefix="vastnb-deploy-")
        try:
            path = os.path.join(staging, "deployment.py")
            with open(path, "w", encoding="utf-8") as f:
                f.write(module_source)
            copies = [stage_package(p, os.path.join(staging, "pkgs")) for p in packages]
            self.sdk._image = _sdk_image(image, copies)
            self.sdk._autoscaling = dict(autoscaling)
            self.sdk.root_module = "deployment"
            self.sdk.file = path
            tar_path = os.path.join(staging, "deployment.tar.gz")
            config = self.sdk._into_deployment_config_and_tarball(tar_path)
            managed = await guarded(f"registering deployment {name!r} with Vast", self.client.put_deployment(config))
            self.managed = managed  # registered: from here on there is an endpoint to tear down
            uploaded = managed.needs_upload
            if uploaded:
                await guarded(f"uploading deployment {name!r}", managed.upload(tar_path))
            wg_id = managed.workergroup_id
            if managed.action == "soft_update":
                wg_id = await guarded(f"starting the rolling update of deployment {name!r}", self._soft_update(managed))
            self.sdk._inner = _FullDeployment("deployment", managed)
            return DeployResult(managed.id, managed.endpoint_id, managed.action or "", uploaded, wg_id, config.file_hash)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    async def _soft_update(self, managed: Any) -> int | None:
        wg_id = managed.workergroup_id or await self.client.find_workergroup_for_endpoint(managed.endpoint_id)
        if wg_id:
            await self.client.update_workers(wg_id)
        return int(wg_id) if wg_id else None

    async def routing_endpoint(self) -> Any:
        """The endpoint object calls are routed through (its data carries the endpoint's own key)."""
        if self.endpoint is None:
            from vastai.serverless.client.endpoint import Endpoint

            data = await self.endpoint_data()
            self.endpoint = Endpoint(client=self.client, data=data)
        return self.endpoint

    # ------------------------------------------------------------------ status
    async def endpoint_data(self) -> Any:
        endpoint_id = self.managed.endpoint_id
        data = await guarded(f"reading endpoint {endpoint_id}", self.client.fetch_endpoint(endpoint_id))
        register_secret(data.api_key)
        return data

    async def workers(self) -> list[tuple[Any, dict[str, Any]]]:
        """``(Worker, raw row)`` pairs; the raw row keeps fields ``Worker`` drops (price, GPU)."""
        from vastai.serverless.client.connection import _make_request
        from vastai.serverless.client.worker import Worker

        endpoint_id = self.managed.endpoint_id
        result = await guarded(f"listing the workers of endpoint {endpoint_id}", _make_request(
            client=self.client, url=self.autoscaler_url, route="/get_endpoint_workers/", api_key=self.api_key,
            body={"id": endpoint_id, "api_key": self.api_key}, method="POST", timeout=15, retries=1))
        if not result.get("ok"):
            raise VastApiError(redact(f"listing the workers of endpoint {endpoint_id} failed: HTTP "
                                      f"{result.get('status')} {result.get('text', '')[:300]}"))
        rows = result.get("json")
        if isinstance(rows, dict):  # "endpoint may not be ready for query" (as the SDK treats it)
            return []
        return [(Worker.from_dict(r), r) for r in rows or [] if isinstance(r, dict) and r.get("id") is not None]

    async def heartbeat(self) -> None:
        """POST the deployment's ttl heartbeat (the SDK's route; its own helper has no timeout)."""
        from vastai.serverless.client.connection import _make_request

        deployment_id = self.managed.id
        result = await guarded(f"sending the ttl heartbeat of deployment {deployment_id}", _make_request(
            client=self.client, url=self.webserver_url, route=f"/api/v0/deployment/{deployment_id}/heartbeat/",
            api_key=self.api_key, method="POST", timeout=10, retries=1))
        if not result.get("ok"):
            raise VastApiError(f"the ttl heartbeat of deployment {deployment_id} got HTTP {result.get('status')}")

    def delete_deployment(self) -> None:
        """Delete the deployment (the SDK's synchronous ``VastAI.delete_deployment``, from the caller's thread)."""
        self.vast().delete_deployment(self.managed.id)

    async def delete_endpoint(self) -> None:
        endpoint_id = self.managed.endpoint_id
        await guarded(f"deleting endpoint {endpoint_id}", self.client.delete_endpoint(endpoint_id))

    # ------------------------------------------------------------------ synchronous SDK (caller's thread)
    def vast(self) -> Any:
        """The SDK's synchronous ``VastAI`` client (requests), for calls made from the caller's thread."""
        from vastai import VastAI

        sdk = VastAI(api_key=self.api_key, server_url=self.webserver_url, retry=2)
        sdk.client.timeout = 20
        return sdk


_SHIPPED = (".py", ".json", ".typed")


def stage_package(name: str, dest: str) -> tuple[str, str]:
    """Copy package ``name``'s source files (no caches) under ``dest``; the ``(src, ./name)`` copy entry for the tarball."""
    import importlib

    module = importlib.import_module(name)
    src = os.path.dirname(os.path.abspath(module.__file__ or ""))
    out = os.path.join(dest, name)
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        rel = os.path.relpath(root, src)
        for fname in sorted(files):
            if fname.endswith(_SHIPPED):
                target = os.path.join(out, rel, fname)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copyfile(os.path.join(root, fname), target)
    return (out, f"./{name}")


def _sdk_image(image: ImageSpec, copies: list[tuple[str, str]]) -> Any:
    """The SDK's ``Image`` for an :class:`~vastnb.spec.ImageSpec`, plus vastnb's own files to ship.

    The SDK's ``Image`` has no public way to set what its chained methods record, so its attributes are set
    here, in one place (checked against vastai 1.9.1 by the tests)."""
    from vastai.serverless.remote.base import Image as SdkImage

    out = SdkImage(image.name, image.storage, **dict(image.docker_login))
    out._envs = dict(image.envs)
    out._runs = list(image.runs)
    out._venv = image.venv
    out._pip_installs = list(image.pip_installs)
    out._apt_gets = list(image.apt_gets)
    out._requires = image.requirement.to_vast()
    out._copies = list(image.copies) + list(copies)
    out._ports = set(image.ports)
    return out


# =========================================================================== offers


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
