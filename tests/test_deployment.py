"""Declarations are validated before anything starts, with messages that say what to fix."""

from __future__ import annotations

import dataclasses

import pytest

import vastnb
from vastnb.errors import ConfigurationError


@pytest.fixture
def app():
    a = vastnb.Deployment("decl")
    yield a
    a.shutdown()
    assert a.snapshot().workers == ()  # nothing was ever started


def _msg(excinfo) -> str:
    return str(excinfo.value)


def test_remote_must_be_async(app):
    with pytest.raises(ConfigurationError) as e:
        @app.remote()
        def square(x):
            return x * x
    assert _msg(e) == ("remote function `square` must be defined with `async def` (Vast runs remote functions as "
                       "coroutines). Change `def square(...)` to `async def square(...)`.")


def test_dataset_keys_must_match_parameters(app):
    with pytest.raises(ConfigurationError) as e:
        @app.remote(benchmark_dataset=[{"x": 1}, {"y": 2}])
        async def square(x):
            return x * x
    assert _msg(e) == ("`benchmark_dataset[1]` of `square` does not match its parameters (x): unknown key(s) 'y'; "
                       "missing key(s) 'x'. Use the parameter names as keys.")


def test_dataset_and_generator_exclusive(app):
    with pytest.raises(ConfigurationError) as e:
        @app.remote(benchmark_dataset=[{"x": 1}], benchmark_generator=lambda: {"x": 1})
        async def square(x):
            return x
    assert _msg(e) == ("remote function `square` has both benchmark_dataset and benchmark_generator; give one of "
                       "them (the official SDK would silently use benchmark_dataset and ignore benchmark_generator).")


@pytest.mark.parametrize("runs", [0, -3, 2.5, True])
def test_benchmark_runs_at_least_one(app, runs):
    with pytest.raises(ConfigurationError) as e:
        @app.remote(benchmark_dataset=[{"x": 1}], benchmark_runs=runs)
        async def square(x):
            return x
    assert _msg(e) == f"`benchmark_runs` of `square` must be an integer >= 1. Instead got {runs!r}."


def test_unserializable_dataset_value_names_it(app):
    import threading

    with pytest.raises(ConfigurationError) as e:
        @app.remote(benchmark_dataset=[{"x": threading.Lock()}])
        async def square(x):
            return x
    assert _msg(e).startswith("cannot serialize benchmark_dataset[0]['x']: TypeError: cannot pickle '_thread.lock' object.")


def test_context_needs_aenter_and_aexit(app):
    with pytest.raises(ConfigurationError) as e:
        @app.context()
        class Model:
            async def __aenter__(self):
                return self
    assert _msg(e) == ("context class `Model` lacks __aexit__: a context is an async context manager. Define "
                       "`async def __aenter__(self): ...; return self` and `async def __aexit__(self, *exc): ...`.")


def test_context_arguments_must_fit_constructor(app):
    with pytest.raises(ConfigurationError) as e:
        @app.context("weights.pt", dtype="bf16")
        class Model:
            def __init__(self, path):
                self.path = path

            async def __aenter__(self):
                return self

            async def __aexit__(self, *exc):
                pass
    assert _msg(e) == "@app.context(...) arguments do not fit `Model`'s constructor: got an unexpected keyword argument 'dtype'."


def test_get_context_in_the_notebook(app):
    @app.context()
    class Model:
        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc):
            pass

    class Other:
        pass

    with pytest.raises(RuntimeError) as e:
        app.get_context(Model)
    assert "call it inside a remote function" in _msg(e)
    with pytest.raises(ConfigurationError) as e2:
        app.get_context(Other)
    assert _msg(e2).startswith("get_context(test_get_context_in_the_notebook.<locals>.Other): ")


