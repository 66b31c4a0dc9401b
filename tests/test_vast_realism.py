"""The Vast backend against a control plane as unkind as Vast's: the STAND-IN's realism switches, end to end.

Each test turns on one or more :class:`tests.vast_standin.Realism` switches for
its own deployment name and drives the backend through the official ``vastai``
SDK, with real official worker runtimes where a worker is needed. Nothing here
reaches Vast's cloud.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
import types
from typing import Any, Iterator

import pytest

import vastnb
from vastnb import CallTimeout, ConfigurationError, WorkerStartError
from vastnb.backends.vast import VastApiError, VastBackend
from vastnb.backends.vast import _ready, _route
from vastnb.backends.vast._module import build_snapshot, generate_module
from vastnb.deployment._capture import capture
from vastnb.events import EventKind, WorkerState
from vastnb.query import gpu_ram
from vastnb.spec import BenchmarkSpec, DeploymentSpec, FunctionSpec
from tests.conftest import wait_for
from tests.vast_standin import Realism, VastStandIn, WorkerLauncher, serve_module

pytestmark = pytest.mark.timeout(240)
IMAGE = "vastai/base-image:@vastai-automatic-tag"
BILLING = ("Vast keeps provisioning (and billing) its workers until the deployment is deleted: app.shutdown() from "
           "this notebook, or `vastai delete deployment {id}` (https://cloud.vast.ai/serverless/).")


@pytest.fixture(scope="module")
def standin() -> Iterator[VastStandIn]:
    with VastStandIn() as s:
        yield s


@pytest.fixture(scope="module")
def launcher(standin: VastStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerLauncher]:
    lw = WorkerLauncher(standin, str(tmp_path_factory.mktemp("workers")))
    yield lw
    lw.stop()


def vast_app(standin: VastStandIn, name: str, realism: Realism | None = None,
             **options: Any) -> tuple[vastnb.Deployment, VastBackend]:
    """A deployment on the stand-in with ``realism`` switched on for it; one remote function ``double``."""
    if realism is not None:
        standin.realism[name] = realism
    backend = VastBackend(**standin.backend_options(**options))
    app = vastnb.Deployment(name, backend=backend)
    app.image(IMAGE, storage=16)
    app.configure_autoscaling(cold_workers=1, max_workers=2)

    @app.remote(benchmark_dataset=[{"x": 1}], timeout=60)
    async def double(x):  # type: ignore[no-untyped-def]
        return 2 * x

    return app, backend


# =========================================================================== item 1: inactive cold workers


def test_cold_workers_past_the_active_one_are_inactive_and_ready_needs_the_active_one(
        standin: VastStandIn, launcher: WorkerLauncher) -> None:
    launcher.enable("cold")
    app, backend = vast_app(standin, "cold", Realism(inactive_workers=1))
    app.configure_autoscaling(cold_workers=2, max_workers=3)  # one active (min_load=1), one inactive
    strict = VastBackend(**standin.backend_options(ready_workers=2, ready_timeout=2.0))
    try:
        app.ensure_ready()  # waits for the worker the engine serves with, not for both cold workers
        assert backend.ready_target() == 1
        assert wait_for(lambda: sorted(w.state.value for w in app.snapshot().workers) == ["inactive", "ready"])
        assert app.functions["double"].call(4) == 8
        assert backend.cost_per_hour() == pytest.approx(0.42)  # the inactive worker's GPU is not billed
        inactive = next(w for w in app.snapshot().workers if w.state == WorkerState.INACTIVE)
        assert (inactive.state.alive, inactive.state.serving) == (True, False)
        # more serving workers than the engine keeps active: waited for only when asked for explicitly
        strict.start(app.spec())
        with pytest.raises(WorkerStartError) as info:
            strict.wait_ready(strict.ready_target()).result(60)
        assert re.match(r"2 worker\(s\) of deployment 'cold' \(Vast endpoint \d+\) did not become ready within 2 s\. "
                        r"Vast reports: (1 busy, 1 inactive|1 inactive, 1 ready)\. Cold starts", str(info.value))
    finally:
        strict.shutdown(keep_endpoint=True)
        app.shutdown()
        standin.realism.pop("cold", None)


def test_ready_workers_must_be_a_positive_integer() -> None:
    with pytest.raises(ConfigurationError, match=r"^`ready_workers` must be a positive integer or None\. "
                                                 r"Instead got 0\.$"):
        VastBackend(ready_workers=0)


# =========================================================================== item 2: /route/ is flaky


def test_route_502_429_and_slow_answers_are_retried_until_the_deadline(
        standin: VastStandIn, launcher: WorkerLauncher, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(_route, "MAX_BACKOFF", 0.2)  # the back-off doubles up to this (30 s on Vast)
    launcher.enable("flaky")
    real = Realism(route_failures=[(502, "<html><body>502 Bad Gateway</body></html>"), (429, "Too Many Requests"),
                                   (503, "upstream connect error")], slow_routes=1)
    app, backend = vast_app(standin, "flaky", real)
    lines: list[str] = []
    app.events.subscribe(lambda e: lines.append(e.data["line"]) if e.kind == EventKind.LOG else None)
    try:
        app.ensure_ready()  # a cold start polls /route/ through every one of those
        assert (real.route_failures, real.slow_routes) == ([], 0)
        assert lines[:3] == [
            "Vast /route/ failing (1 in a row, retrying): HTTP 502 - <html><body>502 Bad Gateway</body></html>",
            "Vast /route/ failing (2 in a row, retrying): HTTP 429 - Too Many Requests",
            "Vast /route/ failing (3 in a row, retrying): HTTP 503 - upstream connect error"]
        assert re.fullmatch(r"Vast /route/ failing \(4 in a row, retrying\): Request to http://127\.0\.0\.1:\d+"
                            r"/route/ timed out after 10\.0s", lines[3]), lines  # the slow answer, given up on
        # the readiness bar said what Vast said, and ends on the worker it found
        assert "flaky: workers ready: 1/1 workers, Vast /route/: a worker is ready · done in" in capsys.readouterr().err
        assert app.functions["double"].call(21) == 42

        @app.remote(timeout=2.0)
        async def quick():  # type: ignore[no-untyped-def]
            return 1

        real.route_failures[:] = [(502, "Bad Gateway")] * 10_000  # /route/ down for good: the call's deadline ends it
        with pytest.raises(CallTimeout) as info:
            quick.call()
        assert str(info.value) == (
            f"quick() did not finish within 2 s: Vast had no ready worker for endpoint {backend.endpoint_id} (its "
            "/route/ kept failing, retried until the deadline: HTTP 502 - Bad Gateway). Workers: "
            f"{backend.tracker.summary()}. Raise timeout in @app.remote(timeout=...) for slow calls or cold starts; "
            "see %vast_status.")
        snap = app.snapshot()
        assert snap.autoscaler.last_decision is not None
        assert snap.autoscaler.last_decision.reason.startswith("Vast /route/ failing (")
    finally:
        real.route_failures.clear()
        app.shutdown()


def test_a_route_refusal_is_not_retried(standin: VastStandIn) -> None:
    app, backend = vast_app(standin, "refused", Realism(route_failures=[(404, "no such endpoint")]))
    try:
        with pytest.raises(VastApiError) as info:
            app.functions["double"].call(1)
        assert str(info.value) == (
            "double(): Vast's /route/ refused the request (HTTP 404: no such endpoint); endpoint "
            f"{backend.endpoint_id} is gone (deleted in the console, or by its ttl after this kernel's heartbeats "
            "stopped): create the Deployment again (or run %vast_deployment again) to redeploy.")
    finally:
        app.shutdown()


# =========================================================================== item 4: the worker list's shapes


def test_worker_lists_in_the_openapi_shape_and_without_fields_keep_status(
        standin: VastStandIn, launcher: WorkerLauncher, caplog: pytest.LogCaptureFixture) -> None:
    launcher.enable("shapes")
    real = Realism(workers_shape="object", fieldless_rows=True)  # {"workers": [{id, status, url, created_at}]}
    app, backend = vast_app(standin, "shapes", real)
    try:
        app.ensure_ready()
        assert wait_for(lambda: any(w.state.serving and w.started_at == 1748779200.0 for w in app.snapshot().workers))
        (worker,) = app.snapshot().workers
        assert (worker.price_per_hour, worker.gpu) == (None, None)  # not in the rows: unknown, not $0 or a guess
        assert backend.cost_per_hour() is None
        assert backend.tracker.summary() in ("1 ready", "1 busy")
        real.workers_shape = "error"  # the documented plain-string error: polls fail, the view keeps its workers
        polls = len(standin.calls_to("POST", "/get_endpoint_workers/"))
        with caplog.at_level(logging.WARNING, logger="vastnb"):
            assert wait_for(lambda: len(standin.calls_to("POST", "/get_endpoint_workers/")) >= polls + 3)
        assert [w.id for w in app.snapshot().workers if w.state.serving] == [worker.id]
        warned = [r.getMessage() for r in caplog.records if "polling Vast" in r.getMessage()]
        assert warned[0] == (
            f"vastnb: polling Vast for 'shapes' failed (1 time(s)): listing the workers of endpoint "
            f"{backend.endpoint_id} failed: Vast answered 'authenticate_endpoint_apikey: invalid api_key or endpoint "
            "shapes not found'")
    finally:
        app.shutdown()


# =========================================================================== items 6 and 8: teardown, missing fields


def test_a_second_delete_answering_400_is_no_failure(standin: VastStandIn) -> None:
    app, backend = vast_app(standin, "gone", Realism(second_delete_400=True))
    backend.start(app.spec())
    result = backend.wait_deployed(30)
    backend.shutdown()  # DELETE deployment took the endpoint along; DELETE endptjobs answers 400: not an error
    assert result.endpoint_id not in standin.endpoints and result.deployment_id not in standin.deployments
    route = "/api/v0/endptjobs/{id}/"
    assert [(status, body) for m, r, status, body in standin.responses if (m, r) == ("DELETE", route)][-1] == (
        400, {"success": False, "error": "delete update failed"})


def test_an_endpoint_that_survives_its_delete_is_loud(standin: VastStandIn) -> None:
    app, backend = vast_app(standin, "sticky-endpoint", Realism(sticky_endpoint=True))
    backend.start(app.spec())
    result = backend.wait_deployed(30)
    try:
        with pytest.raises(VastApiError) as info:
            backend.shutdown()
        assert str(info.value) == (
            f"could not tear down endpoint {result.endpoint_id} (deployment {result.deployment_id}) of "
            f"'sticky-endpoint': deleting endpoint {result.endpoint_id} failed: Failed to delete endpoint "
            f"{result.endpoint_id}: HTTP 400 - {{\"success\": false, \"error\": \"delete update failed\"}}. It may "
            f"still be running and cost money: delete it with `vastai delete endpoint {result.endpoint_id}` or in "
            "the console (https://cloud.vast.ai/serverless/).")
    finally:
        standin.realism.pop("sticky-endpoint", None)
        standin.endpoints.pop(result.endpoint_id, None)


def test_a_put_answer_without_workergroup_id_is_looked_up(standin: VastStandIn) -> None:
    app, backend = vast_app(standin, "nowg", Realism(omit_workergroup_id=True))
    backend.start(app.spec())
    try:
        result = backend.wait_deployed(30)
        dep = standin.deployment_named("nowg")
        put = [b for m, r, s, b in standin.responses if (m, r) == ("PUT", "/api/v0/deployments/")][-1]
        assert "workergroup_id" not in put and result.workergroup_id == dep.workergroup_id
        standin.log_lines[:] = ["workergroup line"]
        assert backend.logs()[f"workergroup {dep.workergroup_id}"] == ["workergroup line"]
    finally:
        backend.shutdown()


# =========================================================================== item 9: slow provisioning, ttl


def test_minute_scale_provisioning_past_the_ready_timeout_says_how_to_stop_billing(
        standin: VastStandIn, launcher: WorkerLauncher) -> None:
    launcher.enable("slowprov")
    app, backend = vast_app(standin, "slowprov", Realism(provisioning_s=300.0), ready_timeout=2.0)
    try:
        with pytest.raises(WorkerStartError) as info:
            app.ensure_ready()
        dep = standin.deployment_named("slowprov")
        text = str(info.value)
        assert text.startswith(f"1 worker(s) of deployment 'slowprov' (Vast endpoint {dep.endpoint_id}) did not "
                               "become ready within 2 s. Vast reports: ")
        assert re.search(r"; /route/ says: waiting for workers \(0 ready, [01] loading\)\. Cold starts pull the image",
                         text), text
        assert text.endswith(BILLING.format(id=dep.id))
        assert dep.id in standin.deployments  # still provisioning (and billing): the message said how to stop it
        assert wait_for(lambda: [w.state for w in app.snapshot().workers] == [WorkerState.PROVISIONING])
        standin.clock.advance(200)  # minutes pass: the worker loads
        assert wait_for(lambda: [w.state for w in app.snapshot().workers] == [WorkerState.LOADING])
        standin.clock.advance(101)
        backend.ready_timeout = 60.0
        app.ensure_ready()  # the same deployment serves once provisioning is over
        assert app.functions["double"].call(5) == 10
    finally:
        app.shutdown()


def _interactive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))  # a kernel's __main__: no file


def test_interactive_sessions_get_a_heartbeat_ttl_unless_told_otherwise(
        standin: VastStandIn, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def ttl_sent(name: str, interactive: bool, **options: Any) -> Any:
        app, backend = vast_app(standin, name, **options)
        with monkeypatch.context() as m:
            if interactive:
                _interactive(m)
            backend.start(app.spec())
        result = backend.wait_deployed(30)
        body = [b for b in standin.calls_to("PUT", "/api/v0/deployments/") if b["name"] == name][-1]
        if body.get("ttl"):
            assert wait_for(lambda: any(i == result.deployment_id for i, _ in standin.heartbeats))
        with caplog.at_level(logging.WARNING, logger="vastnb"):
            backend.shutdown(keep_endpoint=True)
        again = VastBackend(**standin.backend_options())
        again.start(app.spec())
        again.wait_deployed(30)
        again.shutdown()
        return body.get("ttl")

    assert ttl_sent("ttl-session", True) == 900.0
    assert [r.getMessage() for r in caplog.records if r.name == "vastnb"] == [(
        "vastnb: deployment 'ttl-session' is kept, but it was deployed with the notebook-session ttl (900 s): Vast "
        "deletes it 900 s after this kernel's last heartbeat. To keep it for good, deploy it with "
        "VastBackend(session_ttl=None).")]
    assert ttl_sent("ttl-script", False) is None  # a script (or a test) keeps Vast's default: no ttl
    assert ttl_sent("ttl-off", True, session_ttl=None) is None
    assert ttl_sent("ttl-custom", True, session_ttl=120.0) == 120.0
    explicit = vastnb.Deployment("ttl-explicit", backend=VastBackend(**standin.backend_options()), ttl=42.0)
    explicit.image(IMAGE, storage=16)
    with monkeypatch.context() as m:
        _interactive(m)
        explicit._backend.start(explicit.spec())
    assert explicit._backend.wait_deployed(30).deployment_id  # type: ignore[attr-defined]
    assert [b for b in standin.calls_to("PUT", "/api/v0/deployments/") if b["name"] == "ttl-explicit"][-1]["ttl"] == 42.0
    explicit.shutdown()


# =========================================================================== deploy-time refusals


def test_an_invalid_api_key_is_refused_at_deploy_time_in_plain_words(standin: VastStandIn) -> None:
    app, _ = vast_app(standin, "badkey", api_key="not-a-real-key-1234")
    try:
        with pytest.raises(VastApiError) as info:
            app.ensure_ready()
        assert str(info.value) == (
            "Vast refused the API key while registering deployment 'badkey' (HTTP 401); nothing was deployed. Check "
            "the key at https://cloud.vast.ai/manage-keys/ (it may be mistyped, revoked or lack serverless "
            "permissions) and pass api_key=..., set VAST_API_KEY, or run `vastai set api-key KEY`.")
        assert not [d for d in standin.deployments.values() if d.name == "badkey"]
    finally:
        app.shutdown()


def test_no_matching_offers_is_said_when_the_wait_ends(standin: VastStandIn, launcher: WorkerLauncher) -> None:
    launcher.enable("nooffers")
    app, backend = vast_app(standin, "nooffers", Realism(no_offers=True), ready_timeout=2.0)
    app.current_image.require(gpu_ram >= 24)  # type: ignore[union-attr]
    standin.offers[:] = [{"id": 1, "gpu_name": "RTX 3060", "gpu_ram": 12288, "dph_total": 0.05, "verified": True,
                          "rentable": True, "rented": False}]
    try:
        with pytest.raises(WorkerStartError) as info:
            app.ensure_ready()
        dep = standin.deployment_named("nooffers")
        assert str(info.value) == (
            f"1 worker(s) of deployment 'nooffers' (Vast endpoint {dep.endpoint_id}) did not become ready within "
            "2 s. Vast reports: none listed by Vast yet; /route/ says: no offers match the search parameters. Cold "
            "starts pull the image and enter your contexts (minutes on Vast); see %vast_logs, call ensure_ready() "
            "again to keep waiting, or raise VastBackend(ready_timeout=...). No offer on Vast's marketplace matches "
            "the image's requirement ('verified=true rentable=true rented=false gpu_ram>=24'), so no worker can be "
            f"recruited: loosen image.require(...) (see %vast_gpus). {BILLING.format(id=dep.id)}")
    finally:
        standin.realism.pop("nooffers", None)
        standin.offers.clear()
        app.shutdown()


@pytest.mark.parametrize("name, tag, message", [
    ("my notebook", "default", "Vast refuses the deployment name 'my notebook': it must be 1-128 letters, digits, "
     "'.', '_' or '-', starting with a letter or digit. Pass name='my-notebook' to vastnb.Deployment(...) (or "
     "%vast_deployment) instead."),
    ("_private", "default", "Vast refuses the deployment name '_private': it must be 1-128 letters, digits, '.', '_' "
     "or '-', starting with a letter or digit. Pass name='private' to vastnb.Deployment(...) (or %vast_deployment) "
     "instead."),
    ("ok", "v 2", "Vast refuses the deployment tag 'v 2': it must be 1-128 letters, digits, '.', '_' or '-', "
     "starting with a letter or digit. Pass tag='v-2' to vastnb.Deployment(...) (or %vast_deployment) instead."),
    ("x" * 129, "default", f"Vast refuses the deployment name '{'x' * 129}': it must be 1-128 letters, digits, '.', "
     f"'_' or '-', starting with a letter or digit. Pass name='{'x' * 128}' to vastnb.Deployment(...) (or "
     "%vast_deployment) instead."),
])
def test_names_vast_refuses_are_refused_before_anything_is_sent(name: str, tag: str, message: str) -> None:
    app = vastnb.Deployment(name, tag=tag, backend=VastBackend(api_key="unused-key-for-names"))
    app.image(IMAGE, storage=16)

    @app.remote(benchmark_dataset=[{}])
    async def f():  # type: ignore[no-untyped-def]
        return 1

    with pytest.raises(ConfigurationError) as info:
        app.ensure_ready()
    assert str(info.value) == message
    assert app.state == "declared"


# =========================================================================== item 5: the benchmark's length


async def _bench_step(path):  # type: ignore[no-untyped-def]
    with open(path, "a") as fh:
        fh.write("call\n")


@pytest.mark.parametrize("parallel, calls, per_run", [(False, 1 + 3, "100.0"), (True, 1 + 3 * 10, "1000.0")])
def test_the_official_benchmark_runs_a_serial_function_once_per_run(
        standin: VastStandIn, tmp_path: Any, parallel: bool, calls: int, per_run: str) -> None:
    """The frame function allows parallel requests, so the official benchmark sends 10 per run: a serial benchmark
    function runs once per run (1 + runs calls, its whole workload per run), a parallel one 10 times."""
    marker = str(tmp_path / "calls.txt")
    fn = FunctionSpec(name="_bench_step", blob=capture(_bench_step, "_bench_step"), allow_parallel=parallel)
    bench = BenchmarkSpec(fn_hash=fn.hash, dataset=[{"path": marker}], generator=None, runs=3, parallel=parallel,
                          workload_calculator=None)
    fn = dataclasses.replace(fn, benchmark=bench)
    spec = DeploymentSpec(name="bench", functions={"_bench_step": fn}, benchmark="_bench_step")
    module = generate_module("bench", build_snapshot(spec), benchmark_runs=3, frame_key="k",
                             benchmark_parallel=parallel)
    worker = serve_module(standin, str(tmp_path), module, "bench", "701")
    try:
        worker.wait_ready()
        with open(marker) as fh:
            assert len(fh.read().splitlines()) == calls
        assert re.findall(r"Total workload: ([\d.]+)", worker.log()) == [per_run] * 3
    finally:
        worker.stop()


# =========================================================================== item 3: the workers' Python


def test_a_worker_on_another_python_is_reported_at_ready_time(
        standin: VastStandIn, launcher: WorkerLauncher, monkeypatch: pytest.MonkeyPatch) -> None:
    launcher.enable("otherpy")
    app, backend = vast_app(standin, "otherpy")
    ours = f"{sys.version_info[0]}.{sys.version_info[1]}"
    monkeypatch.setattr(_ready, "PY", [3, 99])  # this "notebook" runs Python 3.99; the real worker runs ours
    try:
        with pytest.raises(WorkerStartError) as info:
            app.ensure_ready()
        dep = standin.deployment_named("otherpy")
        assert str(info.value) == (
            f"the Vast workers of deployment 'otherpy' run Python {ours}, but this notebook runs Python 3.99: "
            "notebook code travels as bytecode, which loads only on the same Python minor version, so every call "
            "would fail. Give the workers Python 3.99 (an image whose python3 is 3.99, or "
            "image.venv('/path/to/a/python3.99/venv') in an image that has one), or run this notebook on Python "
            f"{ours}. {BILLING.format(id=dep.id)}")
    finally:
        app.shutdown()
