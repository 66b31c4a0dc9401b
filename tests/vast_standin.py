"""A STAND-IN for Vast's control plane, on loopback, for tests. It is not Vast.

We cannot reach Vast's cloud from the test machines, so this aiohttp server
plays the console API (``/api/v0/...``), the autoscaler (``/route/``,
``/get_endpoint_workers/``, ``/update_workers/``, ``/pubkey/``, the worker
reports) and the presigned upload/download URLs, in one process. The official
SDK is the client under test (pointed here by its ``webserver_url`` and
``autoscaler_url`` parameters), and official worker runtimes report here and
bootstrap from here.

Request and response shapes come from the SDK itself, not from guesses:

* ``PUT /api/v0/deployments/`` bodies are parsed with the SDK's
  ``DeploymentConfig`` (unknown fields fail) and answered with the fields
  ``DeploymentPutResponse.from_dict`` reads; the action follows the SDK's update
  tiers: new (name, tag) → ``created``; another ``file_hash`` → ``soft_update``
  (with an upload URL); only autoscaling changed → ``autoscale_update``; else
  ``exists`` (no upload URL, so the SDK uploads nothing).
* Endpoint rows carry ``EndpointData.from_dict``'s fields; worker rows
  ``Worker.from_dict``'s, plus a price (``dph_total``) and ``gpu_name``.
* ``/route/`` answers a body with ``url`` (READY) and the ``AuthData`` fields the
  official worker checks, signed the way it verifies (RSA PKCS#1 v1.5, SHA-256,
  over ``json.dumps({"url": url}, indent=4, sort_keys=True)``, public key at
  ``/pubkey/``), or a body without ``url`` (WAITING).
* Worker rows of attached workers are derived from the official worker's own
  ``/worker_status/`` reports (the stand-in's rule: an ``error_msg`` means
  ERROR, ``loadtime > 0`` means IDLE, else LOADING; perf = ``max_perf``).

Every control-plane request must carry the user's key (``Authorization: Bearer``
or ``?api_key=``); ``/route/`` must carry the endpoint's own key.

By default the stand-in is kinder than Vast. :class:`Realism` holds the REALISM
SWITCHES that make it as unkind as the real control plane is (per deployment
name, ``standin.realism[name] = Realism(...)``): inactive cold workers, ``/route/``
answering 502, plain-text 429 or slowly, worker lists in the OpenAPI file's
object shape or with only its fields (or a plain-string error), a second DELETE
answering 400, a PUT answer without ``workergroup_id``, minute-scale
provisioning on a fake clock, no matching offers, and a worker host that answers
a malicious pickle. Every answer is recorded (``responses``) so the contract
tests can validate them against Vast's OpenAPI files (``tests/vast_openapi/``).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable

from aiohttp import web

__all__ = ["FakeClock", "OfficialWorkerProcess", "Realism", "VastStandIn", "WorkerLauncher", "free_port_pair",
           "malicious_payload", "serve_module"]


class FakeClock:
    """The stand-in's provisioning clock: a test moves it (``advance``), so minutes pass in no time."""

    def __init__(self) -> None:
        self.now = 0.0

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclasses.dataclass
class Realism:
    """REALISM SWITCHES for one deployment: what the real Vast does that the stand-in spares by default."""

    inactive_workers: int = 0  # cold workers listed as STOPPED (the UI's "Inactive") beside the active ones
    route_failures: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # next /route/ answers: (HTTP status, plain text)
    slow_routes: int = 0  # how many /route/ answers come after `route_delay` seconds
    route_delay: float = 11.0  # the SDK gives up on /route/ after 10 s
    workers_shape: str = "list"  # "list" (what the SDK reads), "object" ({"workers": [...]}, the OpenAPI file), "error" (a string)
    fieldless_rows: bool = False  # worker rows with only the OpenAPI file's fields: id, status, url, created_at
    second_delete_400: bool = False  # DELETE endptjobs/{id}/ after DELETE deployment/{id}/: 400 "delete update failed"
    sticky_endpoint: bool = False  # DELETE deployment/{id}/ leaves the endpoint, whose DELETE answers 400 (a real failure)
    omit_workergroup_id: bool = False  # PUT deployments/ answers without workergroup_id
    provisioning_s: float = 0.0  # seconds (of the fake clock) a worker spends CREATING, then LOADING, before it serves
    no_offers: bool = False  # no offer matches: no worker is ever recruited, /route/ says so
    malicious_host: str | None = None  # route every request to a worker host answering this file-writing pickle
    route_status: str = "waiting for workers"  # the status text of a "waiting" /route/ answer