def test_autoscaling_validation_happens_at_configure_time(app):
    with pytest.raises(ConfigurationError):
        app.configure_autoscaling(target_util=1.5)
    with pytest.raises(ConfigurationError):
        app.configure_autoscaling(cold_workers=6, max_workers=4)
    app.configure_autoscaling(cold_workers=2)
    app.configure_autoscaling(max_workers=3)
    assert (app.autoscaling.cold_workers, app.autoscaling.max_workers) == (2, 3)  # merged, not replaced


def test_bad_constructor_arguments():
    with pytest.raises(ConfigurationError) as e:
        vastnb.Deployment("x", backend="cloud")
    assert _msg(e) == "`backend` must be one of 'local', 'vast' or a Backend instance. Instead got 'cloud'."
    with pytest.raises(ConfigurationError) as e:
        vastnb.Deployment("x", backend=object())  # type: ignore[arg-type]
    assert _msg(e).startswith("`backend` must be one of 'local', 'vast' or a Backend instance. Instead got <object ")
    with pytest.raises(ConfigurationError) as e:
        vastnb.Deployment("x", ttl=-1)
    assert _msg(e) == "`ttl` must be a positive number of seconds or None. Instead got -1."


def test_image_takes_the_sdks_private_registry_login_and_never_shows_the_password(app):
    image = app.image("registry.example.com/me/model:1", 16, docker_login_user="me", docker_login_pass="s3cret",
                      docker_login_repo="registry.example.com")
    assert image.spec().docker_login == {"docker_login_user": "me", "docker_login_pass": "s3cret",
                                         "docker_login_repo": "registry.example.com"}
    assert "s3cret" not in repr(image.spec())
    assert image.describe()["docker_login"] == ["docker_login_pass", "docker_login_repo", "docker_login_user"]
    assert "s3cret" not in repr(image) + repr(image.describe())
    with pytest.raises(ConfigurationError) as e:
        app.image("img", 16, docker_password="x")
    assert _msg(e) == ("image() got unknown argument(s) docker_password. It takes from_image, storage and, for a "
                       "private registry, the official SDK's docker_login_user, docker_login_pass, docker_login_repo.")
    with pytest.raises(ConfigurationError) as e:
        app.image("img", 16, docker_login_pass=None)
    assert _msg(e) == "`docker_login_pass` must be a non-empty string. Instead got a NoneType."
    assert app.image("img", 16).spec().docker_login == {}


def test_image_is_chainable_and_validated(app):
    from vastnb.query import gpu_ram

    image = app.image("vastai/pytorch:@vastai-automatic-tag", storage=16)
    assert image.pip_install("numpy").apt_get("ffmpeg").env(MODE="dev").require(gpu_ram >= 16).run_cmd("echo", "hi") is image
    assert image.describe()["search_params"] == "verified=true rentable=true rented=false gpu_ram>=16"
    with pytest.raises(ConfigurationError) as e:
        image.env(WORKERS=4)
    assert _msg(e) == "environment variable WORKERS must be a string. Instead got 4 (int); write env(WORKERS='4')."
    with pytest.raises(ConfigurationError):
        image.require(gpu_ram >= 24)  # gpu_ram>= was already required


def test_a_backend_instance_brings_its_own_options_and_the_deployment_hands_it_a_frozen_spec():
    from vastnb.backends import Backend
    from vastnb.backends.local import LocalBackend
    from vastnb.spec import DeploymentSpec

    backend = LocalBackend(health_check_timeout=5, scale_down_cooldown=0)
    app = vastnb.Deployment("with-instance", backend=backend)
    assert isinstance(backend, Backend) and app.backend == "local" and app.events is backend.events

    @app.remote(benchmark_dataset=[{"x": 1}])
    async def f(x):
        return x

    spec = app.spec()
    assert isinstance(spec, DeploymentSpec) and list(spec.functions) == ["f"] and spec.benchmark == "f"
    assert spec.functions["f"].benchmark is not None and spec.functions["f"].benchmark.fn_hash == spec.functions["f"].hash
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(ConfigurationError) as e:
        LocalBackend(health_check_timeout=-1)
    assert _msg(e) == "`health_check_timeout` must be a positive number of seconds. Instead got -1."
