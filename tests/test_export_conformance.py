"""Exports behave like their notebooks: on the official worker runtime, and in the official SDK's client mode.

For each exported notebook, one official worker (``OfficialWorker``, the SDK's own
``serve_deployment`` on loopback) serves the module; every remote function is called
over HTTP in the official JSON format and must return what vastnb's local backend
returns for the same call (``_reference_result``): the notebook runs in a real IPython
shell with the real ``vastnb`` (magics, ``Deployment``, local worker processes), in a
fresh process of its own per notebook (``tests/_local_reference.py``), and the remote
function is awaited there as a notebook cell would.
"""

from __future__ import annotations

import glob
import os
from typing import Any

import pytest

from tests.official_worker import OfficialWorker
from tests.test_export import NO_BENCHMARK, with_benchmark
from vastnb.export import client_mode_config, export_cells, export_notebook

from ._local_reference import LocalReference

HERE = os.path.dirname(os.path.abspath(__file__))
TEST_NOTEBOOKS = os.path.join(HERE, "export_notebooks")
GIVEN = os.path.join(HERE, "..", "notebooks")


def _path(name: str) -> str:
    for folder in (TEST_NOTEBOOKS, GIVEN):
        path = os.path.join(folder, f"{name}.ipynb")
        if os.path.exists(path):
            return path
    raise FileNotFoundError(name)


# ------------------------------------------------------------------------------------------ the notebook, on vastnb
# Cells a notebook may fail in because a library it explores with is not installed here.
_OPTIONAL_MODULES = ("matplotlib",)
_RUNS: dict[str, LocalReference] = {}


def _run_of(path: str) -> LocalReference:
    """The notebook at ``path``, run once on vastnb's local backend in its own process (see _local_reference)."""
    if path not in _RUNS:
        name = os.path.splitext(os.path.basename(path))[0]
        _RUNS[path] = LocalReference(path, f"vastnb_reference_{name}", optional_modules=_OPTIONAL_MODULES)
    return _RUNS[path]


def _close_run(path: str) -> None:
    run = _RUNS.pop(path, None)
    if run is not None:
        run.close()


def _reference_result(path: str, fname: str, kwargs: dict[str, Any]) -> tuple[str, Any]:
    """("ok", value) or ("err", exception) of ``await fname(**kwargs)`` in the notebook, on vastnb's local backend."""
    return _run_of(path).call(fname, kwargs)


def _same(a: Any, b: Any) -> bool:
    """Equal values; objects of notebook classes compare by class name and attributes."""
    if isinstance(a, (list, tuple)) and type(a) is type(b):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if type(a).__module__.startswith("vastnb_reference_") or type(b).__module__.startswith("vastnb_reference_"):
        return type(a).__qualname__ == type(b).__qualname__ and _same(vars(a), vars(b))
    return bool(a == b) and type(a) is type(b)


# ------------------------------------------------------------------------------------------ the official worker
class Served:
    def __init__(self, name: str) -> None:
        self.path = _path(name)
        self.run = _run_of(self.path)
        self.result = export_notebook(self.path)
        assert self.result.name is not None
        self.worker = OfficialWorker(self.result.module_source, self.result.name, client_module=self.run.module_name,
                                     startup_timeout=60)

    def check(self, fname: str, **kwargs: Any) -> Any:
        expected = _reference_result(self.path, fname, kwargs)
        try:
            got: tuple[str, Any] = ("ok", self.worker.call(fname, **kwargs))
        except Exception as exc:  # noqa: BLE001 - compared below
            got = ("err", exc)
        assert got[0] == expected[0], f"{fname}{kwargs}: worker {got}, notebook {expected}"
        if got[0] == "ok":
            assert _same(got[1], expected[1]), f"{fname}{kwargs}: worker {got[1]!r}, notebook {expected[1]!r}"
        else:
            assert type(got[1]) is type(expected[1])
        return got[1]


def _serve(name: str):
    try:
        served = Served(name)
        with served.worker:
            assert "Benchmark complete" in served.worker.log
            assert served.worker.perf_score is not None and served.worker.perf_score > 0
            yield served
    finally:
        _close_run(_path(name))  # the notebook's %vast_down, then no worker may be left


@pytest.fixture(scope="module")
def small():
    yield from _serve("small")


@pytest.fixture(scope="module")
def magics():
    yield from _serve("magics")


@pytest.fixture(scope="module")
def helpers():
    yield from _serve("helpers")


@pytest.fixture(scope="module")
def quickstart():
    yield from _serve("quickstart")


def test_small(small):
    for x in (3, 100, -2, 0):
        small.check("square", x=x)


def test_magics(magics):
    assert magics.check("echo", text="ab", repeat=3) == {"text": "ABABAB", "scale": 3, "loaded": "weights-v1@3"}
    magics.check("echo", text="hello")
    assert magics.check("count", text="a1b2c") == 3
    log = magics.worker.log
    # allow_parallel_requests reached the worker (only the serve-mode remote() takes it): 10 at a time
    assert "Run: 1, concurrent_requests: 10" in log
    # the calculator was called with echo's own arguments and never fell back to 100
    assert "Total workload: 60.0" in log  # 10 concurrent requests x cost("abc", 2) = 6
    assert "falling back" not in log


def test_helpers(helpers):
    Point = helpers.run.ns["Point"]
    assert helpers.check("measure", p=Point(3, 4)) == 15.0  # SCALE = 3, the last definition
    added = helpers.check("add", a=Point(1, 2), b=Point(0.5, -1))
    assert type(added) is Point and added == Point(1.5, 1)
    assert helpers.check("labels", n=2) == ["base", "base", "late", "build-1"]
    helpers.check("labels", n=0)


