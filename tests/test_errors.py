"""The exact words of errors a user can hit at call time."""

from __future__ import annotations

import asyncio

import pytest

import vastnb
from vastnb.errors import CallTimeout, ConfigurationError, ContextNotFound, DeploymentShutDown


def test_call_timeout(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=1)

    @app.remote(timeout=0.5)
    async def sleepy():
        await asyncio.sleep(10)

    app.ensure_ready(progress=False)  # the timeout runs from the call; a cold start must not eat it
    with pytest.raises(CallTimeout) as info:
        sleepy.call()
    assert str(info.value) == ("sleepy() did not finish within its timeout of 0.5 s (it was on worker w1). "
                               "Raise timeout in @app.remote(timeout=...) for long calls.")

    @app.remote()
    async def quick():
        return "still fine"

    assert quick.call() == "still fine"  # the timed-out call was cancelled on the worker


def test_calls_after_shutdown(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=1)

    @app.remote()
    async def f():
        return 1

    assert f.call() == 1
    app.shutdown()
    with pytest.raises(DeploymentShutDown) as info:
        f.call()
    assert str(info.value) == f"deployment {app.name!r} is shut down; create a new vastnb.Deployment to call f() again."
    with pytest.raises(DeploymentShutDown) as info2:
        app.ensure_ready()
    assert str(info2.value) == (f"deployment {app.name!r} is shut down; create a new vastnb.Deployment "
                                "to start workers again.")


def test_context_looked_up_dynamically_but_never_registered(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=1)

    class Missing:
        pass

    @app.remote()
    async def lookup(cls):
        return app.get_context(cls)

    with pytest.raises(ContextNotFound) as info:
        lookup.call(Missing)
    assert str(info.value) == (
        "get_context(Missing) found no context named 'Missing' on worker w1. "
        "Registered contexts: none. Decorate the class with @app.context() (or define it in a %%vast_context cell) "
        "before the deployment starts."
    )


def test_worker_namespace_outside_a_worker():
    with pytest.raises(RuntimeError) as info:
        vastnb.worker_namespace()
    assert str(info.value) == "worker_namespace() is only available inside remote code or %%vast_run cells on a worker."


def test_simulate_needs_a_perf_score():
    app = vastnb.Deployment("sim-errors")
    with pytest.raises(ConfigurationError) as info:
        app.simulate([10, 10, 10])
    assert str(info.value) == ("simulate() needs a perf score: no worker of this deployment has benchmarked yet. "
                               "Run app.ensure_ready() first, or pass perf_score=<workload units per second>.")
    result = app.simulate([10] * 30, perf_score=2000, cold_start_s=1)
    assert result.peak_workers >= 1
