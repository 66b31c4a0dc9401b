"""vastnb as a drop-in for the official SDK: Vast's documented files run unchanged but for one import line.

The deployment and client files below are Vast's documentation's own examples
(docs.vast.ai, "Deployments": overview, configuration, @remote functions), copied
as they are; the only edit is ``from vastai import Deployment`` ->
``from vastnb import Deployment`` (their ``vastai.data.query`` imports stay). Each
runs as the docs run it, ``python client.py`` next to ``deploy.py``, in a fresh
process on vastnb's local backend (real worker processes). The SDK surface the
official example clients use (``app.client``, ``app.async_client``,
``webserver_url=``) and the benchmark's call count and input order are checked
against the official worker runtime itself.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import vastnb
from vastnb import ConfigurationError

ROOT = Path(__file__).resolve().parent.parent
DROP_IN = ("from vastai import Deployment", "from vastnb import Deployment")

# docs.vast.ai, Deployments overview, "Minimal Example" (deploy.py and client.py), as published.
DOCS_DEPLOY = '''\
# deploy.py
from vastai import Deployment
from vastai.data.query import gpu_name, RTX_4090, RTX_5090

app = Deployment(name="square")

@app.remote(benchmark_dataset=[{"x": 2}])
async def square(x):
    return x * x

image = app.image("vastai/base-image:@vastai-automatic-tag", 16)
image.require(gpu_name.in_([RTX_4090, RTX_5090]))

app.configure_autoscaling(min_load=1000)
app.ensure_ready()
'''

DOCS_CLIENT = '''\
# client.py
import asyncio
from deploy import app, square

async def main():
    result = await square(5)  # Executes on a remote GPU, returns 25
    print(result)

asyncio.run(main())
'''

# docs.vast.ai, "Configuring Deployments" and "@remote Functions": the Deployment object, the image, requirements,
# autoscaling and a benchmark dataset of three items, each block as published, in one deploy.py.
DOCS_CONFIGURED = '''\
from vastai import Deployment
from vastai.data.query import gpu_name, gpu_ram, cpu_cores, RTX_4090, RTX_5090, H100_SXM

app = Deployment(
    name="my-deployment",       # Deployment name (auto-detected from module if omitted)
    tag="default",              # Version tag for routing (changing triggers a Tier 4 redeploy)
    version_label=None,         # Optional semantic version label
    api_key=...,                # Vast API key (uses $VAST_API_KEY env var if omitted)
    ttl=None,                   # Auto-teardown after N seconds of no client connections (None = live forever)
)

image = app.image("vastai/base-image:@vastai-automatic-tag", 16)
image.pip_install("torch==2.0.0", "transformers")
image.apt_get("ffmpeg")
image.env(MODEL_NAME="my-model", DEBUG="true")
image.require(gpu_name.in_([RTX_4090, RTX_5090]))
image.venv("/venv/main")

# Require minimum specs
image.require(gpu_ram >= 48, cpu_cores >= 16)

app.configure_autoscaling(
    cold_workers=2,          # Idle workers to keep ready
    max_workers=10,          # Maximum concurrent workers
    min_load=100,            # Minimum load threshold to trigger scaling
    min_cold_load=50,        # Load threshold for cold workers
    target_util=0.8,         # Target utilization ratio (0-1)
    cold_mult=2,             # Cold worker multiplier
    max_queue_time=30.0,     # Maximum seconds a request can wait in queue
    target_queue_time=5.0,   # Target queue wait time in seconds
    inactivity_timeout=300,  # Seconds of inactivity before scaling down
)

@app.remote(benchmark_dataset=[{"x": 2}, {"x": 100}, {"x": -5}])
async def square(x):
    return x * x

app.ensure_ready()
'''


def _drop_in(source: str) -> str:
    assert source.count(DROP_IN[0]) == 1
    return source.replace(*DROP_IN)


def _run(folder: Path, script: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``python <script>`` in ``folder``, as the docs run a client, with this checkout's vastnb importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("JPY_SESSION_NAME", None)
    return subprocess.run([sys.executable, script], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _check(run: subprocess.CompletedProcess[str], stdout: str) -> None:
    """The run printed ``stdout`` and nothing else. The docs' files require an RTX 4090/5090: a machine without
    GPUs runs the workers on the CPU (a notice on stderr); one whose GPUs all fail the requirement refuses it
    with vastnb's NoMatchingGpu before any worker starts (tests/test_gpus.py has that message)."""
    from vastnb.gpus import local_gpus

    if run.returncode != 0 and local_gpus():
        assert "vastnb.errors.NoMatchingGpu: image.require(" in run.stderr, run.stderr
        assert "matches none of this machine's GPUs" in run.stderr and run.stdout == ""
        return
    assert run.returncode == 0, run.stderr
    assert run.stdout == stdout  # notices (no GPU here, progress) go to stderr, never into the program's output
    assert "Traceback" not in run.stderr


