"""The exact words of errors a user can hit at call time."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import sys
from typing import Any, Iterator

import pytest

import vastnb
from vastnb.errors import CallTimeout, ConfigurationError, ContextNotFound, DeploymentShutDown, NotOnWorker


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


class Model:
    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return None


def test_get_context_in_the_notebook_is_a_not_implemented_error_as_in_the_sdk():
    app = vastnb.Deployment("ctx-outside")
    app.context()(Model)
    with pytest.raises(NotImplementedError) as info:  # what the official SDK raises outside serve mode
        app.get_context(Model)
    assert isinstance(info.value, NotOnWorker) and isinstance(info.value, RuntimeError)
    assert str(info.value) == ("get_context(Model) returns the context entered on a worker; call it inside a remote "
                               "function (or a %%vast_run cell), not in the notebook itself.")


# ----------------------------------------------------------------------------- remote exceptions, every constructor shape
# Exception classes the way a notebook defines them: at the top level of a module that travels by value, as a
# cell's does (the fixture registers this module by value), and what raises each. Python rebuilds an exception with
# ``cls(*exc.args)``, which is wrong for every class here whose ``__init__`` does not take its own ``args`` back.


class AppError(Exception):  # positional, the message built from it
    def __init__(self, code):
        super().__init__(f"code {code}: bad")
        self.code = code


class Refused(Exception):  # keyword-only
    def __init__(self, *, user, reason="no quota"):
        super().__init__(f"{user} refused: {reason}")
        self.user = user


class Joined(Exception):  # a message from *args
    def __init__(self, *parts):
        super().__init__(" / ".join(parts))
        self.parts = parts


class Reduced(Exception):  # its own __reduce__: kept
    def __init__(self, code, detail):
        super().__init__(f"reduced {code}")
        self.code, self.detail = code, detail

    def __reduce__(self):
        return (type(self), (self.code, self.detail))


class Coded(Exception):  # __str__ override, no super().__init__()
    def __init__(self, code):
        self.code = code

    def __str__(self):
        return f"failed with code {self.code}"


class NoModel(FileNotFoundError):  # an OSError subclass: errno and filename come from its args
    def __init__(self, name):
        super().__init__(errno.ENOENT, "no such model", name)
        self.model = name


CLASSES = {c.__name__: c for c in (AppError, Refused, Joined, Reduced, Coded, NoModel)}


def make(kind: str) -> BaseException:
    return {
        "AppError": lambda: AppError(7),
        "Refused": lambda: Refused(user="ana"),
        "Joined": lambda: Joined("disk", "full"),
        "Reduced": lambda: Reduced(3, "the detail"),
        "Coded": lambda: Coded(9),
        "NoModel": lambda: NoModel("llama-7b"),
        "ValueError": lambda: ValueError("a plain one"),
    }[kind]()


# kind -> (str(exc), exc.args, the attributes the notebook sees)
SHAPES: dict[str, tuple[str, tuple[Any, ...], dict[str, Any]]] = {
    "AppError": ("code 7: bad", ("code 7: bad",), {"code": 7}),
    "Refused": ("ana refused: no quota", ("ana refused: no quota",), {"user": "ana"}),
    "Joined": ("disk / full", ("disk / full",), {"parts": ("disk", "full")}),
    "Reduced": ("reduced 3", ("reduced 3",), {"code": 3, "detail": "the detail"}),
    "Coded": ("failed with code 9", (9,), {"code": 9}),
    "NoModel": ("[Errno 2] no such model: 'llama-7b'", (2, "no such model"), {"model": "llama-7b"}),
    "ValueError": ("a plain one", ("a plain one",), {}),
}


@pytest.fixture(scope="module", params=["local", "vast"])
def raiser(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A deployment with ``fail(kind)`` on the local backend, or on the official-wire path: the Vast backend through
    the official SDK to a stand-in for Vast's control plane, and the official worker runtime on loopback."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # as a notebook's cells travel
    with contextlib.ExitStack() as stack:
        stack.callback(cloudpickle.unregister_pickle_by_value, sys.modules[__name__])
        name = f"errors-{request.param}"
        if request.param == "local":
            app = vastnb.Deployment(name)
        else:
            from tests.vast_standin import VastStandIn, WorkerLauncher
            from vastnb.backends.vast import VastBackend

            standin = stack.enter_context(VastStandIn())
            launcher = WorkerLauncher(standin, str(tmp_path_factory.mktemp("workers")))
            stack.callback(launcher.stop)
            launcher.enable(name)
            app = vastnb.Deployment(name, backend=VastBackend(
                api_key=standin.api_key, webserver_url=standin.url, autoscaler_url=standin.url,
                poll_interval=0.2, max_poll_interval=1.0, ready_timeout=60.0))
            app.image("vastai/base-image:@vastai-automatic-tag", storage=16)
        stack.callback(app.shutdown)
        app.configure_autoscaling(cold_workers=1, max_workers=1)

        @app.remote(benchmark_dataset=[{"kind": None}])
        async def fail(kind):
            if kind is None:
                return "benchmark"
            raise make(kind)

        app.ensure_ready(progress=False)
        yield {"fail": fail, "classes": CLASSES, "backend": request.param}


@pytest.mark.parametrize("kind", sorted(SHAPES))
def test_remote_exceptions_keep_type_message_and_attributes(raiser: dict[str, Any], kind: str) -> None:
    from vastnb.wire._errors import RemoteTraceback

    message, args, attributes = SHAPES[kind]
    expected_type = raiser["classes"].get(kind, ValueError)
    with pytest.raises(expected_type) as info:
        raiser["fail"].call(kind)
    exc = info.value
    assert type(exc) is expected_type
    assert (str(exc), exc.args) == (message, args)
    assert {k: v for k, v in vars(exc).items() if not k.startswith("_")} == attributes
    if kind == "NoModel":
        assert (exc.errno, exc.strerror, exc.filename) == (2, "no such model", "llama-7b")
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert exc.__cause__.message == message and "raise make(kind)" in str(exc.__cause__)
