"""OfficialWorker: the official vastai worker runtime on loopback, started and stopped cleanly."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from tests.official_worker import OfficialWorker, OfficialWorkerError
from vastnb.errors import SerializationError

MODULE = '''
from vastai import Deployment

app = Deployment(name="ow")


class Pair:
    def __init__(self, a, b):
        self.a, self.b = a, b


@app.context("k", value=7)
class Ctx:
    def __init__(self, key, value=0):
        self.key, self.value = key, value

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        pass


@app.remote(benchmark_dataset=[{"x": 2}], benchmark_runs=3)
async def square(x):
    return x * x + app.get_context(Ctx).value - 7


@app.remote()
async def swap(p):
    return Pair(p.b, p.a)


@app.remote()
async def fail(message):
    raise ValueError(message)


app.ensure_ready()
'''


class Pair:  # the client's copy of the deployment's class (same name, travels relative to the root module)
    def __init__(self, a, b):
        self.a, self.b = a, b


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def worker():
    with OfficialWorker(MODULE, "ow", client_module=__name__) as w:
        yield w


def test_calls_over_http_in_the_official_format(worker):
    assert worker.state == "ready"
    assert worker.url == f"http://127.0.0.1:{worker.port}"
    assert worker.call("square", x=7) == 49
    assert asyncio.run(worker.acall("square", x=3)) == 9
    swapped = worker.call("swap", p=Pair(1, "b"))
    assert type(swapped) is Pair and vars(swapped) == {"a": "b", "b": 1}


def test_classes_of_a_notebook_namespace(worker, monkeypatch):
    """Code run as __main__ (a notebook) passes its namespace to rebuild results."""
    MainPair = type("Pair", (), {"__init__": Pair.__init__, "__module__": "__main__"})
    monkeypatch.setattr(worker, "client_module", "__main__")
    monkeypatch.setattr(worker, "client_globals", {"Pair": MainPair})
    swapped = worker.call("swap", p=MainPair(3, 4))
    assert type(swapped) is MainPair and vars(swapped) == {"a": 4, "b": 3}


def test_a_class_the_worker_cannot_import_is_a_500(worker):
    Foreign = type("Foreign", (), {"__module__": "no_such_module"})
    with pytest.raises(OfficialWorkerError) as exc:
        worker.call("swap", p=Foreign())
    assert str(exc.value) == ("/remote/swap answered HTTP 500 (the worker could not run the call or serialize its "
                              "result; see .log)")


def test_payload_is_the_sdk_format(worker):    assert worker.payload("square", {"x": [1, b"\x00"]})["payload"] == {
        "kwargs": {"x": {"type": "list", "contents": [1, {"type": "bytes", "contents": "AA=="}]}}}


def test_benchmark_score_and_log(worker):
    assert worker.perf_score is not None and worker.perf_score > 0
    assert worker.average_perf is not None and 0 < worker.average_perf <= worker.perf_score
    assert f"measured perf is {worker.perf_score!r}" in worker.log
    assert "Loaded config for deployment: ow" in worker.log


def test_exceptions_arrive_without_their_message(worker):
    with pytest.raises(ValueError) as exc:
        worker.call("fail", message="boom")
    assert exc.value.args == ()  # the official format keeps only __dict__


def test_errors_are_clear(worker):
    with pytest.raises(OfficialWorkerError) as exc:
        worker.call("nope")
    assert str(exc.value).startswith("/remote/nope answered HTTP 404 (the deployment has no remote function 'nope')")
    with pytest.raises(SerializationError) as ser:
        worker.call("square", x=True)
    assert str(ser.value) == ("square(x): Object of type <class 'bool'> is not JSON serializable! "
                              "(the official JSON wire)")


def test_binds_loopback_only(worker):
    """UNSECURED=true turns the signature check off, so the worker must not listen on other interfaces."""
    addresses = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    addresses.discard("127.0.0.1")
    for address in addresses:
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex((address, worker.port)) != 0, f"worker reachable on {address}"


def test_stop_leaves_no_process_and_no_files():
    w = OfficialWorker(MODULE, "ow").start()
    pid, workdir = w.process.pid, w.workdir
    assert _alive(pid) and os.path.isdir(workdir)
    w.stop()
    assert not _alive(pid)
    assert not os.path.exists(workdir)
    assert "Benchmark complete" in w.log  # kept after stop
    with pytest.raises(OfficialWorkerError) as exc:
        w.call("square", x=1)
    assert str(exc.value) == ("the official worker for 'ow' is stopped, not ready; start() it first (or use it in "
                              "a with block).")
    with pytest.raises(OfficialWorkerError):
        w.start()
    w.stop()  # idempotent


def test_a_module_that_fails_to_import_reports_its_log():
    with pytest.raises(OfficialWorkerError) as exc:
        OfficialWorker('raise RuntimeError("broken module")\n', "x").start()
    message = str(exc.value)
    assert message.startswith("the official worker for deployment 'x' did not become ready: it exited with status 1 "
                              "before its benchmark completed.\n--- last lines of its log ---\n")
    assert "RuntimeError: broken module" in message


def test_two_benchmarks_stop_the_official_worker():
    """Why the export keeps a single benchmark: serve mode refuses more than one."""
    source = MODULE.replace("@app.remote()\nasync def swap", "@app.remote(benchmark_dataset=[{'p': 1}])\nasync def swap")
    with pytest.raises(OfficialWorkerError) as exc:
        OfficialWorker(source, "ow").start()
    assert "Cannot define BenchmarkConfig for more than one EndpointHandler!" in str(exc.value)


def test_a_failing_context_fails_fast():
    source = MODULE.replace("        return self\n", "        raise OSError('no weights')\n", 1)
    with pytest.raises(OfficialWorkerError) as exc:
        OfficialWorker(source, "ow").start()
    assert "it logged: " in str(exc.value) and "Lifecycle startup failed: no weights" in str(exc.value)


def test_startup_timeout():
    source = MODULE.replace("    async def __aenter__(self):\n", "    async def __aenter__(self):\n"
                            "        import asyncio; await asyncio.sleep(30)\n", 1)
    w = OfficialWorker(source, "ow", startup_timeout=1.0)
    with pytest.raises(OfficialWorkerError) as exc:
        w.start()
    assert "no 'Benchmark complete' in its log within 1 s" in str(exc.value)
    assert not _alive(w.process.pid)


def test_module_from_a_path_and_a_missing_path(tmp_path):
    path = tmp_path / "deploy.py"
    path.write_text(MODULE)
    assert OfficialWorker(str(path), "ow").source == MODULE
    with pytest.raises(OfficialWorkerError) as exc:
        OfficialWorker(str(tmp_path / "missing.py"), "ow")
    assert str(exc.value) == f"no such deployment module: {tmp_path / 'missing.py'}"