def malicious_payload(marker: str) -> bytes:
    """A vastnb payload whose pickle, loaded without restriction, writes ``marker`` (as a host's exploit would)."""
    import pickle
    import struct

    class Exploit:
        def __reduce__(self) -> Any:
            return (exec, (f"with open({marker!r}, 'w') as f:\n    f.write('the host ran code in the notebook')",))

    main = pickle.dumps({"v": 1, "worker": "evil", "pid": 1, "ok": True, "value": Exploit(), "out": []}, protocol=5)
    return struct.pack("<IQ", 0, len(main)) + main


@dataclasses.dataclass
class StandInDeployment:
    id: int
    name: str
    tag: str
    config: dict[str, Any]
    endpoint_id: int
    workergroup_id: int
    file_hash: str
    version: int = 1
    tarball: bytes | None = None


class VastStandIn:
    """The stand-in server. ``start()`` it, read ``url``, ``stop()`` it."""

    def __init__(self, api_key: str | None = None) -> None:
        from Crypto.PublicKey import RSA

        self.api_key = api_key or "standin-user-key-" + secrets.token_hex(8)
        self.container_key = "standin-container-key-" + secrets.token_hex(8)
        self._rsa = RSA.generate(2048)
        self.deployments: dict[int, StandInDeployment] = {}
        self.endpoints: dict[int, dict[str, Any]] = {}
        self.workergroups: dict[int, dict[str, Any]] = {}
        self.attached: dict[int, dict[str, dict[str, Any]]] = {}  # endpoint id -> container id -> {price, gpu, ready}
        self.reports: dict[str, dict[str, Any]] = {}  # container id -> last /worker_status/ body
        self.extra_rows: dict[int, list[dict[str, Any]]] = {}  # endpoint id -> worker rows set by a test
        self.offers: list[dict[str, Any]] = []
        self.log_lines: list[str] = []
        self.requests: list[tuple[str, str, Any]] = []  # (method, path, json body)
        self.uploads: list[tuple[int, int]] = []  # (deployment id, bytes)
        self.update_workers_calls: list[int] = []
        self.heartbeats: list[tuple[int, float]] = []
        self.deleted_endpoints: dict[int, str] = {}  # endpoint id -> name, deleted with their deployment
        self.route_override: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None
        self.on_upload: Callable[[StandInDeployment, str], None] | None = None  # (deployment, action)
        self.broken_worker_hits = 0
        self.realism: dict[str, Realism] = {}  # deployment name -> its realism switches
        self.clock = FakeClock()
        self.responses: list[tuple[str, str, int, Any]] = []  # (method, route, status, JSON body or text)
        self._last_action: dict[int, str] = {}
        self._ids = itertools.count(101)
        self._reqnum = itertools.count(1)
        self._rr = itertools.count()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    # ------------------------------------------------------------------ running
    def start(self) -> "VastStandIn":
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._serve())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name="vast-standin", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    async def _serve(self) -> None:
        app = web.Application(client_max_size=1 << 30, middlewares=[self._record])
        r = app.router
        r.add_put("/api/v0/deployments/", self.put_deployment)
        r.add_get("/api/v0/deployments/", self.list_deployments)
        r.add_get("/api/v0/deployments", self.list_deployments)
        r.add_delete("/api/v0/deployments/", self.delete_deployments_by_name)
        r.add_post("/upload/{id}", self.upload)
        r.add_get("/api/v0/deployment/{id}/download_url/", self.download_url)
        r.add_get("/download/{id}", self.download)
        r.add_get("/api/v0/deployment/{id}/", self.get_deployment)
        r.add_delete("/api/v0/deployment/{id}/", self.delete_deployment)
        r.add_post("/api/v0/deployment/{id}/heartbeat/", self.heartbeat)
        r.add_get("/api/v0/endptjobs/", self.list_endpoints)
        r.add_get("/api/v0/endptjobs/{id}/", self.get_endpoint)
        r.add_delete("/api/v0/endptjobs/{id}/", self.delete_endpoint)
        r.add_get("/api/v0/workergroups/", self.list_workergroups)
        r.add_post("/api/v0/bundles/", self.bundles)
        r.add_post("/update_workers/", self.update_workers)
        r.add_post("/route/", self.route)
        r.add_get("/pubkey/", self.pubkey)
        r.add_post("/worker_status/", self.worker_status)
        r.add_post("/delete_requests/", self.ok)
        r.add_post("/get_endpoint_workers/", self.endpoint_workers)
        r.add_post("/get_endpoint_logs/", self.logs)
        r.add_post("/get_autogroup_logs/", self.logs)
        r.add_post("/broken-worker/{tail:.*}", self.broken_worker)
        r.add_post("/malicious-worker/{name}/{tail:.*}", self.malicious_worker)
        r.add_route("*", "/redirect-worker/{tail:.*}", self.redirect_worker)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> "VastStandIn":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ test controls
    def real(self, name: str | None) -> Realism:
        """The realism switches of deployment (or endpoint) ``name``; all off unless a test set them."""
        return self.realism.get(str(name), Realism())

    def attach_worker(self, endpoint_id: int, container_id: str, *, price: float = 0.5, gpu: str = "RTX 4090") -> None:
        """A worker (official runtime started by the test, reporting here) belongs to ``endpoint_id``."""
        name = self.endpoints.get(endpoint_id, {}).get("endpoint_name")
        self.attached.setdefault(endpoint_id, {})[str(container_id)] = {
            "price": price, "gpu": gpu, "ready": False, "url": None, "started": time.time(),
            "serves_at": self.clock.now + self.real(name).provisioning_s}

    def mark_ready(self, container_id: str, url: str) -> None:
        """Route to this worker now (its reports say so only every 10 s)."""
        for workers in self.attached.values():
            if str(container_id) in workers:
                workers[str(container_id)].update(ready=True, url=url)

    def backend_options(self, **overrides: Any) -> dict[str, Any]:
        """``VastBackend(...)`` options pointing the official SDK at this stand-in (quick polls, short waits)."""
        return {"api_key": self.api_key, "webserver_url": self.url, "autoscaler_url": self.url, "poll_interval": 0.2,
                "max_poll_interval": 1.0, "ready_timeout": 60.0, **overrides}

    def endpoint_key(self, endpoint_id: int) -> str:
        return str(self.endpoints[endpoint_id]["api_key"])

    def deployment_named(self, name: str, tag: str = "default") -> StandInDeployment:
        return next(d for d in self.deployments.values() if d.name == name and d.tag == tag)

    def calls_to(self, method: str, path_prefix: str) -> list[Any]:
        return [body for m, p, body in self.requests if m == method and p.startswith(path_prefix)]

    # ------------------------------------------------------------------ helpers
    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body: Any = None
        if request.content_type == "application/json" and request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = None
        self.requests.append((request.method, request.path, body))
        response = await handler(request)
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else request.path
        if isinstance(response, web.Response) and response.body is not None and response.content_type in (
                "application/json", "text/plain"):
            raw = bytes(response.body)  # type: ignore[arg-type]
            sent: Any = json.loads(raw) if response.content_type == "application/json" else raw.decode()
            self.responses.append((request.method, route, response.status, sent))
        return response

    def _authorized(self, request: web.Request, key: str | None = None) -> bool:
        wanted = key or self.api_key
        header = request.headers.get("Authorization", "")
        return header == f"Bearer {wanted}" or request.query.get("api_key") == wanted

    def _denied(self) -> web.Response:
        return web.json_response({"success": False, "error": "invalid api key"}, status=401)

    async def ok(self, request: web.Request) -> web.Response:
        return web.json_response({"success": True})

    # ------------------------------------------------------------------ deployments
    async def put_deployment(self, request: web.Request) -> web.Response:
        from vastai.data.deployment import DeploymentConfig

        if not self._authorized(request):
            return self._denied()
        body = await request.json()
        try:
            DeploymentConfig(**body)  # the SDK's own shape; unknown fields raise
        except TypeError as exc:
            return web.json_response({"success": False, "error": str(exc)}, status=400)
        name, tag = body["name"], body.get("tag") or "default"
        existing = next((d for d in self.deployments.values() if d.name == name and d.tag == tag), None)
        upload = True
        if existing is None:
            dep_id, ep_id, wg_id = next(self._ids), next(self._ids), next(self._ids)
            existing = StandInDeployment(dep_id, name, tag, body, ep_id, wg_id, body["file_hash"])
            self.deployments[dep_id] = existing
            self.endpoints[ep_id] = {
                "id": ep_id, "endpoint_name": name if tag == "default" else f"{name}-{tag}",
                "api_key": "standin-endpoint-key-" + secrets.token_hex(8), "user_id": 7, "created_at": time.time(),
                "endpoint_state": "active", **{k: body.get(k) for k in _SCALING if body.get(k) is not None},
            }
            self.workergroups[wg_id] = {"id": wg_id, "endpoint_id": ep_id, "search_params": body.get("search_params")}
            action = "created"
        elif existing.file_hash != body["file_hash"]:
            existing.file_hash, existing.version, action = body["file_hash"], existing.version + 1, "soft_update"
        elif any(existing.config.get(k) != body.get(k) for k in _SCALING):
            action, upload = "autoscale_update", False
        else:
            action, upload = "exists", False
        existing.config = body
        self._last_action[existing.id] = action
        self.endpoints[existing.endpoint_id].update({k: body.get(k) for k in _SCALING if body.get(k) is not None})
        reply: dict[str, Any] = {"success": True, "action": action, "deployment_id": existing.id,
                                 "endpoint_id": existing.endpoint_id, "workergroup_id": existing.workergroup_id}
        if self.real(name).omit_workergroup_id:
            del reply["workergroup_id"]
        if upload:
            reply["upload_url"] = f"{self.url}/upload/{existing.id}"
            reply["upload_fields"] = {"key": f"deployments/{existing.id}/v{existing.version}.tar.gz",
                                      "policy": "stand-in"}
        return web.json_response(reply)

    async def upload(self, request: web.Request) -> web.Response:
        dep = self.deployments.get(int(request.match_info["id"]))
        if dep is None:
            return web.Response(status=404)
        reader = await request.multipart()
        fields: dict[str, str] = {}
        while True:
            part = await reader.next()
            if part is None:
                break
            if part.name == "file":  # type: ignore[union-attr]
                if part.headers.get("Content-Type") != "application/gzip":  # type: ignore[union-attr]
                    return web.Response(status=400, text="file part must be application/gzip")
                dep.tarball = bytes(await part.read())  # type: ignore[union-attr]
            else:
                fields[str(part.name)] = await part.text()  # type: ignore[union-attr]
        if fields.get("policy") != "stand-in" or dep.tarball is None:
            return web.Response(status=400, text="missing presigned fields or file")
        self.uploads.append((dep.id, len(dep.tarball)))
        if self.on_upload is not None:
            self.on_upload(dep, self._last_action.get(dep.id, "created"))
        return web.Response(status=204)

    async def download_url(self, request: web.Request) -> web.Response:
        if not (self._authorized(request) or self._authorized(request, self.container_key)):
            return self._denied()
        dep_id = int(request.match_info["id"])
        return web.json_response({"success": True, "download_url": f"{self.url}/download/{dep_id}"})

    async def download(self, request: web.Request) -> web.Response:
        dep = self.deployments.get(int(request.match_info["id"]))
        if dep is None or dep.tarball is None:
            return web.Response(status=404)
        return web.Response(body=dep.tarball, content_type="application/gzip")

    async def get_deployment(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._denied()
        dep = self.deployments.get(int(request.match_info["id"]))
        if dep is None:
            return web.json_response({"success": False}, status=404)
        c = dep.config
        return web.json_response({"deployment": {
            "id": dep.id, "name": dep.name, "tag": dep.tag, "endpoint_id": dep.endpoint_id, "endpoint_state": "active",
            "worker_count": len(self.attached.get(dep.endpoint_id, {})), "s3_key": None, "env": c.get("env"),
            "image": c["image"], "storage": c.get("storage", 50.0), "search_params": c.get("search_params"),
            "file_hash": dep.file_hash, "current_version_id": dep.version, "last_healthy_version_id": dep.version,
            "ttl": c.get("ttl"), "last_client_heartbeat": max((t for i, t in self.heartbeats if i == dep.id), default=None),
            "created_at": 0.0, "updated_at": 0.0}})

    async def delete_deployment(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._denied()
        dep = self.deployments.pop(int(request.match_info["id"]), None)
        if dep is None:
            return web.json_response({"success": False, "error": "no such deployment"}, status=404)
        self._forget(dep)
        return web.json_response({"success": True})

    def _forget(self, dep: StandInDeployment) -> None:
        """A deleted deployment takes its endpoint and workergroup along (as Vast's DELETE deployment does)."""
        if self.real(dep.name).sticky_endpoint:
            return
        self.endpoints.pop(dep.endpoint_id, None)
        self.workergroups.pop(dep.workergroup_id, None)
        if self.real(dep.name).second_delete_400:
            self.deleted_endpoints[dep.endpoint_id] = dep.name

    async def list_deployments(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._denied()
        return web.json_response({"success": True, "deployments": [
            {"id": d.id, "name": d.name, "tag": d.tag, "image": d.config["image"], "endpoint_id": d.endpoint_id,
             "file_hash": d.file_hash, "current_version_id": d.version, "ttl": d.config.get("ttl"),
             "storage": d.config.get("storage", 50.0), "created_at": 0.0, "updated_at": 0.0}
            for d in self.deployments.values()]})

    async def delete_deployments_by_name(self, request: web.Request) -> web.Response:
        """``DELETE /api/v0/deployments/ {"name", "tag"?}``: the SDK's ``delete_deployment_by_name`` (every tag by default)."""
        if not self._authorized(request):
            return self._denied()
        body = await request.json()
        doomed = [d for d in self.deployments.values()
                  if d.name == body.get("name") and body.get("tag") in (None, d.tag)]
        for dep in doomed:
            del self.deployments[dep.id]
            self._forget(dep)
        return web.json_response({"success": True, "count": len(doomed)})

    async def heartbeat(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._denied()
        dep_id = int(request.match_info["id"])
        if dep_id not in self.deployments:
            return web.json_response({"success": False}, status=404)
        self.heartbeats.append((dep_id, time.time()))
        return web.json_response({"success": True})

    # ------------------------------------------------------------------ endpoints and workergroups
    async def list_endpoints(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._denied()
        return web.json_response({"success": True, "results": list(self.endpoints.values())})

    async def get_endpoint(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._denied()
        row = self.endpoints.get(int(request.match_info["id"]))
        if row is None:
            return web.json_response({"success": False, "error": "no such endpoint"}, status=404)
        return web.json_response({"success": True, "result": row})

    async def delete_endpoint(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._denied()
        endpoint_id = int(request.match_info["id"])
        if self.real(self.endpoints.get(endpoint_id, {}).get("endpoint_name")).sticky_endpoint:
            return web.json_response({"success": False, "error": "delete update failed"}, status=400)
        if self.endpoints.pop(endpoint_id, None) is None:
            if endpoint_id in self.deleted_endpoints:  # realism: gone with its deployment, and Vast says 400
                return web.json_response({"success": False, "error": "delete update failed"}, status=400)
            return web.json_response({"success": False, "error": "no such endpoint"}, status=404)
        return web.json_response({"success": True})

    async def list_workergroups(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._denied()
        return web.json_response({"success": True, "results": list(self.workergroups.values())})

    async def update_workers(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._denied()
        body = await request.json()
        self.update_workers_calls.append(int(body["workergroup_id"]))
        return web.json_response({"success": True})

    # ------------------------------------------------------------------ autoscaler
    async def pubkey(self, request: web.Request) -> web.Response:
        return web.Response(text=self._rsa.publickey().export_key().decode())

    def _sign(self, url: str) -> str:
        from Crypto.Hash import SHA256
        from Crypto.Signature import pkcs1_15

        message = json.dumps({"url": url}, indent=4, sort_keys=True)
        return base64.b64encode(pkcs1_15.new(self._rsa).sign(SHA256.new(message.encode()))).decode()

    async def route(self, request: web.Request) -> web.Response:
        body = await request.json()
        endpoint = next((e for e in self.endpoints.values() if e["endpoint_name"] == body.get("endpoint")), None)
        if endpoint is None:
            return web.json_response({"error": f"no endpoint {body.get('endpoint')!r}"}, status=404)
        key = endpoint["api_key"]
        if body.get("api_key") != key or not self._authorized(request, key):
            return self._denied()
        request_idx = body.get("request_idx") or next(self._reqnum)
        real = self.real(endpoint["endpoint_name"])
        if real.route_failures:
            status, text = real.route_failures.pop(0)
            return web.Response(status=status, text=text)  # plain text, no Retry-After (as Vast's 429s come)
        if real.slow_routes > 0:  # after the failures: the client gives up on it, the answer goes nowhere
            real.slow_routes -= 1
            await asyncio.sleep(real.route_delay)
        if real.malicious_host is not None:
            host = f"{self.url}/malicious-worker/{endpoint['endpoint_name']}"
            return web.json_response(self.signed_route(host, endpoint["endpoint_name"], body.get("cost", 100), request_idx))
        if self.route_override is not None:
            forced = self.route_override(body)
            if forced is not None:
                return web.json_response({**forced, "request_idx": request_idx})
        workers = self.attached.get(endpoint["id"], {})
        ready = [w for w in workers.values() if w["ready"] and w["url"] and self.clock.now >= w["serves_at"]]
        if not ready:
            status = ("no offers match the search parameters" if real.no_offers
                      else f"{real.route_status} (0 ready, {len(workers)} loading)")
            return web.json_response({"endpoint": endpoint["endpoint_name"], "request_idx": request_idx,
                                      "status": status})
        url = ready[next(self._rr) % len(ready)]["url"]
        return web.json_response(self.signed_route(url, endpoint["endpoint_name"], body.get("cost", 100), request_idx))

    def signed_route(self, url: str, endpoint_name: str, cost: Any = 100, request_idx: int = 1) -> dict[str, Any]:
        # cost goes back as the number the client sent: the official worker adds it to its load for sessions
        return {"url": url, "signature": self._sign(url), "reqnum": next(self._reqnum), "request_idx": request_idx,
                "cost": cost, "endpoint": endpoint_name}

    async def worker_status(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.reports[str(body["id"])] = body
        return web.json_response({"success": True})

    def _row(self, cid: str, info: dict[str, Any], real: Realism) -> dict[str, Any]:
        rep = self.reports.get(cid)
        left = info["serves_at"] - self.clock.now
        if left > 0:  # realism: still provisioning on the fake clock
            status = "CREATING" if left > real.provisioning_s / 2 else "LOADING"
            rep, perf = None, 0.0
        elif rep is None:
            status, perf = "CREATING", 0.0
        elif rep.get("error_msg"):
            status, perf = "ERROR", 0.0
        elif rep.get("loadtime", 0) > 0:
            status, perf = "IDLE", float(rep.get("max_perf") or 0.0)
        else:
            status, perf = "LOADING", 0.0
        rep = rep or {}
        return {"id": int(cid), "status": status, "cur_load": float(rep.get("cur_load") or 0.0),
                "new_load": float(rep.get("new_load") or 0.0), "cur_load_rolling_avg": 0.0,
                "cur_perf": float(rep.get("cur_perf") or 0.0), "perf": perf, "measured_perf": perf, "dlperf": 0.0,
                "reliability": 1.0, "reqs_working": int(rep.get("num_requests_working") or 0),
                "disk_usage": float(rep.get("disk_usage") or 0.0), "loaded_at": 0.0, "started_at": info["started"],
                "dph_total": info["price"], "gpu_name": info["gpu"], "error_msg": rep.get("error_msg") or None}

    async def endpoint_workers(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not (self._authorized(request) and body.get("api_key") == self.api_key):
            return self._denied()
        ep_id = int(body["id"])
        if ep_id not in self.endpoints:
            return web.json_response({"error_msg": "endpoint not found"})
        name = self.endpoints[ep_id]["endpoint_name"]
        real = self.real(name)
        if real.workers_shape == "error":
            return web.json_response(f"authenticate_endpoint_apikey: invalid api_key or endpoint {name} not found")
        rows = [self._row(cid, info, real) for cid, info in self.attached.get(ep_id, {}).items()]
        rows += [self._inactive_row(ep_id, i) for i in range(real.inactive_workers)]
        rows += list(self.extra_rows.get(ep_id, []))
        if real.fieldless_rows:
            rows = [{"id": r["id"], "status": r["status"], "url": f"http://198.51.100.{i + 1}:3000",
                     "created_at": "2025-06-01T12:00:00Z"} for i, r in enumerate(rows)]
        return web.json_response({"workers": rows} if real.workers_shape == "object" else rows)

    def _inactive_row(self, endpoint_id: int, i: int) -> dict[str, Any]:
        """A cold worker Vast keeps stopped with its model on disk (its GPU is not billed)."""
        return {"id": endpoint_id * 1000 + i, "status": "STOPPED", "cur_load": 0.0, "new_load": 0.0,
                "cur_load_rolling_avg": 0.0, "cur_perf": 0.0, "perf": 0.0, "measured_perf": 0.0, "dlperf": 0.0,
                "reliability": 1.0, "reqs_working": 0, "disk_usage": 12.0, "loaded_at": 0.0, "started_at": time.time(),
                "dph_total": 0.3, "gpu_name": "RTX 4090"}

    async def logs(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not (self._authorized(request) and body.get("api_key") == self.api_key):
            return self._denied()
        text = "\n".join(self.log_lines)
        return web.json_response({"info0": text, "info1": text, "trace": "", "debug": "", "logs": text})

    async def broken_worker(self, request: web.Request) -> web.Response:
        """A worker URL that always answers 500 (what the SDK retries forever)."""
        self.broken_worker_hits += 1
        return web.Response(status=500, text="stand-in: broken worker")

    async def malicious_worker(self, request: web.Request) -> web.Response:
        """A worker host that answers every request with a pickle that runs code where it is loaded."""
        real = self.real(request.match_info["name"])
        data = malicious_payload(real.malicious_host or "/dev/null")
        return web.json_response({"result": {"ok": {"type": "bytes", "contents": base64.b64encode(data).decode()}}})

    async def redirect_worker(self, request: web.Request) -> web.Response:
        """A worker URL that redirects to itself, query string included, until the client gives up."""
        raise web.HTTPFound(location=str(request.rel_url))

    # ------------------------------------------------------------------ offers
    async def bundles(self, request: web.Request) -> web.Response:
        from vastnb.query import Query

        if not self._authorized(request):
            return self._denied()
        body = await request.json()
        query = Query({k: v for k, v in body.items() if isinstance(v, dict)})
        found = [o for o in self.offers if query.matches(o)]
        if any(r.no_offers for r in self.realism.values()):
            found = []
        for column, direction in reversed(body.get("order") or []):
            found.sort(key=lambda o: o.get(column) or 0, reverse=direction == "desc")
        if body.get("limit"):
            found = found[: int(body["limit"])]
        return web.json_response({"offers": found})


_SCALING = ("cold_workers", "max_workers", "min_load", "min_cold_load", "target_util", "cold_mult", "max_queue_time",
            "target_queue_time", "inactivity_timeout")


# =========================================================================== official worker processes


def free_port_pair() -> int:
    """A port p with p and p + 1 free (the official worker also listens on WORKER_PORT + 1)."""
    for _ in range(200):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        if port >= 65535:
            continue
        try:
            with socket.socket() as b:
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no pair of free ports")


class OfficialWorkerProcess:
    """The OFFICIAL Vast worker runtime (``python -m vastai.serverless.remote.serve_deployment``) on loopback.

    It bootstraps the way a Vast worker does: with ``tarball`` it extracts that file
    (``DEBUG_DEPLOYMENT_TAR``), else it fetches its deployment's tarball from
    ``api_url`` (``/api/v0/deployment/{id}/download_url/``). It reports to and
    fetches the signing key from ``report_addr``; signatures are verified unless
    ``unsecured``.
    """

    def __init__(self, workdir: str, *, deployment_id: int, container_id: str, report_addr: str,
                 api_url: str | None = None, api_key: str = "", tarball: str | None = None,
                 unsecured: bool = False) -> None:
        self.workdir = workdir
        self.port = free_port_pair()
        self.url = f"http://127.0.0.1:{self.port}"
        self.container_id = str(container_id)
        self.log_path = os.path.join(workdir, "worker.log")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "UNSECURED", "VAST_API_KEY")}
        env.update(
            IS_DEPLOYMENT="1", DEPLOYMENT_ID=str(deployment_id), CONTAINER_ID=self.container_id,
            REPORT_ADDR=report_addr, WORKER_PORT=str(self.port), **{f"VAST_TCP_PORT_{self.port}": str(self.port)},
            PUBLIC_IPADDR="127.0.0.1", MASTER_TOKEN="standin-mtoken", PYTHONUNBUFFERED="1",
        )
        if api_url:
            env["VAST_API_URL"] = api_url
        if api_key:
            env["CONTAINER_API_KEY"] = api_key
        if tarball:
            env["DEBUG_DEPLOYMENT_TAR"] = tarball
        if unsecured:
            env["UNSECURED"] = "true"
        os.makedirs(workdir, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vastai.serverless.remote.serve_deployment"], cwd=workdir, env=env,
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the official runtime logs that its benchmark completed (it then marks itself loaded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if "Benchmark complete" in text:
                return
            if "Lifecycle startup failed" in text or self.process.poll() is not None:
                raise RuntimeError(f"the official worker failed to start:\n{text[-4000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"the official worker did not finish its benchmark in {timeout} s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(5)
        self._log.close()


def serve_module(standin: "VastStandIn", root: str, module_source: str, name: str, container_id: str,
                 deployment_id: int = 1) -> OfficialWorkerProcess:
    """An OFFICIAL worker serving ``module_source`` (a generated deployment module), tarred with the SDK's helpers
    as an upload would be, with vastnb and cloudpickle shipped beside it; the caller stops it."""
    from vastai.serverless.remote.base import Config
    from vastai.serverless.remote.utils import create_deployment_tarball

    from vastnb.backends.vast._sdk import stage_package

    os.makedirs(os.path.join(root, "src"), exist_ok=True)
    path = os.path.join(root, "src", "deployment.py")
    with open(path, "w") as fh:
        fh.write(module_source)
    copies = [stage_package(p, os.path.join(root, "pkgs")) for p in ("vastnb", "cloudpickle")]
    tar = os.path.join(root, "deployment.tar.gz")
    create_deployment_tarball(tar, Config(name, [], [], [], []), path, copies)
    return OfficialWorkerProcess(os.path.join(root, "run"), deployment_id=deployment_id, container_id=container_id,
                                 report_addr=standin.url, tarball=tar)


class WorkerLauncher:
    """The stand-in's autoscaler: starts an official worker when a deployment is created (or restarts it on a soft update).

    Only deployments whose names were ``enable``d get workers; the others stay worker-less.
    """

    def __init__(self, standin: VastStandIn, root: str) -> None:
        self.standin = standin
        self.root = root
        self.names: set[str] = set()
        self.workers: dict[int, OfficialWorkerProcess] = {}  # deployment id -> worker
        self.errors: list[BaseException] = []
        self.started: list[OfficialWorkerProcess] = []
        self._ids = itertools.count(9001)
        self._threads: list[threading.Thread] = []
        standin.on_upload = self._on_upload

    def enable(self, name: str) -> None:
        """Start workers for deployment ``name`` (a name ending in ``*``: every name with that prefix)."""
        self.names.add(name)

    def _enabled(self, name: str) -> bool:
        return name in self.names or any(n.endswith("*") and name.startswith(n[:-1]) for n in self.names)

    def _on_upload(self, dep: StandInDeployment, action: str) -> None:
        if not self._enabled(dep.name) or self.standin.real(dep.name).no_offers:  # no offer: nobody to recruit
            return
        thread = threading.Thread(target=self._launch, args=(dep,), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _launch(self, dep: StandInDeployment) -> None:
        try:
            old = self.workers.pop(dep.id, None)
            if old is not None:
                old.stop()
            cid = str(next(self._ids))
            self.standin.attach_worker(dep.endpoint_id, cid, price=0.42, gpu="RTX 4090")
            worker = OfficialWorkerProcess(
                os.path.join(self.root, f"worker-{cid}"), deployment_id=dep.id, container_id=cid,
                report_addr=self.standin.url, api_url=self.standin.url, api_key=self.standin.container_key)
            self.workers[dep.id] = worker
            self.started.append(worker)
            worker.wait_ready()
            self.standin.mark_ready(cid, worker.url)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the tests
            self.errors.append(exc)

    def wait_idle(self, timeout: float = 90.0) -> None:
        for thread in list(self._threads):
            thread.join(timeout)

    def stop(self) -> None:
        self.wait_idle(30)
        for worker in self.started:
            worker.stop()