def test_quickstart(quickstart):
    Point = quickstart.run.ns["Point"]
    for x in (5, 1000):
        quickstart.check("square", x=x)
    quickstart.check("greet", name="notebook")
    assert vars(quickstart.check("mirror", p=Point(1, 2))) == {"x": 2, "y": 1}
    err = quickstart.check("square", x=-3)
    # the sharp edge the export warns about: the type travels, the message does not
    assert type(err) is ValueError and err.args == ()
    assert _reference_result(quickstart.path, "square", {"x": -3})[1].args == ("square() takes x >= 0, got -3",)


# ------------------------------------------------------------------------------------------ client mode
BASE = "verified=true rentable=true rented=false"
DECLARED = {
    "small": (
        {"name": "sq", "tag": "v2", "image": "vastai/pytorch:@vastai-automatic-tag", "storage": 16,
         "search_params": f"{BASE} gpu_ram>=16 gpu_name in RTX_4090,H100_SXM", "cold_workers": 2, "max_workers": 4},
        {"name": "sq", "pip_installs": ["numpy"], "apt_gets": [], "envs": [["MODE", "dev"]], "runs": []},
    ),
    "magics": (
        {"name": "magic-demo", "tag": "t1", "image": "vastai/base-image:@vastai-automatic-tag", "storage": 20,
         "search_params": f"{BASE} gpu_ram>=8 cpu_ram>15.5", "cold_workers": 1, "max_workers": 3},
        {"name": "magic-demo", "pip_installs": [], "apt_gets": [], "envs": [["GREETING", "hi"]], "runs": []},
    ),
    "helpers": (
        {"name": "helpers", "tag": "default", "image": "vastai/base-image:@vastai-automatic-tag", "storage": 8,
         "search_params": f"{BASE} gpu_total_ram>=24"},
        {"name": "helpers", "pip_installs": [], "apt_gets": [], "envs": [], "runs": []},
    ),
    "quickstart": (
        {"name": "quickstart", "tag": "default", "image": "vastai/pytorch:@vastai-automatic-tag", "storage": 16,
         "search_params": f"{BASE} gpu_ram>=16", "cold_workers": 2, "max_workers": 2},
        {"name": "quickstart", "pip_installs": [], "apt_gets": [], "envs": [], "runs": []},
    ),
}
_AUTOSCALING = ("cold_workers", "max_workers", "min_load", "min_cold_load", "target_util", "cold_mult",
                "max_queue_time", "target_queue_time", "inactivity_timeout")


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_client_mode_sends_what_the_notebook_declared(name):
    declared, tar_config = DECLARED[name]
    sent = client_mode_config(export_notebook(_path(name)).module_source)
    config = sent["config"]
    assert sent["mode"] == "vastai.serverless.remote.deploy"
    assert {k: config.get(k) for k in declared} == declared
    assert {k: config[k] for k in _AUTOSCALING if k in config} == {k: declared[k] for k in _AUTOSCALING
                                                                    if k in declared}
    assert sent["tarball_config"] == tar_config  # the name the worker looks the deployment up by
    assert sent["tarball_members"] == ["./config.json", "./deployment.py"]
    assert sent["root_module"] == "deploy"


def _export(path: str) -> Any:
    """The notebook's export; one that explores without a benchmark gets the one its refusal asks for."""
    name = os.path.splitext(os.path.basename(path))[0]
    if name in NO_BENCHMARK:
        return export_cells(with_benchmark(name), name=name)
    return export_notebook(path)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(GIVEN, "*.ipynb"))) + [
    os.path.join(TEST_NOTEBOOKS, "wire.ipynb")], ids=os.path.basename)
def test_every_export_imports_in_client_mode(path):
    result = _export(path)
    sent = client_mode_config(result.module_source)
    assert sent["config"]["name"] == result.name == sent["tarball_config"]["name"]


# ------------------------------------------------------------------------------------------ warnings come true
@pytest.mark.parametrize("name, warned, logged", [
    ("contexts_and_hot_reload", "context Counter uses vastnb.worker_namespace",
     "Lifecycle startup failed: name 'vastnb' is not defined"),
    ("wire", "f(flag): benchmark_dataset[0] value True is a bool",
     "TypeError: Object of type <class 'bool'> is not JSON serializable!"),
])
def test_what_the_export_warns_about_breaks_the_official_worker(name, warned, logged):
    """The notebooks that use vastnb-only features export with a warning, and the warning is real.
    (torch_inference fails like contexts_and_hot_reload; left out because importing torch is slow.)"""
    from tests.official_worker import OfficialWorkerError

    result = _export(_path(name))
    assert any(str(w).startswith(warned) for w in result.warnings)
    assert result.name is not None
    with pytest.raises(OfficialWorkerError) as exc:
        OfficialWorker(result.module_source, result.name, startup_timeout=60).start()
    assert logged in str(exc.value)


def test_what_the_export_refuses_the_official_worker_refuses():
    """A deployment without a benchmark: the export refuses it (tests/test_export.py), because this happens."""
    from tests.official_worker import OfficialWorkerError

    result = _export(_path("shared_runtime"))
    benchmarked = '@app.remote(benchmark_dataset=[{"i": 0}])\nasync def lookup(i):'
    assert benchmarked in result.module_source and result.name == "shared"
    source = result.module_source.replace(benchmarked, "@app.remote()\nasync def lookup(i):")
    with pytest.raises(OfficialWorkerError) as exc:
        OfficialWorker(source, result.name, startup_timeout=60).start()
    assert "Missing EndpointHandler with BenchmarkConfig" in str(exc.value)
