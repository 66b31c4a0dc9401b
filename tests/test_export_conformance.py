"""Exports behave like their notebooks: on the official worker runtime, and in the official SDK's client mode.

For each exported notebook, one official worker (``OfficialWorker``, the SDK's own
``serve_deployment`` on loopback) serves the module; every remote function is called
over HTTP in the official JSON format and must return what the notebook's own
function returns when run in this process (``_reference_result``).
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import glob
import inspect
import os
import shlex
import sys
import types
from typing import Any, Callable

import pytest

from vastnb._official_worker import OfficialWorker
from vastnb.export import client_mode_config, export_notebook, read_notebook

HERE = os.path.dirname(os.path.abspath(__file__))
TEST_NOTEBOOKS = os.path.join(HERE, "export_notebooks")
GIVEN = os.path.join(HERE, "..", "notebooks")


def _path(name: str) -> str:
    for folder in (TEST_NOTEBOOKS, GIVEN):
        path = os.path.join(folder, f"{name}.ipynb")
        if os.path.exists(path):
            return path
    raise FileNotFoundError(name)


# ------------------------------------------------------------------------------------------ the notebook, in process
class _Anything:
    """Whatever a stubbed vastnb call returns (image chains, status objects): accepts everything."""

    def __call__(self, *args: Any, **kwargs: Any) -> "_Anything":
        return self

    def __getattr__(self, name: str) -> "_Anything":
        return self

    def __iter__(self):
        return iter(())


class _InProcessApp:
    """Stands in for ``vastnb.Deployment`` while a notebook runs in this process: remote functions stay
    plain coroutines, contexts are entered here. (To switch to vastnb's local backend later, build
    the namespace by running the notebook with backend="local" and await the RemoteFunction instead.)"""

    def __init__(self, run: "_NotebookRun", *args: Any, **kwargs: Any) -> None:
        self._contexts: dict[str, tuple[type, tuple, dict]] = {}
        self._entered: dict[str, Any] = {}
        run.app = self

    def remote(self, f: Any = None, **options: Any) -> Any:
        return f if f is not None else (lambda fn: fn)

    def context(self, *args: Any, **kwargs: Any) -> Callable[[type], type]:
        def decorator(cls: type) -> type:
            self._contexts[cls.__qualname__] = (cls, args, kwargs)
            return cls

        return decorator

    def get_context(self, cls: type) -> Any:
        return self._entered[cls.__qualname__]

    async def enter(self) -> None:
        for key, (cls, args, kwargs) in self._contexts.items():
            if key not in self._entered:
                self._entered[key] = await cls(*args, **kwargs).__aenter__()

    def __getattr__(self, name: str) -> Any:  # ensure_ready, image, configure_autoscaling, status, …
        return _Anything()


class _Shell:
    def __init__(self, run: "_NotebookRun") -> None:
        self.run = run

    def run_line_magic(self, name: str, line: str) -> None:
        if name == "vast_deployment":
            words = shlex.split(line)
            var = words[words.index("--var") + 1] if "--var" in words else "app"
            self.run.ns[var] = _InProcessApp(self.run)

    def system(self, *args: Any) -> None:
        return None


class _NotebookRun:
    """A notebook executed cell by cell in a fresh module, the way a user runs it before deploying.

    Cells tagged vast-skip and cells of other magics (``%%vast_run``) are not run; statements that
    await at the top level (calls of remote functions) are skipped, and exploration that fails here
    (``square.map``, a missing plotting library) is ignored, as it would not change the definitions.
    """

    def __init__(self, path: str) -> None:
        from IPython.core.inputtransformer2 import TransformerManager

        self.module_name = f"vastnb_reference_{os.path.splitext(os.path.basename(path))[0]}"
        self.module = types.ModuleType(self.module_name)
        sys.modules[self.module_name] = self.module
        self.ns = self.module.__dict__
        self.app: _InProcessApp | None = None
        self.worker_namespace: dict[str, Any] = {}
        fake = types.ModuleType("vastnb")
        fake.Deployment = lambda *a, **k: _InProcessApp(self, *a, **k)  # type: ignore[attr-defined]
        import vastnb.query

        fake.query = vastnb.query  # type: ignore[attr-defined]
        fake.worker_namespace = lambda: self.worker_namespace  # type: ignore[attr-defined]
        real_import = builtins.__import__

        def _import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
            if name == "vastnb" or (name.startswith("vastnb.") and not fromlist):
                return fake
            return real_import(name, globals, locals, fromlist, level)

        self.ns["__builtins__"] = {**builtins.__dict__, "__import__": _import}
        self.ns["get_ipython"] = lambda: _Shell(self)
        transform = TransformerManager().transform_cell
        for number, cell in enumerate(read_notebook(path), 1):
            if "vast-skip" in cell.tags:
                continue
            lines = cell.source.split("\n")
            if lines[0].startswith("%%"):
                magic, _, argline = lines[0][2:].partition(" ")
                body = "\n".join(lines[1:])
                if magic == "vast_context":
                    self._run(transform(body), number)
                    name = [n for n in ast.parse(body).body if isinstance(n, ast.ClassDef)][-1].name
                    args, kwargs = eval(f"(lambda *a, **k: (a, k))({argline})", self.ns)
                    assert self.app is not None
                    self.app.context(*args, **kwargs)(self.ns[name])
                elif magic == "vast_remote":
                    self._run(transform(body), number)
                continue
            self._run(transform(cell.source), number)

    def _run(self, source: str, number: int) -> None:
        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        tree = compile(source, f"<cell {number}>", "exec", flags=ast.PyCF_ONLY_AST | flags, dont_inherit=True)
        for stmt in tree.body:
            code = compile(ast.Module([stmt], []), f"<cell {number}>", "exec", flags=flags, dont_inherit=True)
            if code.co_flags & inspect.CO_COROUTINE:
                continue  # `await square(5)`: a call, not a definition
            try:
                exec(code, self.ns)
            except Exception:  # noqa: BLE001 - exploration that fails outside a kernel
                pass

    async def call(self, fname: str, kwargs: dict[str, Any]) -> Any:
        assert self.app is not None
        await self.app.enter()
        return await self.ns[fname](**kwargs)


_RUNS: dict[str, _NotebookRun] = {}


def _run_of(path: str) -> _NotebookRun:
    if path not in _RUNS:
        _RUNS[path] = _NotebookRun(path)
    return _RUNS[path]


def _reference_result(path: str, fname: str, kwargs: dict[str, Any]) -> tuple[str, Any]:
    """("ok", value) or ("err", exception) of the notebook's own ``fname(**kwargs)``, run in this process."""
    run = _run_of(path)
    try:
        return "ok", asyncio.run(run.call(fname, kwargs))
    except Exception as exc:  # noqa: BLE001 - the notebook's exception is the expected outcome
        return "err", exc


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
    served = Served(name)
    with served.worker:
        assert "Benchmark complete" in served.worker.log
        assert served.worker.perf_score is not None and served.worker.perf_score > 0
        yield served


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


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(GIVEN, "*.ipynb"))) + [
    os.path.join(TEST_NOTEBOOKS, "wire.ipynb")], ids=os.path.basename)