def _write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_the_docs_minimal_example_runs_unchanged(tmp_path: Path) -> None:
    _write(tmp_path, {"deploy.py": _drop_in(DOCS_DEPLOY), "client.py": DOCS_CLIENT})
    run = _run(tmp_path, "client.py")
    _check(run, "25\n")
    assert "has no benchmark" not in run.stderr


def test_the_docs_configuration_runs_unchanged(tmp_path: Path) -> None:
    client = textwrap.dedent('''\
        import asyncio
        from deploy import app, square

        async def main():
            print(app.name, [await square(x) for x in (3, -4)])
            print(app.current_image.requirement.unparse_query())
            await app.client.close()

        asyncio.run(main())
        ''')
    _write(tmp_path, {"deploy.py": _drop_in(DOCS_CONFIGURED), "client.py": client})
    _check(_run(tmp_path, "client.py"), (
        "my-deployment [9, 16]\n"
        # gpu_ram >= 48 is 48 GB, as the docs say (the official Column would send gpu_ram>=0.048)
        "verified=true rentable=true rented=false gpu_name in RTX_4090,RTX_5090 gpu_ram>=48 cpu_cores>=16\n"
    ))


# The official SDK's own example client (vast-sdk examples/deployments) ends with `await app.client.close()`
# (another with `await app.async_client.close()`), and its deploy.py names no deployment and passes webserver_url.
SDK_STYLE_DEPLOY = '''\
from vastai import Deployment
from vastai.data.query import gpu_name, RTX_4090, RTX_5090

app = Deployment(webserver_url="https://alpha-server.vast.ai")


@app.remote(benchmark_dataset=[{"x": 2}])
async def square(x):
    return x * x


app.configure_autoscaling(min_load=1000)
image = app.image("vastai/base-image:@vastai-automatic-tag", 16)
image.require(gpu_name.in_([RTX_4090, RTX_5090]))
app.ensure_ready()
'''

SDK_STYLE_CLIENT = '''\
import asyncio
from deploy import app, square


async def main():
    for x in range(1, 4):
        print(f"square({x}) = {await square(x)}")
    print(app.name)
    await app.{closing}.close()


if __name__ == "__main__":
    asyncio.run(main())
'''


def test_sdk_example_clients_close_and_two_clients_name_one_deployment(tmp_path: Path) -> None:
    """The SDK names a deployment after the module that declares it: `deploy`, whichever client runs."""
    _write(tmp_path, {
        "deploy.py": _drop_in(SDK_STYLE_DEPLOY),
        "client.py": SDK_STYLE_CLIENT.replace("{closing}", "client"),
        "train_client.py": SDK_STYLE_CLIENT.replace("{closing}", "async_client"),
    })
    for script in ("client.py", "train_client.py"):
        _check(_run(tmp_path, script), "square(1) = 1\nsquare(2) = 4\nsquare(3) = 9\ndeploy\n")


def test_a_running_script_or_a_notebook_names_the_deployment_after_itself(tmp_path: Path) -> None:
    _write(tmp_path, {"job.py": "from vastnb import Deployment\nprint(Deployment().name)\n"})
    run = _run(tmp_path, "job.py")
    assert (run.returncode, run.stdout) == (0, "job\n"), run.stderr

    from IPython.testing.globalipapp import get_ipython

    ip = get_ipython()
    ip.run_cell("import vastnb\n_nameless = vastnb.Deployment()", store_history=False)
    assert ip.user_ns["_nameless"].name == "notebook"  # the kernel was not told a notebook file
    os.environ["JPY_SESSION_NAME"] = "/home/me/analysis.ipynb"
    try:
        ip.run_cell("_nameless = vastnb.Deployment()", store_history=False)
        assert ip.user_ns["_nameless"].name == "analysis"
        ip.user_ns["__session__"] = "/home/me/report.ipynb"  # what ipykernel sets in a notebook's namespace
        ip.run_cell("_nameless = vastnb.Deployment()", store_history=False)
        assert ip.user_ns["_nameless"].name == "report"
    finally:
        del os.environ["JPY_SESSION_NAME"]
        ip.user_ns.pop("__session__", None)
        ip.user_ns.pop("_nameless", None)
    here = vastnb.Deployment()  # a module of a package: its dotted name, as the SDK's root_module
    assert here.name == __name__ == "tests.test_sdk_dropin"


def test_client_handles_close_like_the_sdks() -> None:
    app = vastnb.Deployment("handles", webserver_url="https://alpha-server.vast.ai", autoscaler_url="https://run.vast.ai")
    assert app.client is app.client and app.async_client is not app.client
    assert repr(app.client) == ("<vastnb app.client of deployment 'handles' (local backend, open): the official SDK's "
                                "handle; its connections are the backend's>")

    async def use() -> None:
        async with app.async_client:
            pass
        await app.client.close()
        await app.client.close()  # twice is fine, as closing an aiohttp session twice

    asyncio.run(use())
    assert app.client.closed and app.async_client.closed and app.state == "declared"


