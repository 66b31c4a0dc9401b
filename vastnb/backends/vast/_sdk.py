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
from typing import Any, Awaitable, TypeVar

from ...errors import ConfigurationError, VastnbError
from ...spec import ImageSpec

__all__ = [
    "NAME_PATTERN",
    "SdkSession",
    "VastApiError",
    "check_name",
    "redact",
    "register_secret",
    "resolve_api_key",
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


# =========================================================================== names

#: What Vast's server accepts as a deployment name (and tag); checked before anything is sent.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_name(name: str, tag: str) -> None:
    """Refuse a deployment name or tag Vast's server would refuse, with one it would take."""
    for label, value in (("name", name), ("tag", tag)):
        if NAME_PATTERN.fullmatch(value):
            continue
        fixed = re.sub(r"[^A-Za-z0-9._-]+", "-", value).lstrip("._-")[:128] or "notebook"
        raise ConfigurationError(
            f"Vast refuses the deployment {label} {value!r}: it must be 1-128 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit. Pass {label}={fixed!r} to vastnb.Deployment(...) (or "
            f"%vast_deployment) instead.")


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
        from ._route import RouteState

        self.route = RouteState()  # what /route/ said last (shared by every request of this deployment)
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
            managed = await self._register(config)
            self.managed = managed  # registered: from here on there is an endpoint to tear down
            uploaded = managed.needs_upload
            if uploaded:
                await guarded(f"uploading deployment {name!r}", managed.upload(tar_path))
            # Vast's answer may leave out the workergroup (logs and rolling updates need it): look it up then
            wg_id = managed.workergroup_id or await self.client.find_workergroup_for_endpoint(managed.endpoint_id)
            if managed.action == "soft_update":
                wg_id = await guarded(f"starting the rolling update of deployment {name!r}", self._soft_update(wg_id))
            self.sdk._inner = _FullDeployment("deployment", managed)
            return DeployResult(managed.id, managed.endpoint_id, managed.action or "", uploaded, wg_id, config.file_hash)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    async def _register(self, config: Any) -> Any:
        """``PUT deployments/``; a refused API key is said in plain words (it is the first request that needs it)."""
        name = self.sdk.name
        try:
            return await guarded(f"registering deployment {name!r} with Vast", self.client.put_deployment(config))
        except VastApiError as exc:
            status = re.search(r"HTTP (\d{3})", str(exc))
            if status is None or status.group(1) not in ("401", "403"):
                raise
            err = VastApiError(
                f"Vast refused the API key while registering deployment {name!r} (HTTP {status.group(1)}); nothing "
                "was deployed. Check the key at https://cloud.vast.ai/manage-keys/ (it may be mistyped, revoked or "
                "lack serverless permissions) and pass api_key=..., set VAST_API_KEY, or run `vastai set api-key KEY`.")
        raise err

    async def _soft_update(self, wg_id: Any) -> int | None:
        if wg_id:
            await self.client.update_workers(wg_id)
        return int(wg_id) if wg_id else None

    async def routing_endpoint(self) -> Any:
        """The endpoint object calls are routed through (its data carries the endpoint's own key).

        It retries ``/route/``'s transient failures and remembers what ``/route/`` said last (:mod:`._route`)."""
        if self.endpoint is None:
            from ._route import RoutingEndpoint

            data = await self.endpoint_data()
            self.endpoint = RoutingEndpoint(client=self.client, data=data, route=self.route)
        return self.endpoint

    # ------------------------------------------------------------------ status
    async def endpoint_data(self) -> Any:
        endpoint_id = self.managed.endpoint_id
        data = await guarded(f"reading endpoint {endpoint_id}", self.client.fetch_endpoint(endpoint_id))
        register_secret(data.api_key)
        return data

    async def workers(self) -> list[dict[str, Any]] | None:
        """The raw worker rows of ``/get_endpoint_workers/``; None when Vast says nothing about them yet.

        Both documented shapes are accepted: a list of rows (what the SDK reads) and ``{"workers": [...]}`` (the
        OpenAPI file); ``{"error_msg": ...}`` means "not ready for query" (None, not an empty list, so no worker is
        taken for gone); a plain-string answer is the documented error."""
        from vastai.serverless.client.connection import _make_request

        endpoint_id = self.managed.endpoint_id
        what = f"listing the workers of endpoint {endpoint_id}"
        result = await guarded(what, _make_request(
            client=self.client, url=self.autoscaler_url, route="/get_endpoint_workers/", api_key=self.api_key,
            body={"id": endpoint_id, "api_key": self.api_key}, method="POST", timeout=15, retries=1,
            allow_non_json=True))
        if not result.get("ok"):
            raise VastApiError(redact(f"{what} failed: HTTP {result.get('status')} {result.get('text', '')[:300]}"))
        data = result.get("json") if result.get("json") is not None else result.get("content")
        if isinstance(data, dict) and isinstance(data.get("workers"), list):
            data = data["workers"]
        if isinstance(data, list):
            return [row for row in data if isinstance(row, dict)]
        if isinstance(data, dict):  # "endpoint may not be ready for query" (as the SDK treats it)
            return None
        text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
        raise VastApiError(redact(f"{what} failed: Vast answered {text.strip()[:300]!r}"))

    async def endpoint_exists(self) -> bool:
        """Whether Vast still lists this deployment's endpoint (raises when it cannot tell)."""
        from vastai.serverless.client.connection import _make_request

        endpoint_id = self.managed.endpoint_id
        result = await guarded(f"checking endpoint {endpoint_id}", _make_request(
            client=self.client, url=self.webserver_url, route=f"/api/v0/endptjobs/{endpoint_id}/",
            api_key=self.api_key, method="GET", timeout=15, retries=2))
        if result.get("status") == 404:
            return False
        if result.get("ok"):
            return True
        raise VastApiError(redact(f"checking endpoint {endpoint_id} failed: HTTP {result.get('status')} "
                                  f"{result.get('text', '')[:300]}"))

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
