"""The official Vast worker runtime (``vastai`` SDK) on loopback, for tests and benchmarks.

::

    with OfficialWorker("deploy.py", "demo") as w:      # a path, or the module's source text
        w.perf_score                                     # from "Benchmark complete: … measured perf is …"
        w.call("square", x=7)                            # 49, over HTTP in the official JSON format
        await w.acall("square", x=7)

What it does, following ``official-worker-locally.md``:

* builds the tarball with the SDK's own helpers (``create_deployment_tarball``,
  ``Config(name, [], [], [], [])``) in a fresh temporary directory;
* runs ``python -m vastai.serverless.remote.serve_deployment`` there with
  ``IS_DEPLOYMENT=1`` (set before ``vastai`` is imported: it picks serve mode),
  ``DEBUG_DEPLOYMENT_TAR``, ``UNSECURED=true``, free ``WORKER_PORT`` and
  ``WORKER_HTTP_PORT``, and a ``REPORT_ADDR`` nobody listens on (its reports fail and
  are only logged);
* waits for ``Benchmark complete`` in the log (or fails with the log's tail);
* stops the whole process group on :meth:`stop`, on exit from ``with``, and at exit.

Differences from a Vast worker, on purpose:

* The SDK's server binds every interface, and ``UNSECURED=true`` turns its request
  signature check off; so the bootstrap runs with aiohttp's ``TCPSite`` defaulting to
  ``127.0.0.1``. Nothing else of the runtime is touched.
* ``config.json`` carries no pip/apt installs, run scripts or env: the bootstrap would
  run ``uv pip install``/``apt-get`` and append env to ``/etc/environment`` on this
  machine. Pass the image's env as ``extra_env``; packages come from this interpreter.

Checked on Python 3.11 with vastai 1.9.1: serve mode works (the 3.12-only
``NamedTemporaryFile(delete_on_close=…)`` is in the client-mode ``ensure_ready`` only).
"""

from __future__ import annotations

import atexit
import enum
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from typing import Any, Mapping

import httpx

from vastnb.errors import SerializationError, VastnbError

__all__ = ["OfficialWorker", "OfficialWorkerError"]

_READY = "Benchmark complete"
_FAILURES = ("Lifecycle startup failed", "Benchmark Failed", "Worker Server failed to launch")
_PERF = re.compile(r"Benchmark complete: average perf is ([0-9.eE+-]+), measured perf is ([0-9.eE+-]+)")
_STRIPPED_ENV = ("IS_DEPLOYMENT", "DEBUG_DEPLOYMENT_TAR", "VAST_DEBUG_WORKER_URL", "WORKER_PORT",
                 "WORKER_HTTP_PORT", "REPORT_ADDR", "USE_SSL", "DEPLOYMENT_ID")
# serve_deployment, unchanged, with aiohttp's TCPSite bound to loopback unless told otherwise
_LAUNCH = """\
import runpy
from aiohttp import web

_init = web.TCPSite.__init__


def _loopback(self, runner, host=None, *args, **kwargs):
    _init(self, runner, host or "127.0.0.1", *args, **kwargs)


web.TCPSite.__init__ = _loopback
runpy.run_module("vastai.serverless.remote.serve_deployment", run_name="__main__", alter_sys=True)
"""
_LIVE: "weakref.WeakSet[OfficialWorker]" = weakref.WeakSet()
_requests = itertools.count(1)


class OfficialWorkerError(VastnbError, RuntimeError):
    """The official worker did not start, or answered a call with something other than a result."""


