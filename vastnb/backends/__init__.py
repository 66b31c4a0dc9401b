"""Where workers run: the :class:`Backend` boundary and its two implementations.

``local`` (:class:`~vastnb.backends.local.LocalBackend`: processes on this machine)
and ``vast`` (:class:`~vastnb.backends.vast.VastBackend`: Vast Serverless through
the official SDK). A :class:`~vastnb.Deployment` hands a backend a frozen
:class:`~vastnb.spec.DeploymentSpec`; both publish the same events
(:mod:`vastnb.events`), so every view works with either.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError
from ._protocol import Backend, CallRequest, CellRequest, OutputSink

__all__ = ["BACKENDS", "Backend", "CallRequest", "CellRequest", "OutputSink", "create_backend"]

#: The backends ``Deployment(backend=...)`` knows by name.
BACKENDS = ("local", "vast")


def create_backend(name: str, **options: Any) -> Backend:
    """A new backend by name, with its own options (``LocalBackend``'s or ``VastBackend``'s keyword arguments)."""
    if name == "local":
        from .local import LocalBackend

        return LocalBackend(**options)
    if name == "vast":
        from .vast import VastBackend

        return VastBackend(**options)
    raise ConfigurationError(
        f"`backend` must be one of {', '.join(map(repr, BACKENDS))} or a Backend instance. Instead got {name!r}.")
