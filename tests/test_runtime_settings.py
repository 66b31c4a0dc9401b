"""Degenerate settings are refused where they are declared; the local cap on cold workers says what it does."""

from __future__ import annotations

import math
import os

import pytest

import vastnb
from vastnb.backends.local import LocalBackend
from vastnb.errors import ConfigurationError
from vastnb.gpus import local_gpus


@pytest.fixture
def app():
    a = vastnb.Deployment("settings")
    yield a
    a.shutdown()


@pytest.mark.parametrize("label", ["timeout", "max_queue_time"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, 0])
def test_remote_seconds_must_be_positive_and_finite(app, label, value):
    with pytest.raises(ConfigurationError) as info:
        @app.remote(**{label: value})
        async def f():
            return 1
    assert str(info.value) == f"`{label}` of `f` must be a positive, finite number of seconds. Instead got {value!r}."
    assert app.snapshot().workers == ()


@pytest.mark.parametrize("value", [-1, 0, "x", math.nan, math.inf, True])
def test_health_check_timeout_is_checked_by_the_deployment(value):
    with pytest.raises(ConfigurationError) as info:
        vastnb.Deployment("hc", health_check_timeout=value)
    assert str(info.value) == f"`health_check_timeout` must be a positive number of seconds. Instead got {value!r}."


def test_max_workers_zero_is_refused_before_anything_starts(app):
    with pytest.raises(ConfigurationError) as info:
        app.configure_autoscaling(max_workers=0)
    assert str(info.value) == ("`max_workers` must be at least 1: with max_workers=0 no worker can start, so no call "
                               "could run. Instead got 0.")
    app.configure_autoscaling(cold_workers=0, max_workers=1)  # scale to zero stays possible


@pytest.mark.parametrize("value", [0, -2, 1.5, "all", True])
def test_max_cold_workers_is_checked(value):
    with pytest.raises(ConfigurationError) as info:
        LocalBackend(max_cold_workers=value)
    assert str(info.value) == ('`max_cold_workers` must be an integer >= 1, "machine" (one per GPU slot, or per CPU core '
                               f'without GPUs) or None (no cap). Instead got {value!r}.')


def test_cold_workers_above_the_local_cap_are_announced_and_capped_here_only(capsys):
    app = vastnb.Deployment("capped", backend=LocalBackend(max_cold_workers=1))
    try:
        app.configure_autoscaling(cold_workers=2, max_workers=4)

        @app.remote()
        async def pid():
            return os.getpid()

        app.ensure_ready(progress=False)
        err = capsys.readouterr().err
        assert ("vastnb: deployment 'capped' keeps 1 local worker(s) started, not cold_workers=2 (max_cold_workers=1); "
                "Vast and the export keep 2. To start 2 here: Deployment(backend=LocalBackend(max_cold_workers=2)).\n"
                ) in err
        assert [w.state.serving for w in app.snapshot().workers] == [True]
        assert app.spec().autoscaling.cold_workers == 2  # what Vast and the export get
    finally:
        app.shutdown()


def test_vast_default_of_five_cold_workers_is_capped_to_this_machine(capsys):
    app = vastnb.Deployment("default-cold")
    try:
        @app.remote()
        async def pid():
            return os.getpid()

        app.ensure_ready(progress=False)
        err = capsys.readouterr().err
        gpus = local_gpus()
        cap = len(os.sched_getaffinity(0)) if not gpus else len(gpus)
        started = [w for w in app.snapshot().workers if w.state.serving]
        assert len(started) == min(5, cap)
        notice = "vastnb: deployment 'default-cold' keeps "
        assert (notice in err) == (cap < 5)
        if cap < 5:
            where = f"{cap} GPU slot(s)" if gpus else f"{cap} CPU core(s)"
            assert (f"{notice}{cap} local worker(s) started, not cold_workers=5 ({where}); Vast and the export keep 5. "
                    "To start 5 here: Deployment(backend=LocalBackend(max_cold_workers=5)).\n") in err
    finally:
        app.shutdown()
