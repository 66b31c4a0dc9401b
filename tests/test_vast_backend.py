"""The Vast backend, against the OFFICIAL worker runtime and a STAND-IN for Vast's control plane.

Nothing here reaches Vast's cloud. Two real things are under test:

* the official ``vastai`` SDK (1.9.1) as the client: vastnb deploys, routes and
  polls through it, pointed at :class:`tests.vast_standin.VastStandIn` (a
  loopback server named as a stand-in, whose shapes come from the SDK's own data
  classes) with its ``webserver_url``/``autoscaler_url`` parameters;
* the official worker runtime (``python -m vastai.serverless.remote.serve_deployment``)
  serving vastnb's generated interactive-mode module, bootstrapped from the
  tarball the SDK uploaded, verifying the stand-in's request signatures.

So a call goes notebook → SDK ``/route/`` (stand-in) → official worker (real) →
vastnb's worker core, and back.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gc
import io
import logging
import os
import tarfile
import threading
import time
import weakref
from typing import Any, Iterator

import httpx
import pytest

import vastnb
from vastnb import CallTimeout, ConfigurationError, DeploymentShutDown, NotSupportedByBackend, WorkerStartError
from vastnb.deployment._capture import capture, stable_digest
from vastnb.backends import CallRequest, CellRequest
from vastnb.backends.vast._module import build_snapshot, generate_module
from vastnb.spec import BenchmarkSpec, ContextSpec, DeploymentSpec, FunctionSpec
from vastnb.worker.vast import BENCHMARK_FRAME, FRAME_ROUTE, PY, FrameHandler, decode_frame, encode_frame, seal_frame
from vastnb.backends.vast._offers import offers_provider, search_offers
from vastnb.backends.vast._sdk import SdkSession, VastApiError, redact, stage_package
from vastnb.backends.vast._status import StatusTracker, map_state
from vastnb.backends.vast import VastBackend
from vastnb.events import Event, EventBus, EventKind, WorkerState
from vastnb.query import gpu_ram
from vastnb.wire import dumps_payload
from vastnb.wire.messages import CallFunction, InstallFunction, RunCell
from tests.vast_standin import OfficialWorkerProcess, VastStandIn, WorkerLauncher

pytestmark = pytest.mark.timeout(240)
IMAGE = "vastai/base-image:@vastai-automatic-tag"
FRAMED_KEY = "framed-test-frame-key"  # the frame key of the hand-built `framed` deployment


# =========================================================================== fixtures


@pytest.fixture(scope="module")
def standin() -> Iterator[VastStandIn]:
    with VastStandIn() as s:
        yield s


@pytest.fixture(scope="module")
def launcher(standin: VastStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerLauncher]:
    lw = WorkerLauncher(standin, str(tmp_path_factory.mktemp("workers")))
    yield lw
    lw.stop()


def run_async(coro: Any) -> Any:
    """``asyncio.run(coro)`` on a fresh thread: a notebook-like running loop, whatever the main thread is doing."""
    box: dict[str, Any] = {}

    def main() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=main)
    thread.start()
    thread.join(120)
    if "error" in box:
        raise box["error"]
    return box["value"]


_OPTIONS: "weakref.WeakKeyDictionary[vastnb.Deployment, dict[str, Any]]" = weakref.WeakKeyDictionary()
_BACKENDS: "weakref.WeakKeyDictionary[vastnb.Deployment, VastBackend]" = weakref.WeakKeyDictionary()


def vast_app(standin: VastStandIn, name: str, *, ready_timeout: float = 60.0, **kwargs: Any) -> vastnb.Deployment:
    """A deployment on the stand-in, with a VastBackend built with its declared options."""
    options = {"api_key": standin.api_key, "webserver_url": standin.url, "autoscaler_url": standin.url,
               "poll_interval": 0.2, "max_poll_interval": 1.0, "ready_timeout": ready_timeout}
    backend = VastBackend(**options)
    app = vastnb.Deployment(name, backend=backend, **kwargs)
    _OPTIONS[app], _BACKENDS[app] = options, backend
    app.image(IMAGE, storage=16)
    app.configure_autoscaling(cold_workers=1, max_workers=2)
    return app


def backend_of(app: vastnb.Deployment) -> VastBackend:
    """The backend ``vast_app`` built for ``app`` (the test keeps it; the Deployment does not expose it)."""
    return _BACKENDS[app]


class Counter:
    """A context whose entries are counted (by a file, since it runs in the worker process)."""

    def __init__(self, path: str, label: str = "v1") -> None:
        self.path, self.label = path, label

    async def __aenter__(self) -> "Counter":
        with open(self.path, "a") as f:
            f.write(self.label + "\n")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None


# =========================================================================== the generated module, framed by hand


def _spec(fn: Any, parallel: bool = False) -> FunctionSpec:
    return FunctionSpec(name=fn.__name__, blob=capture(fn, fn.__name__), allow_parallel=parallel)


def _context(cls: type, *args: Any) -> ContextSpec:
    blob = capture((cls, args, {}), cls.__qualname__)
    return ContextSpec(name=cls.__qualname__, hash=stable_digest(blob.data), blob=blob.data, sources=blob.sources)


async def _triple(x):  # type: ignore[no-untyped-def]
    return 3 * x


@pytest.fixture(scope="module")
def framed(standin: VastStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """vastnb's generated module, tarred with the SDK's helpers, served by one official worker."""
    from vastai.serverless.remote.base import Config
    from vastai.serverless.remote.utils import create_deployment_tarball

    root = tmp_path_factory.mktemp("framed")
    marker = str(root / "entered.txt")
    fn = _spec(_triple)
    ctx = _context(Counter, marker)
    bench = BenchmarkSpec(fn_hash=fn.hash, dataset=[{"x": 2}], generator=None, runs=3, parallel=False,
                          workload_calculator=None)
    fn = dataclasses.replace(fn, benchmark=bench)
    spec = DeploymentSpec(name="framed", functions={"_triple": fn}, contexts={"Counter": ctx}, benchmark="_triple")
    module = generate_module("framed", build_snapshot(spec), benchmark_runs=3, frame_key=FRAMED_KEY)
    (root / "src").mkdir()
    (root / "src" / "deployment.py").write_text(module)
    copies = [stage_package(p, str(root / "pkgs")) for p in ("vastnb", "cloudpickle")]
    tar = str(root / "d.tar.gz")
    create_deployment_tarball(tar, Config("framed", [], [], [], []), str(root / "src" / "deployment.py"), copies)
    worker = OfficialWorkerProcess(str(root / "run"), deployment_id=1, container_id="501", report_addr=standin.url,
                                   tarball=tar)
    try:
        worker.wait_ready()
        yield {"worker": worker, "fn": fn, "ctx": ctx, "marker": marker}
    finally:
        worker.stop()


def post_frame(standin: VastStandIn, worker: OfficialWorkerProcess, frame: dict[str, Any],
               auth: dict[str, Any] | None = None, key: str = FRAMED_KEY) -> Any:
    """One request to the official worker's HTTP API, the way the SDK sends it after /route/ (sealed with ``key``)."""
    data = seal_frame(encode_frame({"v": 1, "py": PY, "replies": "by-value", **frame}), key, 60.0)
    body = {"auth_data": auth or standin.signed_route(worker.url, "framed"), "session_id": None,
            "payload": {"kwargs": {"frame": {"type": "bytes", "contents": base64.b64encode(data).decode()},
                                   "workload": 100.0}}}
    response = httpx.post(worker.url + FRAME_ROUTE, json=body, timeout=60)
    if response.status_code != 200:
        return response.status_code
    result = response.json()["result"]
    assert list(result) == ["ok"], result
    return decode_frame(base64.b64decode(result["ok"]["contents"]))