def test_every_export_imports_in_client_mode(path):
    result = export_notebook(path)
    sent = client_mode_config(result.module_source)
    assert sent["config"]["name"] == result.name == sent["tarball_config"]["name"]


# ------------------------------------------------------------------------------------------ warnings come true
@pytest.mark.parametrize("name, warned, logged", [
    ("contexts_and_hot_reload", "context Counter uses vastnb.worker_namespace",
     "Lifecycle startup failed: name 'vastnb' is not defined"),
    ("shared_runtime", "no remote function declares a benchmark (lookup)",
     "Missing EndpointHandler with BenchmarkConfig"),
    ("wire", "f(flag): benchmark_dataset[0] value True is a bool",
     "TypeError: Object of type <class 'bool'> is not JSON serializable!"),
])
def test_what_the_export_warns_about_breaks_the_official_worker(name, warned, logged):
    """The notebooks that use vastnb-only features export with a warning, and the warning is real.
    (torch_inference fails like contexts_and_hot_reload; left out because importing torch is slow.)"""
    from vastnb._official_worker import OfficialWorkerError

    result = export_notebook(_path(name))
    assert any(str(w).startswith(warned) for w in result.warnings)
    assert result.name is not None
    with pytest.raises(OfficialWorkerError) as exc:
        OfficialWorker(result.module_source, result.name, startup_timeout=60).start()
    assert logged in str(exc.value)
