"""When no worker can start, calls fail fast with the start error; respawns back off and stop until the code changes."""

from __future__ import annotations

import pytest

from vastnb.errors import WorkerStartError
from vastnb.events import EventKind, WorkerState

from .conftest import wait_for

START_ATTEMPTS = 6  # vastnb.backends.local: starts in a row after which no worker is started until the code changes


def test_failing_context_fails_a_pending_call_with_its_own_error_and_respawns_are_bounded(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)
    lines: list[str] = []
    samples: list[float] = []

    def on_event(event):
        if event.kind == EventKind.LOG and event.data.get("line", "").startswith("[runtime] "):
            lines.append(event.data["line"])
        elif event.kind == EventKind.AUTOSCALER:
            samples.append(event.time)

    app.events.subscribe(on_event)

    @app.context()
    class Model:
        async def __aenter__(self):
            raise RuntimeError("weights file missing")

        async def __aexit__(self, *exc):
            pass

    @app.remote(timeout=120)  # were the call left waiting, it would end as a CallTimeout, not as below
    async def predict(x):
        return x + 1

    with pytest.raises(WorkerStartError) as info:
        predict.call(1)
    text = str(info.value)
    assert text.startswith(f"predict() cannot run: no worker of deployment {app.name!r} could start (3 attempts; fix "
                           "the error and run its cell again: changed code starts workers again). The last one failed "
                           "with:\nloading failed:\nTraceback on worker w3 (most recent call last):\n")
    assert 'raise RuntimeError("weights file missing")' in text
    assert text.endswith("\nRuntimeError: weights file missing")
    assert isinstance(info.value.__cause__, RuntimeError) and str(info.value.__cause__) == "weights file missing"

    with pytest.raises(WorkerStartError, match=r"^predict\(\) cannot run: no worker"):
        predict.call(2)  # while starts fail, a new call fails at once too

    def given_up():
        snap = app.snapshot()
        return snap.start_failures == START_ATTEMPTS and not any(w.state.alive for w in snap.workers)

    assert wait_for(given_up, timeout=120)
    seen = len(samples)
    assert wait_for(lambda: len(samples) >= seen + 3)  # three more control-loop samples: no new start
    snap = app.snapshot()
    assert snap.state == "failing"
    assert [w.id for w in snap.workers] == [f"w{i}" for i in range(1, START_ATTEMPTS + 1)]
    phase = f"context {Model.__qualname__}"  # a notebook cell's class is plain "Model"
    assert {w.failed_phase for w in snap.workers} == {phase}
    assert snap.start_error == f"{phase} failed: RuntimeError: weights file missing"
    assert lines[0] == f"[runtime] start failed (1 in a row: {phase} failed: RuntimeError: weights file missing); " \
                       "next start in 0.5 s"
    assert lines[-1] == (f"[runtime] {START_ATTEMPTS} workers in a row failed to start; no more starts until the code "
                         f"changes (last: {phase} failed: RuntimeError: weights file missing)")
    assert [line.split("next start in ")[1] for line in lines[:-1]] == ["0.5 s", "1 s", "2 s", "4 s", "8 s"]

    @app.context()
    class Model:  # noqa: F811 - the fixed cell
        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc):
            pass

    assert predict.call(1) == 2  # changed code: workers start again
    snap = app.snapshot()
    assert snap.state == "running" and snap.start_failures == 0 and snap.start_error is None
    assert [w.state for w in snap.workers if w.state.alive] == [WorkerState.READY]


def test_failing_benchmark_is_reported_as_the_benchmark_phase(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote(benchmark_dataset=[{"x": 0}], timeout=120)
    async def divide(x):
        return 1 / x

    with pytest.raises(WorkerStartError) as info:
        divide.call(1)
    assert str(info.value).endswith("ZeroDivisionError: division by zero")
    snap = app.snapshot()
    assert snap.start_error == "benchmark failed: ZeroDivisionError: division by zero"
    assert {w.failed_phase for w in snap.workers if w.state == WorkerState.ERROR} == {"benchmark"}
