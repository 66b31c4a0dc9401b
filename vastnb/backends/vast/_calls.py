"""Frames to Vast workers through the SDK: deadlines, missing-code resends, readable failures.

One :meth:`FrameChannel.exchange` is one request the official SDK routes
(``queue_endpoint_request``: ``/route/``, then ``POST {worker}/remote/vastnb_frame``).
The SDK would wait forever for a ready worker and retry transport errors and
5xx forever; here every exchange has a deadline, 5xx retries are bounded
(``max_retries``), ``/route/``'s own transient failures are ridden out until the
deadline (:mod:`._route`), and a timeout says what it was waiting for (the
SDK's request tracker tells: no ready worker, retrying a failing worker, or
running; ``/route/``'s last words tell why).

Every frame is sealed with the deployment's frame key (:func:`vastnb.worker.vast.seal_frame`)
and every reply is untrusted input: it is loaded with :func:`vastnb.wire.loads_untrusted`
(no code from the host runs), unless the backend was told to trust its hosts.

:meth:`FrameChannel.send` adds vastnb's code delivery: a frame names the
function and contexts it needs by content hash; a worker that lacks them
answers ``missing`` and the frame goes again with them (the function's code is
sent up front while no worker has confirmed having it).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Callable

from ...errors import CallTimeout, QueueTimeout
from ...spec import ContextSpec, FunctionSpec
from ...wire import UntrustedReply, loads_untrusted
from ...wire import messages as m
from ...worker.vast import FRAME_ROUTE, PROTOCOL, PY, decode_frame, encode_frame, seal_frame
from ._sdk import SdkSession, VastApiError, redact
from ._status import StatusTracker

try:
    from vastai.serverless.client.request_status import RequestStatus
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "backend='vast' needs the official Vast SDK, which is not installed (or not importable: on Python >= 3.12 it "
        "also needs setuptools). Install both with `pip install 'vastnb[vast]'`."
    ) from _exc

__all__ = ["Deadline", "FrameChannel", "SessionGone", "write_output"]

MAX_RESENDS = 4


class SessionGone(Exception):
    """The cell session's worker is gone or closed the session."""


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.total = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()


class _Tracker(RequestStatus):  # type: ignore[misc]
    """The SDK's request tracker, remembering the last state before a cancel, to say what a timeout waited for."""

    last = "New"

    def __setattr__(self, key: str, value: Any) -> None:
        if key == "status" and value not in ("Cancelled", "Errored"):
            object.__setattr__(self, "last", value)
        object.__setattr__(self, key, value)


