"""vastnb: Vast.ai Deployments from Jupyter.

Cells become remote functions and contexts that run on GPU workers: worker
processes on this machine (``backend="local"``) or Vast Serverless
(``backend="vast"``), with the official SDK's API::

    import vastnb
    app = vastnb.Deployment("demo")

    @app.remote(benchmark_dataset=[{"x": 2}])
    async def square(x):
        return x * x

    await square(5)   # 25, computed on a worker

In IPython/Jupyter, ``%load_ext vastnb`` adds the magics (``%vast_deployment``,
``%%vast_context``, ``%%vast_remote``, ``%%vast_run``, ``%vast_status``, …).
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from . import query
from .backends import Backend
from .deployment import Deployment, Image, RemoteFunction
from .deployment import _views
from .errors import (
    CallTimeout,
    ConfigurationError,
    ContextNotFound,
    DeploymentShutDown,
    NoMatchingGpu,
    NotSupportedByBackend,
    QueueTimeout,
    RemoteError,
    SerializationError,
    VastnbError,
    WorkerLost,
    WorkerStartError,
)
from .events import WorkerState

__version__ = "0.1.0"

# The package root is the notebook layer: it lends the deployment its views (progress bars, the dashboard),
# imported only when one is first shown, so the layers below never import ipywidgets themselves.
_views.set_provider(lambda: _importlib.import_module(".widgets", __name__))

__all__ = [
    "Backend",
    "CallTimeout",
    "ConfigurationError",
    "ContextNotFound",
    "Deployment",
    "DeploymentShutDown",
    "Image",
    "NoMatchingGpu",
    "NotSupportedByBackend",
    "QueueTimeout",
    "RemoteError",
    "RemoteFunction",
    "SerializationError",
    "VastnbError",
    "WorkerLost",
    "WorkerStartError",
    "WorkerState",
    "__version__",
    "load_ipython_extension",
    "query",
    "unload_ipython_extension",
    "worker_namespace",
]


def worker_namespace() -> dict[str, _typing.Any]:
    """On a worker: the namespace shared by ``%%vast_run`` cells (so remote functions can use what they built)."""
    from .worker.core import current_core

    try:
        return current_core().namespace
    except RuntimeError:
        raise RuntimeError(
            "worker_namespace() is only available inside remote code or %%vast_run cells on a worker."
        ) from None


def load_ipython_extension(ipython: _typing.Any) -> None:
    """``%load_ext vastnb``: register the magics (imported lazily so loading stays fast)."""
    from .magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: _typing.Any) -> None:
    from .magics import unload_ipython_extension as _unload

    _unload(ipython)