def call_payload(spec: FunctionSpec, *args: Any, **kwargs: Any) -> bytes:
    return dumps_payload(CallFunction(spec.hash, args, kwargs)).to_bytes()


def test_generated_module_is_an_official_deployment_module() -> None:
    source = generate_module("demo", b"snapshot-bytes", contexts_id="abc123")
    compile(source, "deployment.py", "exec")
    assert 'app = Deployment(name=\'demo\')' in source
    assert "async def vastnb_frame(frame: bytes, workload: float = 100.0) -> bytes:" in source
    assert f'_SNAPSHOT = "{base64.b64encode(b"snapshot-bytes").decode()}"  #!VAST_IGNORE_CHANGES' in source
    assert "# contexts: abc123\n" in source
    # the snapshot is outside the SDK's content hash; the contexts' identity is inside it
    from vastai.serverless.remote.utils import filter_ignored_lines

    hashed = filter_ignored_lines(source.encode()).decode()
    assert "_SNAPSHOT" not in hashed.split("_handler = ")[0] and "abc123" in hashed
    other = generate_module("demo", b"other-snapshot", contexts_id="abc123")
    assert filter_ignored_lines(other.encode()) == filter_ignored_lines(source.encode())


def test_official_worker_loads_the_snapshot(standin: VastStandIn, framed: dict[str, Any]) -> None:
    worker: OfficialWorkerProcess = framed["worker"]
    reply = post_frame(standin, worker, {"op": "hello"})
    info = reply["value"]
    assert reply["ok"] is True and reply["worker"] == "501" and reply["pid"] == worker.pid
    assert framed["fn"].hash in info["code"]
    assert info["contexts"] == {"Counter": framed["ctx"].hash}
    assert info["python"] == f"{PY[0]}.{PY[1]}"
    with open(framed["marker"]) as f:
        assert f.read().split()[0] == "v1"  # entered from the snapshot first (later tests may re-enter it)
    assert "Benchmark complete" in worker.log()


def test_official_worker_calls_redefines_and_keeps_its_pid(standin: VastStandIn, framed: dict[str, Any]) -> None:
    worker: OfficialWorkerProcess = framed["worker"]
    fn: FunctionSpec = framed["fn"]
    ctx = {"Counter": framed["ctx"].hash}
    first = post_frame(standin, worker, {"op": "call", "fn": fn.hash, "payload": call_payload(fn, 7), "contexts": ctx})
    assert (first["ok"], first["value"]) == (True, 21)

    async def _triple(x):  # type: ignore[no-untyped-def]  # redefined in "the notebook"
        print(f"tripling {x} the new way")
        return [x] * 3

    new = _spec(_triple)
    assert new.hash != fn.hash
    missing = post_frame(standin, worker, {"op": "call", "fn": new.hash, "payload": call_payload(new, 2), "contexts": ctx})
    assert missing["ok"] is False and missing["missing"] == {"code": [new.hash], "contexts": []}
    assert missing["message"] == f"missing code {new.hash}"
    item = InstallFunction.of(new)
    second = post_frame(standin, worker, {"op": "call", "fn": new.hash, "payload": call_payload(new, 2),
                                          "contexts": ctx, "code": [item]})
    assert (second["ok"], second["value"], second["out"]) == (True, [2, 2, 2], [("stdout", "tripling 2 the new way\n")])
    assert first["pid"] == second["pid"] == worker.pid and worker.process.poll() is None
    again = post_frame(standin, worker, {"op": "call", "fn": fn.hash, "payload": call_payload(fn, 1), "contexts": ctx})
    assert again["value"] == 3  # the old version is still there, by its hash


def test_official_worker_sends_exceptions_back_with_their_message(standin: VastStandIn, framed: dict[str, Any]) -> None:
    from vastnb.wire._errors import RemoteTraceback, build_remote_exception

    async def check(x):  # type: ignore[no-untyped-def]
        raise ValueError(f"bad input {x}: must be positive")

    spec = _spec(check)
    item = InstallFunction.of(spec)
    reply = post_frame(standin, framed["worker"], {"op": "call", "fn": spec.hash, "payload": call_payload(spec, -1),
                                                   "code": [item]})
    assert reply["ok"] is False
    assert (reply["error"].type, reply["error"].message) == ("ValueError", "bad input -1: must be positive")
    exc = build_remote_exception(reply["error"], "worker 501")
    assert type(exc) is ValueError and str(exc) == "bad input -1: must be positive"
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert 'raise ValueError(f"bad input {x}: must be positive")' in str(exc.__cause__)


def test_official_worker_runs_cells_in_one_namespace(standin: VastStandIn, framed: dict[str, Any]) -> None:
    def cell(source: str, pull: list[str] | None = None) -> Any:
        message = RunCell(source, "<vast_run>", {"base": 40}, tuple(pull or ()))
        return post_frame(standin, framed["worker"], {"op": "run", "payload": encode_frame(message)})

    first = cell("total = base + 1\nprint('defined total')")
    assert (first["ok"], first["value"], first["out"]) == (True, {"repr": None, "pulled": {}}, [("stdout", "defined total\n")])
    second = cell("total + 1", pull=["total"])
    assert second["value"] == {"repr": "42", "pulled": {"total": 41}}


def test_official_worker_carries_megabytes(standin: VastStandIn, framed: dict[str, Any]) -> None:
    async def flip(blob):  # type: ignore[no-untyped-def]
        return bytes(reversed(blob))

    spec = _spec(flip)
    blob = os.urandom(4 * 1024 * 1024)
    item = InstallFunction.of(spec)
    reply = post_frame(standin, framed["worker"], {"op": "call", "fn": spec.hash, "payload": call_payload(spec, blob),
                                                   "code": [item]})
    assert reply["ok"] is True and reply["value"] == blob[::-1]