# ---------------------------------------------------------------------------------------------------- benchmarks
ORDER_CELLS = [
    "import vastnb",
    'app = vastnb.Deployment("order")\napp.configure_autoscaling(cold_workers=1, max_workers=1)',
    "@app.context()\nclass Log:\n    async def __aenter__(self):\n        self.seen = []\n        return self\n\n"
    "    async def __aexit__(self, *exc):\n        pass",
    '@app.remote(benchmark_dataset=[{"i": 0}, {"i": 1}, {"i": 2}], allow_parallel_requests=True)\n'
    "async def step(i):\n    app.get_context(Log).seen.append(i)\n    return i",
    "@app.remote()\nasync def history():\n    return app.get_context(Log).seen",
]
# 1 warm-up call, then benchmark_runs (10) runs of 10 concurrent calls, the dataset cycled in order from item 0
EXPECTED_ORDER = [k % 3 for k in range(1 + 10 * 10)]


def test_parallel_benchmark_calls_and_order_match_the_official_worker(tmp_path: Path) -> None:
    from tests.official_worker import OfficialWorker
    from vastnb.export import export_cells

    module = tmp_path / "order_deploy.py"
    module.write_text("\n\n".join(ORDER_CELLS) + "\n")
    import importlib.util

    spec = importlib.util.spec_from_file_location("order_deploy", module)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    try:
        mod.app.ensure_ready(progress=False)
        assert mod.history.call() == EXPECTED_ORDER
    finally:
        mod.app.shutdown()

    exported = export_cells(ORDER_CELLS)
    assert "benchmark_generator=_in_order([{\"i\": 0}, {\"i\": 1}, {\"i\": 2}])" in exported.module_source
    with OfficialWorker(exported.module_source, "order", startup_timeout=60) as worker:
        assert "Run: 10, concurrent_requests: 10" in worker.log
        assert worker.call("history") == EXPECTED_ORDER


# ---------------------------------------------------------------------------------------------------- no benchmark
def test_no_benchmark_is_a_one_line_notice_locally(capsys: pytest.CaptureFixture[str]) -> None:
    app = vastnb.Deployment("nobench-local")
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote()
    async def f(x):
        return x + 1

    try:
        capsys.readouterr()
        assert f.call(1) == 2 and f.call(2) == 3
        err = capsys.readouterr().err.splitlines()
        assert err.count(
            "vastnb: deployment 'nobench-local' has no benchmark: fine on this machine, but Vast will require one "
            "(give one remote function benchmark_dataset=[{...}] or benchmark_generator=...).") == 1
    finally:
        app.shutdown()


def test_backend_vast_refuses_no_benchmark_before_anything_is_sent() -> None:
    from tests.vast_standin import VastStandIn
    from vastnb.backends.vast import VastBackend

    with VastStandIn() as standin:
        app = vastnb.Deployment("nobench", backend=VastBackend(
            api_key=standin.api_key, webserver_url=standin.url, autoscaler_url=standin.url))
        app.image("vastai/base-image:@vastai-automatic-tag", 16)

        @app.remote()
        async def f(x):
            return x

        @app.remote()
        async def g():
            return 1

        for attempt in (app.ensure_ready, lambda: f.call(1)):
            with pytest.raises(ConfigurationError) as info:
                attempt()
            assert str(info.value) == (
                "deployment 'nobench' has no benchmark (remote functions: f, g); Vast sizes a deployment by the perf "
                "score its benchmark measures, and the official SDK requires one (its worker refuses to start without "
                "it); nothing was sent to Vast. Give one remote function a benchmark: "
                "@app.remote(benchmark_dataset=[{...}]) (or benchmark_generator=...), or in a notebook %%vast_remote "
                "--benchmark-dataset '[{...}]'.")
        assert app.state == "declared" and standin.requests == []
        app.shutdown()


def test_dropping_the_benchmark_of_a_running_deployment_is_refused_where_one_is_required() -> None:
    """The check runs on every update too: the workers keep the code they run, and nothing is sent."""
    from vastnb.backends.local import LocalBackend

    backend = LocalBackend()
    backend.requires_benchmark = True  # a real local backend, declaring Vast's requirement
    app = vastnb.Deployment("keeps-its-benchmark", backend=backend)
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote(benchmark_dataset=[{"x": 1}])
    async def f(x):
        return ("v1", x)

    try:
        assert f.call(2) == ("v1", 2)
        code_version = app.snapshot().code_version

        @app.remote()  # type: ignore[no-redef]  # the cell edited: its benchmark is gone
        async def f(x):
            return ("v2", x)

        for _ in range(2):
            with pytest.raises(ConfigurationError) as info:
                f.call(3)
            assert str(info.value).startswith("deployment 'keeps-its-benchmark' has no benchmark (remote functions: f)")
        assert app.snapshot().code_version == code_version

        @app.remote(benchmark_dataset=[{"x": 1}])  # type: ignore[no-redef]
        async def f(x):
            return ("v3", x)

        assert f.call(4) == ("v3", 4)
    finally:
        app.shutdown()
