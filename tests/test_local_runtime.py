"""The local backend end to end, with real worker processes on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

import vastnb
from vastnb.errors import ConfigurationError, SerializationError

from .conftest import pid_alive, wait_for, worker_port


class Point:
    """A notebook-style class used as argument and result."""

    def __init__(self, x: float, y: float) -> None:
        self.x, self.y = x, y

    def norm2(self) -> float:
        return self.x * self.x + self.y * self.y


def test_issue_example_square_with_context(make_app):
    from vastnb.query import gpu_ram

    app = make_app("demo")
    image = app.image("vastai/pytorch:@vastai-automatic-tag", storage=16)
    image.pip_install("numpy").env(MODE="dev").require(gpu_ram >= 16)
    app.configure_autoscaling(cold_workers=2, max_workers=4)

    @app.context()
    class Counter:
        async def __aenter__(self):
            self.n = 0
            return self

        async def __aexit__(self, *exc):
            pass

    @app.remote(benchmark_dataset=[{"x": 2}, {"x": 100}])
    async def square(x):
        app.get_context(Counter).n += 1
        return x * x

    @app.remote()
    async def env_mode():
        return os.environ.get("MODE"), os.getpid()

    app.ensure_ready()
    assert asyncio.run(square(5)) == 25
    assert square.call(7) == 49
    snap = app.snapshot()
    ready = [w for w in snap.workers if w.state.serving]
    assert len(ready) == 2
    assert all(w.perf_score and w.perf_score > 0 for w in ready)
    assert all(len(w.benchmark_runs) == 10 for w in ready)
    assert all(dict(w.phases).get("benchmark", 0) > 0 for w in ready)
    mode, pid = env_mode.call()
    assert mode == "dev" and pid != os.getpid() and pid in {w.pid for w in ready}


def test_map_spreads_over_four_workers_in_order(make_app):
    from vastnb.backends.local import LocalBackend

    app = make_app(backend=LocalBackend(max_cold_workers=4))  # four processes, even on a 2-core machine
    app.configure_autoscaling(cold_workers=4, max_workers=4)

    @app.remote(benchmark_dataset=[{"x": 1}])
    async def whoami(x):
        await asyncio.sleep(0.01)
        return x, os.getpid()

    app.ensure_ready()
    results = whoami.map(list(range(200)), progress=False)
    assert [r[0] for r in results] == list(range(200))
    assert len({r[1] for r in results}) == 4


def test_ensure_ready_progress_ends_before_it_returns_and_counts_workers_already_ready(make_app, capsys):
    app = make_app("bars")
    app.configure_autoscaling(cold_workers=2, max_workers=2)

    @app.remote()
    async def f():
        return 1

    capsys.readouterr()
    app.ensure_ready()
    lines = capsys.readouterr().err.splitlines()  # all that was written by the time ensure_ready returned
    assert lines[-1].startswith("bars: workers ready: 2/2 workers · done in "), lines
    app.ensure_ready()  # nothing to wait for: one line, counting the two ready workers
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bars: workers ready: 2/2 workers · done in "), lines


def test_map_failure_raises_and_cancels_the_rest_or_returns_in_place(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote(benchmark_dataset=[{"x": 1}])
    async def fragile(x):
        ns = vastnb.worker_namespace()
        ns["ran"] = ns.get("ran", 0) + 1
        await asyncio.sleep(0.02)
        if x == 3:
            raise ValueError(f"bad input {x}")
        return x

    @app.remote()
    async def ran():
        return vastnb.worker_namespace().get("ran", 0)

    app.ensure_ready()
    with pytest.raises(ValueError, match=r"^bad input 3\n\(raised on worker w1 running fragile\(\)\)$"):
        fragile.map(list(range(100)), progress=False)
    assert wait_for(lambda: all(w.queue == 0 for w in app.snapshot().workers))  # the cancellations reached the worker
    before = ran.call()
    assert 4 <= before < 100  # the calls after the failure were cancelled, not run
    out = fragile.map([2, 3, 4], return_exceptions=True, progress=False)
    assert out[0] == 2 and out[2] == 4
    assert isinstance(out[1], ValueError) and str(out[1]) == "bad input 3"
    assert out[1].__notes__ == ["(raised on worker w1 running fragile())"]
    assert ran.call() == before + 3


def test_notebook_class_round_trip_and_closure(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=1)
    scale = 3

    @app.remote()
    async def scaled(p):
        return Point(p.x * scale, p.y * scale)

    out = scaled.call(Point(1, 2))
    assert isinstance(out, Point)
    assert (out.x, out.y, out.norm2()) == (3, 6, 45)


def test_remote_print_and_traceback(make_app, capsys):
    app = make_app()
    app.configure_autoscaling(cold_workers=1)

    @app.remote()
    async def shout(x):
        print("on worker", x)
        print("warning!", file=sys.stderr)
        return x

    @app.remote()
    async def fail(x):
        raise ValueError(f"bad value {x}")

    app.ensure_ready(progress=False)
    capsys.readouterr()  # start-up notices (e.g. no GPU here) are not the call's output
    assert shout.call(3) == 3
    captured = capsys.readouterr()
    assert captured.out == "on worker 3\n"
    assert captured.err == "warning!\n"
    with pytest.raises(ValueError, match="bad value 4") as info:
        fail.call(4)
    remote = info.value.__cause__
    text = str(remote)
    assert "Traceback on worker w1 running fail()" in text
    assert 'raise ValueError(f"bad value {x}")' in text
    assert "vastnb/worker" not in text  # internal frames are dropped
    assert remote.frames[-1][0] == __file__


def test_redefinition_swaps_code_without_reentering_contexts(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=2)

    @app.context()
    class Entries:
        entered = 0

        async def __aenter__(self):
            type(self).entered += 1
            self.count = type(self).entered
            return self

        async def __aexit__(self, *exc):
            pass

    @app.remote(benchmark_dataset=[{"x": 1}])
    async def f(x):
        return ("v1", app.get_context(Entries).count, os.getpid())

    app.ensure_ready()
    pids = {w.pid for w in app.snapshot().workers}
    for version in ("v2", "v3", "v4"):
        def make(v):
            @app.remote(benchmark_dataset=[{"x": 1}])
            async def f(x):
                return (v, app.get_context(Entries).count, os.getpid())
            return f
        f = make(version)
        app.sync()
        results = f.map(list(range(40)), progress=False)
        assert {r[0] for r in results} == {version}
        assert {r[1] for r in results} == {1}
    assert {w.pid for w in app.snapshot().workers if w.state.alive} == pids


def test_large_buffers_travel(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=1)

    @app.remote()
    async def echo(value):
        return value

    blob = os.urandom(3 << 20)
    assert echo.call(blob) == blob
    arr = np.arange(1_000_000, dtype=np.float32).reshape(1000, 1000)
    out = echo.call(arr)
    assert out.dtype == np.float32 and np.array_equal(out, arr) and out.flags.writeable
    t = torch.randn(512, 512).to(torch.bfloat16)
    out = echo.call(t)
    assert out.dtype == torch.bfloat16 and torch.equal(out, t)
    small = torch.tensor(3.5, requires_grad=True)
    out = echo.call(small)
    assert out.item() == 3.5 and out.requires_grad


def test_unserializable_argument_names_parameter(make_app):
    import threading

    app = make_app()
    app.configure_autoscaling(cold_workers=1)

    @app.remote()
    async def takes(a, lock):
        return a

    with pytest.raises(SerializationError) as info:
        takes.call(1, threading.Lock())
    assert str(info.value).startswith("cannot send argument `lock` of takes() to a worker: a _thread.lock cannot be serialized")
    with pytest.raises(TypeError) as info2:
        takes(1, 2, 3)
    assert str(info2.value) == "takes(a, lock): too many positional arguments"


def test_get_context_of_unregistered_class_is_refused_before_start(make_app):
    app = make_app()

    class NotRegistered:
        pass

    @app.remote()
    async def uses():
        return app.get_context(NotRegistered)

    with pytest.raises(ConfigurationError) as info:
        app.ensure_ready()
    assert str(info.value) == (
        "remote function `uses` calls get_context(NotRegistered), but NotRegistered is not a registered context "
        f"of deployment {app.name!r} (registered: none). Decorate the class with @app.context() (or define it in "
        "a %%vast_context cell)."
    )
    assert app.snapshot().workers == ()


def test_no_gpu_runs_on_cpu_with_notice(make_app, capsys):
    from vastnb.query import gpu_name, H100_SXM

    app = make_app()
    app.image("vastai/pytorch:@vastai-automatic-tag", 16).require(gpu_name == H100_SXM)
    app.configure_autoscaling(cold_workers=1)

    @app.remote()
    async def visible():
        return os.environ.get("CUDA_VISIBLE_DEVICES")

    from vastnb.gpus import local_gpus

    if local_gpus():  # a GPU machine: an H100 requirement either matches or is a clear error
        return
    assert visible.call() is None
    captured = capsys.readouterr()
    assert captured.err.count("vastnb: no NVIDIA GPU found") == 1  # once, on stderr, not mixed into results
    assert "no NVIDIA GPU" not in captured.out
    assert [w.gpu for w in app.snapshot().workers] == [None]


def test_unauthenticated_connection_refused_before_deserialization(make_app, tmp_path):
    import pickle
    import socket

    app = make_app()
    app.configure_autoscaling(cold_workers=1)

    @app.remote()
    async def ok():
        return "still serving"

    assert ok.call() == "still serving"
    port = worker_port(app, "w1")
    canary = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {canary}",))

    for hello in (b"VNB1" + b"\0" * 32, b"GET / HTTP/1.1\r\n\r\n", pickle.dumps(Evil())):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(hello + pickle.dumps(Evil()))
            s.settimeout(5)
            assert s.recv(10) == b""  # closed without an answer
    assert not canary.exists()
    assert ok.call() == "still serving"
    assert any("refused a connection" in line for line in app.logs()["w1"])
    listening = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout if os.path.exists("/usr/bin/ss") else ""
    for line in listening.splitlines():
        if f":{port} " in line:
            assert "127.0.0.1:" in line


def test_workers_die_with_their_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import vastnb, time, sys
        app = vastnb.Deployment("orphans")
        app.configure_autoscaling(cold_workers=2, max_workers=2)
        @app.remote()
        async def f():
            return 1
        app.ensure_ready(progress=False)
        print("PIDS", " ".join(str(w.pid) for w in app.snapshot().workers), flush=True)
        time.sleep(60)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    line = proc.stdout.readline()
    while line and not line.startswith("PIDS"):
        line = proc.stdout.readline()
    pids = [int(p) for p in line.split()[1:]]
    assert len(pids) == 2 and all(pid_alive(p) for p in pids)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    deadline = time.monotonic() + 10
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(p) for p in pids)


def test_shutdown_while_the_first_worker_is_being_made_leaks_nothing(make_app, monkeypatch):
    """Shutting down at once after the start (a failing first call does that) ends the worker being spawned."""
    import gc

    leaked: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: leaked.append(repr(u.exc_value)))
    for i in range(12):
        app = make_app(f"instant-{i}")

        @app.remote()
        async def f(x):
            return x

        app.spec()
        app._ensure_started()  # what the first call does before it fails to pickle its arguments
        app.shutdown()
        gc.collect()
        assert all(not pid_alive(w.pid) for w in app.snapshot().workers if w.pid)
    assert leaked == []