def test_official_worker_reenters_a_changed_context(standin: VastStandIn, framed: dict[str, Any]) -> None:
    changed = _context(Counter, framed["marker"], "v2")
    reply = post_frame(standin, framed["worker"], {"op": "hello"})
    assert reply["value"]["contexts"]["Counter"] != changed.hash
    with open(framed["marker"]) as f:
        before = f.read()
    fn = framed["fn"]
    frame = {"op": "call", "fn": fn.hash, "payload": call_payload(fn, 1), "contexts": {"Counter": changed.hash}}
    missing = post_frame(standin, framed["worker"], frame)
    assert missing["missing"] == {"code": [], "contexts": ["Counter"]}
    done = post_frame(standin, framed["worker"], {**frame, "context_blobs": [changed]})
    assert done["value"] == 3
    with open(framed["marker"]) as f:
        assert f.read() == before + "v2\n"
    # put the module's worker back as the other tests expect it (they may run after this one)
    original = {**frame, "contexts": {"Counter": framed["ctx"].hash}, "context_blobs": [framed["ctx"]]}
    assert post_frame(standin, framed["worker"], original)["value"] == 3


def test_official_worker_refuses_unsigned_frames_and_other_pythons(standin: VastStandIn, framed: dict[str, Any]) -> None:
    worker = framed["worker"]
    forged = {**standin.signed_route(worker.url, "framed"), "signature": base64.b64encode(b"x" * 256).decode()}
    assert post_frame(standin, worker, {"op": "hello"}, auth=forged) == 401
    hello = post_frame(standin, worker, {"op": "hello", "py": [3, PY[1] + 1]})
    assert hello["ok"] is True and hello["value"]["python"] == f"{PY[0]}.{PY[1]}"  # hello carries no code
    cell = encode_frame(RunCell("1", "<cell>"))
    reply = post_frame(standin, worker, {"op": "run", "payload": cell, "py": [3, PY[1] + 1]})
    assert reply["ok"] is False
    assert reply["error"].message.startswith(
        f"this worker runs Python {PY[0]}.{PY[1]} but the notebook runs Python {PY[0]}.{PY[1] + 1}; notebook code "
        "travels as cloudpickle")


def test_benchmark_frame_runs_the_deployments_benchmark_function() -> None:
    from vastnb.worker.core import FunctionEntry, WorkerCore

    handler = FrameHandler("unit")
    seen: list[int] = []

    async def probe(x):  # type: ignore[no-untyped-def]
        seen.append(x)

    async def run() -> None:
        handler._events()
        handler.core = WorkerCore("unit")
        handler.core.functions["h1"] = FunctionEntry(fn=probe, name="probe", allow_parallel=False)
        handler.bench_spec = BenchmarkSpec(fn_hash="h1", dataset=[{"x": 1}, {"x": 2}], generator=None, runs=2,
                                           parallel=False, workload_calculator=None)
        assert handler._started is not None
        handler._started.set()
        for _ in range(3):
            assert await handler.handle(BENCHMARK_FRAME) == b"ok"

    run_async(run())
    assert seen == [1, 2, 1]  # every dataset item, in order (the official one only ever uses the last)


# =========================================================================== the whole path: notebook → SDK → stand-in → official worker