class _State(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    READY = "ready"
    STOPPED = "stopped"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OfficialWorker:
    """One official worker process serving a deployment module on loopback.

    ``module`` is a path to a ``.py`` file or the module's source; ``name`` must be the
    ``Deployment(name=…)`` in it (the tarball's ``config.json`` names it and the worker
    looks it up by that name). Objects of classes from ``client_module`` travel as the
    deployment's own classes (the official format sends them relative to the root
    module); ``client_globals`` rebuilds such classes in results when ``client_module``
    is ``"__main__"``.
    """

    def __init__(
        self,
        module: str | os.PathLike[str],
        name: str,
        *,
        port: int | None = None,
        workdir: str | os.PathLike[str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
        call_timeout: float = 60.0,
        client_module: str = "__main__",
        client_globals: Mapping[str, Any] | None = None,
    ) -> None:
        text = os.fspath(module)
        if isinstance(module, os.PathLike) or ("\n" not in text and text.endswith(".py")):
            if not os.path.isfile(text):
                raise OfficialWorkerError(f"no such deployment module: {text}")
            with open(text, encoding="utf-8") as f:
                self.source = f.read()
        else:
            self.source = text
        if not name:
            raise OfficialWorkerError("`name` must be the deployment's name, as in Deployment(name=...).")
        self.name = name
        self.port = port or _free_port()
        self._own_workdir = workdir is None
        self.workdir: str | None = os.fspath(workdir) if workdir is not None else None  # made by start()
        self.extra_env = dict(extra_env or {})
        self.startup_timeout = startup_timeout
        self.call_timeout = call_timeout
        self.client_module = client_module
        self.client_globals: Mapping[str, Any] = client_globals if client_globals is not None else {}
        self.process: subprocess.Popen[bytes] | None = None
        self.perf_score: float | None = None
        self.average_perf: float | None = None
        self._state = _State.NEW
        self._log_path: str | None = None
        self._final_log: str | None = None
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state(self) -> str:
        return self._state.value

    @property
    def log(self) -> str:
        """Everything the worker printed and logged so far (stdout and stderr)."""
        if self._final_log is not None:
            return self._final_log
        if self._log_path is None:
            return ""
        try:
            with open(self._log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.rstrip().splitlines()[-lines:])

    def start(self) -> "OfficialWorker":
        """Build the tarball, start the worker, and wait until its benchmark completed."""
        if self._state is not _State.NEW:
            raise OfficialWorkerError(f"this OfficialWorker is {self._state.value}; make a new one to start again.")
        from vastai.serverless.remote.base import Config
        from vastai.serverless.remote.utils import create_deployment_tarball

        self._state = _State.STARTING
        if self.workdir is None:
            self.workdir = tempfile.mkdtemp(prefix="vastnb-official-")
        os.makedirs(self.workdir, exist_ok=True)
        self._log_path = os.path.join(self.workdir, "worker.log")
        module_dir = os.path.join(self.workdir, "module")
        run_dir = os.path.join(self.workdir, "worker")
        os.makedirs(module_dir, exist_ok=True)
        os.makedirs(run_dir, exist_ok=True)
        module_path = os.path.join(module_dir, "deployment.py")
        with open(module_path, "w", encoding="utf-8") as f:
            f.write(self.source)
        tar_path = os.path.join(self.workdir, "deployment.tar.gz")  # the bootstrap deletes it after extracting
        create_deployment_tarball(tar_path, Config(self.name, [], [], [], []), module_path)

        http_port = _free_port()
        env = {k: v for k, v in os.environ.items() if k not in _STRIPPED_ENV and not k.startswith("VAST_TCP_PORT_")}
        env.update({
            "IS_DEPLOYMENT": "1",
            "DEBUG_DEPLOYMENT_TAR": tar_path,
            "DEPLOYMENT_ID": "1",
            "UNSECURED": "true",
            "USE_SSL": "false",
            "WORKER_PORT": str(self.port),
            f"VAST_TCP_PORT_{self.port}": str(self.port),
            "WORKER_HTTP_PORT": str(http_port),
            "PUBLIC_IPADDR": "127.0.0.1",
            "CONTAINER_ID": "1",
            "REPORT_ADDR": f"http://127.0.0.1:{_free_port()}",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        log = open(self._log_path, "ab")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _LAUNCH], cwd=run_dir, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        finally:
            log.close()
        _LIVE.add(self)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        assert self.process is not None
        while True:
            text = self.log
            if _READY in text:
                match = _PERF.search(text)
                if match:
                    self.average_perf, self.perf_score = float(match.group(1)), float(match.group(2))
                self._state = _State.READY
                return
            failure = next((line for line in text.splitlines() if any(f in line for f in _FAILURES)), None)
            if failure is not None:
                self._fail(f"it logged: {failure.strip()}")
            code = self.process.poll()
            if code is not None:
                self._fail(f"it exited with status {code} before its benchmark completed")
            if time.monotonic() > deadline:
                self._fail(f"no '{_READY}' in its log within {self.startup_timeout:g} s")
            time.sleep(0.05)

    def _fail(self, why: str) -> None:
        self.stop()
        raise OfficialWorkerError(
            f"the official worker for deployment {self.name!r} did not become ready: {why}.\n"
            f"--- last lines of its log ---\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Stop the worker's process group (TERM, then KILL after 5 s) and remove its temporary directory."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            proc = self.process
            if proc is not None and proc.poll() is None:
                for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                    try:
                        os.killpg(proc.pid, sig)
                    except ProcessLookupError:
                        break
                    try:
                        proc.wait(wait)
                        break
                    except subprocess.TimeoutExpired:
                        continue
            if proc is not None:
                try:  # children that outlived the leader
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if self._state is not _State.STOPPED:
                self._final_log = self.log
            self._state = _State.STOPPED
            _LIVE.discard(self)
            if self._own_workdir and self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "OfficialWorker":
        return self.start() if self._state is _State.NEW else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<OfficialWorker {self.name!r} {self._state.value} {self.url}>"

    # ------------------------------------------------------------------ calls
    def payload(self, fname: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The request body the SDK's client sends for ``fname(**kwargs)`` (auth fields unsigned)."""
        from vastai.serverless.remote.serialization import serialize

        encoded = {}
        for key, value in kwargs.items():
            try:
                encoded[key] = serialize(value, self.client_module)
            except TypeError as exc:
                raise SerializationError(f"{fname}({key}): {exc} (the official JSON wire)") from None
        n = next(_requests)
        return {
            "auth_data": {"cost": "100", "endpoint": self.name, "reqnum": n, "request_idx": n,
                          "signature": "", "url": ""},
            "payload": {"kwargs": encoded},
        }

    def _check_ready(self) -> None:
        if self._state is not _State.READY:
            raise OfficialWorkerError(f"the official worker for {self.name!r} is {self._state.value}, not ready; "
                                      "start() it first (or use it in a with block).")

    def call(self, fname: str, /, **kwargs: Any) -> Any:
        """Call a remote function over HTTP; return its result or raise the exception it raised."""
        self._check_ready()
        body = self.payload(fname, kwargs)
        if self._client is None:
            self._client = httpx.Client(timeout=self.call_timeout)
        response = self._client.post(f"{self.url}/remote/{fname}", json=body)
        return self._result(fname, response)

    async def acall(self, fname: str, /, **kwargs: Any) -> Any:
        """:meth:`call` for asyncio code."""
        self._check_ready()
        body = self.payload(fname, kwargs)
        async with httpx.AsyncClient(timeout=self.call_timeout) as client:
            response = await client.post(f"{self.url}/remote/{fname}", json=body)
        return self._result(fname, response)

    def _result(self, fname: str, response: httpx.Response) -> Any:
        from vastai.serverless.remote.serialization import deserialize

        if response.status_code != 200:
            hint = {
                404: f"the deployment has no remote function {fname!r}",
                422: "the worker could not read the request",
                429: "the worker's queue is full (max_queue_time)",
                500: "the worker could not run the call or serialize its result; see .log",
            }.get(response.status_code, "")
            raise OfficialWorkerError(
                f"/remote/{fname} answered HTTP {response.status_code}"
                + (f" ({hint})" if hint else "") + (f": {response.text[:300]}" if response.text else "")
            )
        result = response.json().get("result", {})
        globals_ = dict(self.client_globals)
        if "ok" in result:
            return deserialize(result["ok"], self.client_module, globals_)
        if "err" in result:
            try:
                err = deserialize(result["err"], self.client_module, globals_)
            except Exception as exc:  # noqa: BLE001 - the class may not exist on this side
                raise OfficialWorkerError(
                    f"{fname} raised an exception this process cannot rebuild ({type(exc).__name__}: {exc}): "
                    f"{result['err']!r}"
                ) from None
            if isinstance(err, BaseException):
                raise err
            raise OfficialWorkerError(f"{fname} answered an error that is not an exception: {err!r}")
        raise OfficialWorkerError(f"/remote/{fname} answered neither ok nor err: {result!r}")


def _stop_all() -> None:
    for worker in list(_LIVE):
        try:
            worker.stop()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


atexit.register(_stop_all)