class FrameChannel:
    """Sends frames for one deployment; ``contexts`` is replaced when the notebook's contexts change."""

    def __init__(self, tracker: StatusTracker, *, eager_code: bool = True,
                 on_activity: Callable[[], None] = lambda: None) -> None:
        self.sdk: SdkSession | None = None
        self.tracker = tracker
        self.eager_code = eager_code
        self.on_activity = on_activity
        self.contexts: dict[str, ContextSpec] = {}
        self.confirmed: set[str] = set()  # function hashes some worker has
        self.frame_key = ""  # seals every frame (set when the deployment starts)
        self.trust_hosts = False  # load replies with plain pickle (VastBackend(trust_hosts=True))

    async def send(self, frame: dict[str, Any], spec: FunctionSpec | None, workload: float, deadline: Deadline,
                   what: str, retries: int | None, session: Any = None) -> dict[str, Any]:
        """Send a frame; when the worker answers ``missing``, resend with that code or those contexts."""
        contexts = dict(self.contexts)
        frame = {**frame, "contexts": {n: c.hash for n, c in contexts.items()}}
        send_code = spec is not None and self.eager_code and spec.hash not in self.confirmed
        send_contexts: set[str] = set()
        reply: dict[str, Any] = {}
        for _ in range(MAX_RESENDS):
            out = dict(frame)
            if send_code and spec is not None:
                out["code"] = [m.InstallFunction.of(spec)]
            if send_contexts:
                out["context_blobs"] = [contexts[n] for n in sorted(send_contexts) if n in contexts]
            reply = await self.exchange(out, workload, deadline, what, retries, session)
            worker, pid = str(reply.get("worker")), reply.get("pid")
            missing = reply.get("missing")
            if not missing:
                has = {spec.hash} if spec is not None and (reply.get("ok") or "error" in reply) else set()
                self.confirmed |= has
                self.tracker.apply_reply(worker, pid, code=has, call=frame["op"] == "call")
                return reply
            self.tracker.apply_reply(worker, pid)
            send_code = send_code or bool(spec is not None and spec.hash in missing.get("code", ()))
            send_contexts |= set(missing.get("contexts", ()))
        raise VastApiError(f"{what}: the workers kept answering {reply.get('message', 'missing code')!r} after "
                           f"{MAX_RESENDS} attempts; the deployment's code could not be delivered.")

    async def exchange(self, frame: dict[str, Any], workload: float, deadline: Deadline, what: str,
                       retries: int | None, session: Any = None) -> dict[str, Any]:
        """One frame through the SDK (route, then the worker) with a deadline; the decoded reply frame."""
        from vastai.serverless.remote import serialization

        assert self.sdk is not None
        self.on_activity()
        remaining = deadline.remaining()
        if remaining <= 0:
            raise CallTimeout(self.timeout_message(what, deadline.total, "Queued"))
        envelope = {"v": PROTOCOL, "py": PY, **frame, **({"replies": "by-value"} if self.trust_hosts else {})}
        data = seal_frame(encode_frame(envelope, f"the request of {what}"), self.frame_key, remaining + 60.0)
        payload = {"kwargs": {"frame": serialization.serialize(data, "deployment"), "workload": float(workload)}}
        tracker = _Tracker()
        endpoint = await self.sdk.routing_endpoint()
        request = self.sdk.client.queue_endpoint_request(
            endpoint=endpoint, worker_route=FRAME_ROUTE, worker_payload=payload, serverless_request=tracker,
            cost=workload, timeout=remaining, worker_timeout=remaining, max_retries=retries, session=session)
        error: BaseException | None = None
        try:
            result = await asyncio.wait_for(request, remaining)
        except asyncio.TimeoutError:
            error = CallTimeout(self.timeout_message(what, deadline.total, tracker.last))
        except (ConnectionError, ValueError) as exc:
            error = SessionGone(redact(exc)) if session is not None else VastApiError(redact(f"{what} failed: {exc}"))
        except Exception as exc:  # noqa: BLE001 - the SDK raises bare Exception/RuntimeError; keep only its words
            error = VastApiError(self.refusal(what, redact(exc)))
        if error is not None:
            raise error
        return self.read_result(result, what, session)

    def read_result(self, result: dict[str, Any], what: str, session: Any) -> dict[str, Any]:
        from vastai.serverless.remote import serialization

        status = result.get("status")
        if not result.get("ok"):
            text = redact(str(result.get("text") or "")[:500])
            if status == 429:
                raise QueueTimeout(f"{what}: the worker's queue is full (HTTP 429 from the official worker); the "
                                   "endpoint needs more workers (configure_autoscaling(max_workers=...)) or fewer "
                                   "calls at once.", limit=0.0, estimated_wait=0.0)
            if status == 410 and session is not None:
                raise SessionGone("the worker closed the cell session")
            raise VastApiError(f"{what}: the worker answered HTTP {status}: {text}")
        err: Exception
        try:
            raw = serialization.deserialize_unwrap_error(result["response"]["result"], "deployment", {})
            reply = decode_frame(raw) if self.trust_hosts else loads_untrusted(raw, f"{what}: the worker")
        except UntrustedReply as exc:
            err = exc
        except Exception as exc:  # noqa: BLE001
            err = VastApiError(redact(f"{what}: unreadable reply from the worker ({type(exc).__name__}: {exc})"))
        else:
            if isinstance(reply, dict) and reply.get("v") == PROTOCOL:
                return reply
            err = VastApiError(f"{what}: the worker speaks another vastnb protocol; redeploy")
        raise err

    def refusal(self, what: str, text: str) -> str:
        """A request that Vast refused (``/route/`` answering 4xx is not retried), in words with the fix."""
        endpoint = self.sdk.managed.endpoint_id if self.sdk is not None and self.sdk.managed is not None else "?"
        found = re.match(r"Failed to route endpoint: HTTP (\d{3}) - (.*)", text, re.S)
        if found is None:
            return f"{what} failed on its way through Vast: {text}"
        status, said = found.group(1), found.group(2).strip()[:300]
        if status in ("401", "403"):
            fix = ("the endpoint's own key was refused: it may have been deleted and created again; create the "
                   "Deployment again (or run %vast_deployment again) to pick up the new one.")
        elif status == "404":
            fix = (f"endpoint {endpoint} is gone (deleted in the console, or by its ttl after this kernel's "
                   "heartbeats stopped): create the Deployment again (or run %vast_deployment again) to redeploy.")
        else:
            fix = "see %vast_status and %vast_logs."
        return f"{what}: Vast's /route/ refused the request (HTTP {status}: {said}); {fix}"

    def exception_loader(self) -> Callable[[bytes], Any]:
        """How a reply's pickled exception is loaded: restricted unless the hosts are trusted."""
        if self.trust_hosts:
            return decode_frame
        return lambda raw: loads_untrusted(raw, "the exception")

    def timeout_message(self, what: str, total: float, status: str) -> str:
        endpoint = self.sdk.managed.endpoint_id if self.sdk is not None and self.sdk.managed is not None else "?"
        route = self.sdk.route.waiting() if self.sdk is not None else "kept answering WAITING"
        if status in ("New", "Queued", "Polling"):
            waiting = (f"Vast had no ready worker for endpoint {endpoint} (its /route/ {route}). "
                       f"Workers: {self.tracker.summary()}")
        elif status == "Retrying":
            waiting = ("the worker request kept failing (transport errors or HTTP 5xx/429) and Vast re-routed it. "
                       f"Workers: {self.tracker.summary()}")
        else:
            waiting = "it was running on a worker"
        return (f"{what} did not finish within {total:g} s: {waiting}. Raise timeout in @app.remote(timeout=...) "
                "for slow calls or cold starts; see %vast_status.")


def write_output(reply: dict[str, Any], sink: Any) -> None:
    """Hand a reply's captured print output to the caller's sink."""
    if sink is None:
        return
    for stream, text in reply.get("out") or ():
        try:
            sink(stream, text)
        except Exception:  # noqa: BLE001
            pass