@pytest.fixture(scope="module")
def live(standin: VastStandIn, launcher: WorkerLauncher, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    launcher.enable("live")
    marker = str(tmp_path_factory.mktemp("live") / "entered.txt")
    app = vast_app(standin, "live")
    events: list[Event] = []
    app.events.subscribe(events.append)
    app.context(marker)(Counter)

    @app.remote(benchmark_dataset=[{"x": 2}])
    async def square(x):  # type: ignore[no-untyped-def]
        print(f"squaring {x}")
        return x * x

    try:
        app.ensure_ready()
        yield {"app": app, "square": square, "marker": marker, "events": events}
    finally:
        app.shutdown()


def test_deploy_goes_through_the_sdk(standin: VastStandIn, live: dict[str, Any]) -> None:
    from vastai.data.deployment import DeploymentConfig

    dep = standin.deployment_named("live")
    body = next(b for b in standin.calls_to("PUT", "/api/v0/deployments/") if b["name"] == "live")
    assert DeploymentConfig(**body).to_dict() == body  # the SDK's own config, None fields dropped
    assert (body["name"], body["image"], body["storage"], body["tag"]) == ("live", IMAGE, 16, "default")
    assert body["env"] == f"-p 3000:3000/tcp -e REPORT_ADDR={standin.url} -e VAST_API_URL={standin.url}"
    assert body["search_params"] == "verified=true rentable=true rented=false"
    assert dep.tarball is not None
    with tarfile.open(fileobj=io.BytesIO(dep.tarball)) as tf:
        names = set(tf.getnames())
        module = tf.extractfile("./deployment.py").read().decode()  # type: ignore[union-attr]
    assert {"./config.json", "./deployment.py", "./vastnb/__init__.py", "./vastnb/worker/core.py",
            "./cloudpickle/__init__.py"} <= names
    assert not any("__pycache__" in n for n in names)
    assert "from vastnb.worker.vast import BENCHMARK_FRAME, FrameHandler" in module
    result = backend_of(live["app"]).wait_deployed()
    assert (result.action, result.uploaded, result.deployment_id, result.endpoint_id) == ("created", True, dep.id, dep.endpoint_id)


def test_call_goes_sdk_route_then_official_worker(standin: VastStandIn, live: dict[str, Any],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    routes_before = len(standin.calls_to("POST", "/route/"))
    assert live["square"].call(7) == 49
    assert capsys.readouterr().out.endswith("squaring 7\n")
    routes = standin.calls_to("POST", "/route/")[routes_before:]
    endpoint_id = backend_of(live["app"]).endpoint_id
    assert routes and routes[-1]["api_key"] == standin.endpoint_key(endpoint_id)
    assert run_async(live["square"](5)) == 25  # awaited from a running event loop, as in Jupyter


def test_redefining_a_function_needs_no_redeploy(standin: VastStandIn, launcher: WorkerLauncher,
                                                 live: dict[str, Any]) -> None:
    app = live["app"]
    puts, uploads = len(standin.calls_to("PUT", "/api/v0/deployments/")), len(standin.uploads)
    live["square"].call(3)
    pid = next(w.pid for w in app.snapshot().workers if w.pid)
    assert pid == launcher.workers[backend_of(app).deployment_id].pid  # type: ignore[index]  # the real process

    @app.remote(benchmark_dataset=[{"x": 2}])
    async def square(x):  # type: ignore[no-untyped-def]
        return ("v2", x * x)

    assert square.call(4) == ("v2", 16)
    workers = [w for w in app.snapshot().workers if w.pid]
    assert [w.pid for w in workers] == [pid]  # same worker process: no restart
    assert workers[0].code_version == app.snapshot().code_version
    assert (len(standin.calls_to("PUT", "/api/v0/deployments/")), len(standin.uploads)) == (puts, uploads)

    @app.remote(benchmark_dataset=[{"x": 2}])  # type: ignore[no-redef]  # the cell as it was, for the tests after this one
    async def square(x):  # type: ignore[no-untyped-def]
        print(f"squaring {x}")
        return x * x

    assert square.call(5) == 25
    live["square"] = square


def test_remote_exceptions_keep_type_message_and_traceback(live: dict[str, Any]) -> None:
    from vastnb.wire._errors import RemoteTraceback

    app = live["app"]

    @app.remote
    async def divide(a, b):  # type: ignore[no-untyped-def]
        if b == 0:
            raise ZeroDivisionError(f"cannot divide {a} by zero")
        return a / b

    with pytest.raises(ZeroDivisionError) as info:
        divide.call(6, 0)
    assert str(info.value) == "cannot divide 6 by zero"
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "in divide" in str(info.value.__cause__)
    assert divide.call(6, 3) == 2.0


@dataclasses.dataclass
class Reading:
    """A class defined in "the notebook", returned by a remote function."""

    sensor: str
    values: Any


class SensorError(Exception):
    """An exception class defined in "the notebook", raised remotely."""


def test_notebook_classes_and_arrays_come_back_through_the_restricted_loader(live: dict[str, Any]) -> None:
    import numpy as np

    app = live["app"]

    @app.remote
    async def read(n):  # type: ignore[no-untyped-def]
        import numpy

        if n < 0:
            raise SensorError(f"sensor {n} is offline")
        return Reading("t1", numpy.arange(n))

    result = read.call(3)
    assert type(result) is Reading and result.sensor == "t1" and np.array_equal(result.values, np.arange(3))
    with pytest.raises(SensorError) as info:
        read.call(-1)
    assert type(info.value) is SensorError and str(info.value) == "sensor -1 is offline"


# aiohttp warns when the SDK posts a multi-MiB JSON body from the event loop (the backend's own loop, not Jupyter's)
@pytest.mark.filterwarnings("ignore:Sending a large body directly with raw bytes:ResourceWarning")
def test_megabytes_round_trip(live: dict[str, Any]) -> None:
    app = live["app"]

    @app.remote(timeout=60)
    async def echo(blob):  # type: ignore[no-untyped-def]
        return blob

    blob = os.urandom(3 * 1024 * 1024 + 17)
    assert echo.call(blob) == blob


def test_context_is_entered_once_then_reentered_when_changed(live: dict[str, Any]) -> None:
    app = live["app"]

    @app.remote
    async def label():  # type: ignore[no-untyped-def]
        return app.get_context(Counter).label

    assert label.call() == "v1"
    app.context(live["marker"], "v2")(Counter)  # the context cell, run again with another argument
    assert label.call() == "v2"
    with open(live["marker"]) as f:
        assert f.read() == "v1\nv2\n"
    app.context(live["marker"])(Counter)  # back as the module's other tests expect it
    assert label.call() == "v1"


def test_vast_run_cells_share_a_namespace_on_a_pinned_worker(standin: VastStandIn, live: dict[str, Any]) -> None:
    backend = backend_of(live["app"])
    out: list[tuple[str, str, str]] = []

    def sink_for(wid: str) -> Any:
        return lambda stream, text: out.append((wid, stream, text))

    def cell(source: str, pull: list[str] | None = None) -> dict[str, Any]:
        return live["app"].run_cell(source, pull=pull or [], filename="<cell>", output=sink_for)

    first = cell("import os\nanswer = 41\nprint('pid', os.getpid())")
    (wid, value), = first.items()
    assert value == {"repr": None, "pulled": {}}
    second = cell("answer + 1", pull=["answer"])
    assert second == {wid: {"repr": "42", "pulled": {"answer": 41}}}
    pid = next(w.pid for w in live["app"].snapshot().workers if w.id == wid)
    assert out == [(wid, "stdout", f"pid {pid}\n")]
    assert standin.calls_to("POST", "/session/") == []  # session requests go to the worker, not the stand-in
    bad = cell("raise KeyError('nope')")
    assert isinstance(bad[wid], KeyError)
    with pytest.raises(LookupError, match="Vast routes each request to a worker of its choosing"):
        backend.run_cell(CellRequest("1", "<cell>"), ["someone-else"], sink_for).result(30)


def test_status_follows_the_official_workers_reports(standin: VastStandIn, live: dict[str, Any]) -> None:
    app = live["app"]
    deadline = time.monotonic() + 30  # the official worker reports every 10 s once loaded
    while time.monotonic() < deadline:
        workers = app.snapshot().workers
        if workers and workers[0].perf_score:
            break
        time.sleep(0.2)
    (worker,) = app.snapshot().workers
    report = standin.reports[worker.id]
    assert worker.perf_score == pytest.approx(report["max_perf"]) and worker.perf_score > 0
    assert (worker.state.serving, worker.gpu, worker.price_per_hour) == (True, "RTX 4090", 0.42)
    assert backend_of(app).cost_per_hour() == pytest.approx(0.42)
    kinds = {e.kind for e in live["events"]}
    assert {EventKind.CODE, EventKind.WORKER, EventKind.AUTOSCALER} <= kinds
    states = [e.worker.state for e in live["events"] if e.kind == EventKind.WORKER and e.worker is not None]
    assert WorkerState.PROVISIONING in states and WorkerState.READY in states
    snap = app.snapshot()
    assert (snap.backend, snap.state, snap.autoscaler.max_workers) == ("vast", "running", 2)
    from vastnb.widgets.dashboard import render_text

    assert "RTX 4090" in render_text(snap)


def test_logs_and_offers_through_the_sdk(standin: VastStandIn, live: dict[str, Any]) -> None:
    standin.log_lines[:] = ["worker 9001 loading", "worker 9001 ready", "scaling to 1 worker"]
    backend = backend_of(live["app"])
    logs = live["app"].logs()
    assert logs[f"endpoint {backend.endpoint_id}"] == standin.log_lines
    assert backend.logs("9001")[f"endpoint {backend.endpoint_id}"] == standin.log_lines[:2]
    standin.offers[:] = [
        {"id": 1, "gpu_name": "RTX 4090", "gpu_ram": 24564, "dph_total": 0.41, "verified": True, "rentable": True, "rented": False},
        {"id": 2, "gpu_name": "RTX 3090", "gpu_ram": 24576, "dph_total": 0.22, "verified": True, "rentable": True, "rented": False},
        {"id": 3, "gpu_name": "H100 SXM", "gpu_ram": 81559, "dph_total": 2.10, "verified": True, "rentable": True, "rented": False},
        {"id": 4, "gpu_name": "RTX 3060", "gpu_ram": 12288, "dph_total": 0.05, "verified": True, "rentable": True, "rented": False},
    ]
    summary = backend.offers(gpu_ram >= 24)
    assert (summary.count, summary.cheapest_price, summary.cheapest_gpu) == (3, 0.22, "RTX 3090")
    assert summary.query == "verified=true rentable=true rented=false gpu_ram>=24"
    bundles = standin.calls_to("POST", "/api/v0/bundles/")[-1]
    assert bundles["gpu_ram"] == {"gte": 24000} and bundles["order"] == [["dph_total", "asc"]]
    alone = search_offers(gpu_ram >= 80, api_key=standin.api_key, webserver_url=standin.url)
    assert (alone.count, alone.cheapest_gpu, alone.more) == (1, "H100 SXM", False)
    provider = offers_provider(api_key=standin.api_key, webserver_url=standin.url)  # what GpuPicker(offers=...) takes
    assert [(o.gpu_name, o.dph_total) for o in provider(gpu_ram >= 24)] == [("RTX 3090", 0.22), ("RTX 4090", 0.41),
                                                                          ("H100 SXM", 2.10)]


# =========================================================================== deploying: the SDK's content hash decides


def _started(app: vastnb.Deployment) -> VastBackend:
    """Another Vast backend with ``app``'s options, started on ``app``'s spec (deploying); the caller shuts it down."""
    backend = VastBackend(**_OPTIONS[app])
    backend.start(app.spec())
    return backend


def _deploy(app: vastnb.Deployment) -> Any:
    backend = _started(app)
    try:
        return backend.wait_deployed(30)
    finally:
        backend.shutdown(keep_endpoint=True)


def _cell(source: str, filename: str) -> dict[str, Any]:
    """Run ``source`` as a notebook cell would (module __main__, its own file name, lines in linecache)."""
    import linecache

    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, filename, "exec"), namespace)
    return namespace


MODEL_CELL = """
class Model:
    async def __aenter__(self):
        self.size = {size}
        return self

    async def __aexit__(self, *exc):
        pass
"""


def test_unchanged_notebook_is_not_uploaded_again(standin: VastStandIn) -> None:
    kernels = iter(range(100))  # each "kernel" names its cell files differently, as ipykernel does

    def notebook(size: int = 1, body: int = 1, pip: tuple[str, ...] = ()) -> vastnb.Deployment:
        app = vast_app(standin, "hashing")
        if pip:
            app.current_image.pip_install(*pip)  # type: ignore[union-attr]
        model = _cell(MODEL_CELL.format(size=size), f"/tmp/ipykernel_{next(kernels)}/cell1.py")["Model"]
        app.context()(model)

        @app.remote(benchmark_dataset=[{"x": 1}])
        async def f(x):  # type: ignore[no-untyped-def]
            return x + body

        return app

    uploads = len(standin.uploads)
    first = _deploy(notebook())
    assert (first.action, first.uploaded) == ("created", True)
    assert (_deploy(notebook()).action, len(standin.uploads)) == ("exists", uploads + 1)
    # a redefined function travels in frames: same content hash, nothing uploaded
    assert (_deploy(notebook(body=2)).action, len(standin.uploads)) == ("exists", uploads + 1)
    wg_calls = len(standin.update_workers_calls)
    changed = _deploy(notebook(size=2))  # a changed context: workers must re-enter it anyway
    assert (changed.action, changed.uploaded, len(standin.uploads)) == ("soft_update", True, uploads + 2)
    assert standin.update_workers_calls[wg_calls:] == [changed.workergroup_id]
    again = _deploy(notebook(size=2, pip=("numpy==2.1.0",)))  # the image's requirements are in the hash too
    assert (again.action, len(standin.uploads)) == ("soft_update", uploads + 3)
    assert standin.deployment_named("hashing").file_hash == again.file_hash


def test_a_plain_official_module_follows_the_same_hash_rules(standin: VastStandIn) -> None:
    """The production path (an exported module, deployed as is) goes through the same SDK steps."""
    source = "from vastai import Deployment\napp = Deployment(name='plain')\n\n@app.remote(benchmark_dataset=[{'x': 1}])\nasync def f(x):\n    return x\n"
    image = vastnb.Deployment("plain-image").image(IMAGE, storage=10).spec()

    async def deploy(text: str) -> Any:
        session = SdkSession(standin.api_key, name="plain", webserver_url=standin.url, autoscaler_url=standin.url)
        await session.open()
        try:
            return await session.deploy(text, image, autoscaling={"max_workers": 2})
        finally:
            await session.close()

    assert run_async(deploy(source)).action == "created"
    assert run_async(deploy(source)).action == "exists"
    wg = len(standin.update_workers_calls)
    changed = run_async(deploy(source.replace("return x", "return x + 1")))
    assert (changed.action, changed.uploaded, standin.update_workers_calls[wg:]) == ("soft_update", True, [changed.workergroup_id])
    ignored = run_async(deploy(source.replace("return x", "return x + 1") + "VERSION = 3  #!VAST_IGNORE_CHANGES\n"))
    assert ignored.action == "exists"


# =========================================================================== deadlines


def test_private_registry_login_goes_with_the_deployment(standin: VastStandIn) -> None:
    app = vast_app(standin, "private", ready_timeout=0.5)  # no worker is started for it
    app.image("registry.example.com/me/model:1", storage=16, docker_login_user="me", docker_login_pass="s3cret",
              docker_login_repo="registry.example.com")

    @app.remote(benchmark_dataset=[{}])
    async def f():  # type: ignore[no-untyped-def]
        return 1

    try:
        with pytest.raises(WorkerStartError):
            app.ensure_ready()
        body = next(b for b in standin.calls_to("PUT", "/api/v0/deployments/") if b["name"] == "private")
        assert (body["image"], body["docker_login_user"], body["docker_login_pass"], body["docker_login_repo"]) == (
            "registry.example.com/me/model:1", "me", "s3cret", "registry.example.com")
    finally:
        app.shutdown()


def test_a_call_with_no_ready_worker_ends_at_its_deadline(standin: VastStandIn) -> None:
    app = vast_app(standin, "idle")  # no worker is ever started for it

    @app.remote(timeout=2.0, benchmark_dataset=[{}])
    async def f():  # type: ignore[no-untyped-def]
        return 1

    try:
        t0 = time.monotonic()
        with pytest.raises(CallTimeout) as info:
            f.call()
        assert time.monotonic() - t0 < 10
        endpoint_id = backend_of(app).endpoint_id
        assert str(info.value) == (
            f"f() did not finish within 2 s: Vast had no ready worker for endpoint {endpoint_id} (its /route/ kept "
            "answering WAITING: waiting for workers (0 ready, 0 loading)). Workers: none listed by Vast yet. Raise "
            "timeout in @app.remote(timeout=...) for slow calls or cold starts; see %vast_status.")
        backend_of(app).ready_timeout = 1.5
        with pytest.raises(WorkerStartError, match=r"did not become ready within 1.5 s\. Vast reports: none listed"):
            app.ensure_ready()
    finally:
        app.shutdown()


def test_worker_5xx_is_not_retried_forever(standin: VastStandIn) -> None:
    app = vast_app(standin, "broken")
    broken = standin.url + "/broken-worker"
    standin.route_override = lambda body: (standin.signed_route(broken, body["endpoint"])
                                           if body["endpoint"] == "broken" else None)

    @app.remote(retries=0, timeout=30, benchmark_dataset=[{}])
    async def once():  # type: ignore[no-untyped-def]
        return 1

    @app.remote(retries=2, timeout=2.5)
    async def patient():  # type: ignore[no-untyped-def]
        return 1

    try:
        hits = standin.broken_worker_hits
        with pytest.raises(VastApiError, match=r"^once\(\): the worker answered HTTP 500: stand-in: broken worker$"):
            once.call()
        assert standin.broken_worker_hits == hits + 1
        t0 = time.monotonic()
        with pytest.raises((VastApiError, CallTimeout)):
            patient.call()
        assert time.monotonic() - t0 < 15
        with pytest.raises(CallTimeout, match="kept failing"):
            patient.map([()])
    finally:
        standin.route_override = None
        app.shutdown()


# =========================================================================== secrets, teardown, threads


def test_secrets_never_show(standin: VastStandIn, launcher: WorkerLauncher, capsys: pytest.CaptureFixture[str],
                            caplog: pytest.LogCaptureFixture) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep(level=logging.DEBUG)
    watched = [logging.getLogger(n) for n in ("vastai", "CoroutineServerless", "vastnb")]
    levels = [lg.level for lg in watched]
    for lg in watched:
        lg.addHandler(keep)
        lg.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    app = vast_app(standin, "secretive")
    events: list[Event] = []
    app.events.subscribe(events.append)
    # a worker URL that redirects forever: aiohttp's TooManyRedirects echoes the URL with ?api_key=<endpoint key>,
    # and the SDK logs it ("Worker request failed: ...") before re-routing
    looping = standin.url + "/redirect-worker"
    standin.route_override = lambda body: (standin.signed_route(looping, body["endpoint"])
                                           if body["endpoint"] == "secretive" else None)

    @app.remote(timeout=2.0, benchmark_dataset=[{}])
    async def f():  # type: ignore[no-untyped-def]
        return 1

    texts: list[str] = []
    try:
        with pytest.raises(CallTimeout) as info:
            f.call()
        backend = backend_of(app)
        endpoint_key = standin.endpoint_key(backend.endpoint_id)  # type: ignore[arg-type]
        exc: BaseException | None = info.value
        while exc is not None:
            texts += [str(exc), repr(exc)]
            exc = exc.__cause__ or exc.__context__
        texts += [repr(app), repr(backend), repr(app.snapshot()), str(app.logs()), app._repr_html_()]
        texts += [repr(e) for e in events]
        dep = standin.deployment_named("secretive")
        with tarfile.open(fileobj=io.BytesIO(dep.tarball or b"")) as tf:
            texts += [tf.extractfile(m).read().decode(errors="replace") for m in tf.getmembers() if m.isfile()]  # type: ignore[union-attr]
    finally:
        standin.route_override = None
        app.shutdown()
        for lg, level in zip(watched, levels):
            lg.removeHandler(keep)
            lg.setLevel(level)
    out = capsys.readouterr()
    texts += [out.out, out.err, caplog.text] + [keep.format(r) for r in records]
    assert any("Worker request failed" in r.getMessage() and "api_key=***" in r.getMessage() for r in records)
    for text in texts:
        assert standin.api_key not in text and endpoint_key not in text
    # an httpx error that echoes a URL with the key, as any client library's would
    err = httpx.ConnectError(f"[Errno 111] Connection refused: GET http://w:3000/remote/f?api_key={endpoint_key}&x=1")
    assert redact(err) == "[Errno 111] Connection refused: GET http://w:3000/remote/f?api_key=***&x=1"
    assert redact(f"Authorization: Bearer {standin.api_key}") == "Authorization: Bearer ***"
    assert redact("{'api_key': 'abc-unregistered'}") == "{'api_key': '***'}"


def _vast_threads() -> set[threading.Thread]:
    # aiodns (the SDK's aiohttp resolver) starts one process-wide daemon thread on first use; it is not per deployment
    return {t for t in threading.enumerate() if "_run_safe_shutdown_loop" not in t.name}


def test_shutdown_stops_polling_and_heartbeats_and_tears_down(standin: VastStandIn, launcher: WorkerLauncher) -> None:
    launcher.enable("ttl")
    before = _vast_threads()
    app = vast_app(standin, "ttl", ttl=1.0)

    @app.remote(benchmark_dataset=[{"x": 2}])
    async def inc(x):  # type: ignore[no-untyped-def]
        return x + 1

    assert inc.call(1) == 2
    backend = backend_of(app)
    dep_id, endpoint_id = backend.deployment_id, backend.endpoint_id
    time.sleep(1.2)
    assert len([t for i, t in standin.heartbeats if i == dep_id]) >= 2  # every ttl/2
    assert standin.deployment_named("ttl").config["ttl"] == 1.0
    assert any(t.name == "vastnb-vast-ttl" for t in threading.enumerate())
    app.shutdown()

    def activity() -> tuple[int, int]:
        polls = [b for b in standin.calls_to("POST", "/get_endpoint_workers/") if b["id"] == endpoint_id]
        return len(polls), len([i for i, _ in standin.heartbeats if i == dep_id])

    stopped = activity()
    assert stopped[0] > 0
    assert dep_id not in standin.deployments and endpoint_id not in standin.endpoints
    assert len(standin.calls_to("DELETE", f"/api/v0/deployment/{dep_id}/")) == 1
    gc.collect()
    assert not _vast_threads() - before  # every thread this deployment started has ended
    assert backend.state == "shut down" and app.state == "shut down"
    with pytest.raises(DeploymentShutDown):
        backend.submit(CallRequest(app.spec().functions["inc"], dumps_payload({}), 100.0)).result(1)
    app.shutdown()  # idempotent


def test_autoscaler_instance_from_configure_autoscaling_reaches_the_vast_backend(standin: VastStandIn) -> None:
    app = vast_app(standin, "instance")
    for declared, used in ((None, "prod"), ("alpha", "alpha")):  # "prod": the SDK's default
        if declared:
            app.configure_autoscaling(autoscaler_instance=declared)
        backend = _started(app)
        try:
            assert backend.sdk is not None and backend.sdk.sdk.autoscaler_instance == used
        finally:
            backend.shutdown()


def test_keep_endpoint_leaves_it_running(standin: VastStandIn) -> None:
    app = vast_app(standin, "kept")
    backend = _started(app)
    result = backend.wait_deployed(30)
    backend.shutdown(keep_endpoint=True)
    assert result.endpoint_id in standin.endpoints and result.deployment_id in standin.deployments
    again = _started(app)
    again.wait_deployed(30)
    again.shutdown()
    assert result.endpoint_id not in standin.endpoints and result.deployment_id not in standin.deployments


def test_teardown_failure_is_loud(standin: VastStandIn) -> None:
    app = vast_app(standin, "sticky")
    backend = _started(app)
    result = backend.wait_deployed(30)
    standin.api_key, real = "rotated-" + standin.api_key, standin.api_key  # the key stops working
    try:
        with pytest.raises(VastApiError) as info:
            backend.shutdown()
    finally:
        standin.api_key = real
    text = str(info.value)
    assert text.startswith(f"could not tear down endpoint {result.endpoint_id} (deployment {result.deployment_id}) of 'sticky': ")
    assert text.endswith(f"It may still be running and cost money: delete it with `vastai delete endpoint "
                         f"{result.endpoint_id}` or in the console (https://cloud.vast.ai/serverless/).")
    assert real not in text and backend.state == "shut down"
    cleanup = _started(app)
    cleanup.wait_deployed(30)
    cleanup.shutdown()


# =========================================================================== configuration errors
async def _no_arguments():  # type: ignore[no-untyped-def]  # a deployment on Vast needs a benchmarked function
    return 1



def test_missing_api_key_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.delenv("VAST_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    app = vastnb.Deployment("nokey", backend="vast")
    app.image(IMAGE, storage=16)
    app.remote(benchmark_dataset=[{}])(_no_arguments)
    with pytest.raises(ConfigurationError) as info:
        app.ensure_ready()
    assert app.state == "declared"  # refused before anything started
    assert str(info.value).startswith("backend='vast' needs a Vast API key and found none: No API key found.")
    assert str(info.value).endswith(
        "Create one at https://cloud.vast.ai/manage-keys/ and pass api_key=..., set VAST_API_KEY, or run "
        "`vastai set api-key KEY`.")


def test_key_from_environment_and_image_required(standin: VastStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAST_API_KEY", standin.api_key)
    app = vastnb.Deployment("envkey", backend="vast")
    app.remote(benchmark_dataset=[{}])(_no_arguments)
    with pytest.raises(ConfigurationError, match=r"^deployment 'envkey' has no image; backend='vast' needs one, e\.g\. "
                                                 r"app\.image\('vastai/pytorch:@vastai-automatic-tag', storage=16\)\.$"):
        app.ensure_ready()
    app.image(IMAGE, storage=16)
    backend = VastBackend(webserver_url=standin.url, autoscaler_url=standin.url)
    backend.start(app.spec())
    assert backend.wait_deployed(30).action == "created" and backend.api_key == standin.api_key
    backend.shutdown()
    with pytest.raises(ConfigurationError, match=r"^`ready_timeout` must be a positive number of seconds\. "
                                                 r"Instead got -1\.$"):
        VastBackend(ready_timeout=-1)


# =========================================================================== state mapping (no server)


def test_vast_worker_states_map_onto_vastnbs() -> None:
    assert map_state("CREATING") == map_state("starting") == map_state("Rebooting") == WorkerState.PROVISIONING
    assert map_state("LOADING") == map_state("model_loading") == map_state("Updating") == WorkerState.LOADING
    assert map_state("IDLE") == map_state("Ready") == WorkerState.READY
    assert map_state("IDLE", load=100.0) == map_state("running", working=1) == WorkerState.BUSY
    assert map_state("running") == WorkerState.READY  # nothing in flight
    assert map_state("DESTROYING") == map_state("Stopping") == WorkerState.DRAINING
    assert map_state("STOPPED") == map_state("Inactive") == WorkerState.INACTIVE  # Vast's cold workers
    assert map_state("DESTROYED") == WorkerState.STOPPED
    assert map_state("ERROR") == WorkerState.ERROR
    assert map_state("something new") == WorkerState.PROVISIONING


def test_tracker_publishes_worker_snapshots_from_sdk_rows() -> None:
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    tracker = StatusTracker(bus)
    row = {"id": 77, "status": "IDLE", "cur_load": 0.0, "perf": 812.5, "measured_perf": 850.0, "reliability": 0.95,
           "reqs_working": 0, "started_at": 1000.0, "loaded_at": 1100.0, "dph_total": 0.61, "gpu_name": "RTX 4090",
           "num_gpus": 2}
    assert tracker.apply_poll([row]) is True
    (worker,) = [e.worker for e in seen if e.kind == EventKind.WORKER]
    assert worker is not None
    assert (worker.id, worker.state, worker.perf_score, worker.price_per_hour, worker.gpu, worker.ready_at) == (
        "77", WorkerState.READY, 812.5, 0.61, "2x RTX 4090", 1100.0)
    assert tracker.apply_poll([row]) is False  # nothing changed, nothing published
    assert tracker.apply_poll([]) is True  # gone from Vast's list
    assert tracker.snapshot("d", "running", "v").workers[0].state == WorkerState.STOPPED
    assert tracker.cost_per_hour() == 0.0  # nothing billed


# =========================================================================== the SDK breakages worked around (vastai 1.9.1)


# the SDK's ensure_ready() creates its coroutine, then asyncio.run refuses to run it
@pytest.mark.filterwarnings("ignore:coroutine 'Deployment.async_ensure_ready' was never awaited:RuntimeWarning")
def test_works_where_the_sdks_ensure_ready_does_not(standin: VastStandIn, live: dict[str, Any]) -> None:
    """Inside a running event loop (a Jupyter cell) the SDK's ensure_ready() fails; vastnb's works."""
    from vastai.serverless.remote.deploy import Deployment as SdkDeployment

    sdk_app = SdkDeployment(api_key=standin.api_key, webserver_url=standin.url, autoscaler_url=standin.url, name="sdk")

    async def cell() -> Any:
        with pytest.raises(RuntimeError, match="asyncio.run\\(\\) cannot be called from a running event loop"):
            sdk_app.ensure_ready()
        live["app"].ensure_ready()  # blocking, from inside the running loop, as a notebook cell does
        return await live["square"](6)

    assert run_async(cell()) == 36
    gc.collect()  # the SDK's abandoned coroutine goes now, while its warning is expected


def test_sdk_async_ensure_ready_needs_python_312(standin: VastStandIn, tmp_path: Any) -> None:
    """The SDK's async_ensure_ready() passes NamedTemporaryFile(delete_on_close=...), new in Python 3.12: on the
    3.10 and 3.11 that vastnb supports it fails before any request (which is why vastnb uses the SDK's client calls)."""
    import tempfile

    from vastai.serverless.remote.deploy import Deployment as SdkDeployment

    if tuple(PY) >= (3, 12):  # the parameter exists there, so the SDK's own path is not broken by it
        with tempfile.NamedTemporaryFile(delete_on_close=False):  # type: ignore[call-overload,unused-ignore]
            return
    sdk_app = SdkDeployment(api_key=standin.api_key, webserver_url=standin.url, autoscaler_url=standin.url, name="p311")
    sdk_app.root_module, sdk_app.file = "deployment", str(tmp_path / "deployment.py")
    puts = len(standin.calls_to("PUT", "/api/v0/deployments/"))
    with pytest.raises(TypeError, match="delete_on_close"):
        run_async(sdk_app.async_ensure_ready())
    # refused before anything reached Vast (other requests keep arriving here: the live workers' reports, polls)
    assert len(standin.calls_to("PUT", "/api/v0/deployments/")) == puts
    assert not [d for d in standin.deployments.values() if d.name == "p311"]


def test_sdk_get_workers_through_a_deployments_client_breaks(standin: VastStandIn, live: dict[str, Any]) -> None:
    backend = backend_of(live["app"])
    assert backend.sdk is not None

    async def probe() -> None:
        endpoint = await backend.sdk.routing_endpoint()  # type: ignore[union-attr]
        with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'post'"):
            await endpoint.get_workers()

    backend._thread.run(probe(), 10)  # type: ignore[union-attr]
    rows = backend._thread.run(backend.sdk.workers(), 10)  # type: ignore[union-attr]  # vastnb's way: same route
    assert [str(row["id"]) for row in rows] == [w.id for w in live["app"].snapshot().workers]


# =========================================================================== the notebook's words: magics on backend vast


def test_magics_drive_the_vast_backend(standin: VastStandIn, launcher: WorkerLauncher,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`%vast_deployment demo --backend vast` and the cells that follow, in IPython's own shell, end to end."""
    from IPython.testing import globalipapp
    from IPython.utils.capture import capture_output

    launcher.enable("magicdemo")
    monkeypatch.setenv("VAST_API_KEY", standin.api_key)
    monkeypatch.setenv("VAST_URL", standin.url)
    monkeypatch.setenv("VASTNB_AUTOSCALER_URL", standin.url)
    ip = globalipapp.get_ipython()
    ip.run_line_magic("load_ext", "vastnb")

    def cell(source: str) -> Any:
        with capture_output() as captured:
            result = ip.run_cell(source)
        if result.error_before_exec or result.error_in_exec:
            raise AssertionError(f"{source!r} failed: {result.error_before_exec or result.error_in_exec!r}\n{captured.stdout}")
        return result.result, captured.stdout

    try:
        _, said = cell("%vast_deployment magicdemo --backend vast --var vapp")
        assert said == "vastnb: created deployment 'magicdemo' (vast backend) as `vapp`\n"
        cell(f"vapp.image({IMAGE!r}, storage=16)\nvapp.configure_autoscaling(cold_workers=1, max_workers=2)")
        cell("%%vast_remote --benchmark-dataset '[{\"x\": 2}]'\nasync def square(x):\n    return x * x\n")
        assert cell("await square(7)")[0] == 49
        puts = len(standin.calls_to("PUT", "/api/v0/deployments/"))
        cell("%%vast_remote --benchmark-dataset '[{\"x\": 2}]'\nasync def square(x):\n    return x * x + 1\n")
        assert cell("await square(7)")[0] == 50
        assert len(standin.calls_to("PUT", "/api/v0/deployments/")) == puts  # a redefined cell costs no redeploy
        assert repr(cell("%%vast_run\nanswer = 6 * 7\nanswer\n")[0]) == "42"  # the worker's repr
        with pytest.raises(AssertionError, match="ZeroDivisionError"):
            cell("%%vast_run\n1 / 0\n")
        app = ip.user_ns["vapp"]
        endpoint = app.snapshot().endpoint_id
        _, said = cell("%vast_down --keep-endpoint")
        assert said == (f"vastnb: deployment 'magicdemo' let go; its Vast endpoint {endpoint} keeps serving and costing "
                        f"money. Delete it later with `vastai delete endpoint {endpoint}`.\n")
        assert endpoint in standin.endpoints  # still there, as asked

        _, said = cell("%vast_deployment magicdemo --backend vast --var vapp")
        assert said.splitlines() == ["vastnb: created deployment 'magicdemo' (vast backend) as `vapp`",
                                     "vastnb: the previous one was shut down, so run its %%vast_context and "
                                     "%%vast_remote cells again"]
        cell(f"vapp.image({IMAGE!r}, storage=16)\nvapp.configure_autoscaling(cold_workers=1, max_workers=2)")
        cell("%%vast_remote --benchmark-dataset '[{\"x\": 2}]'\nasync def square(x):\n    return x * x\n")
        assert cell("await square(8)")[0] == 64
        assert ip.user_ns["vapp"].snapshot().endpoint_id == endpoint  # the kept endpoint, picked up again
        _, said = cell("%vast_down")
        assert said == f"vastnb: deployment 'magicdemo' is shut down; its Vast deployment and endpoint {endpoint} are deleted.\n"
        assert endpoint not in standin.endpoints
    finally:
        for value in list(ip.user_ns.values()):
            if isinstance(value, vastnb.Deployment):
                value.shutdown()
        ip.user_ns.pop("vapp", None)
        magics = ip.magics_manager.registry["VastMagics"]
        magics._app, magics._var, magics._known = None, "app", {}  # the shell is shared with other test modules


def test_keep_endpoint_is_refused_on_the_local_backend() -> None:
    app = vastnb.Deployment("here")
    with pytest.raises(NotSupportedByBackend, match=r"^shutdown\(keep_endpoint=True\): the local backend's workers "
                                                    r"live in this kernel and cannot outlive it\. "
                                                    r"Call shutdown\(\) without keep_endpoint\.$"):
        app.shutdown(keep_endpoint=True)
    assert app.state != "shut down"  # refused before anything stopped
