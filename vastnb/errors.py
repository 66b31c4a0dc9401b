"""The exceptions vastnb raises, rooted at :class:`VastnbError`.

Every message says what happened and how to fix it, with the offending value.
Errors that mirror a built-in category also derive from it (a bad declaration is
a ``ValueError``, an unserializable argument a ``TypeError``) so ``except
ValueError`` in user code keeps working.
"""

from __future__ import annotations

__all__ = [
    "CallTimeout",
    "ConfigurationError",
    "ContextNotFound",
    "DeploymentShutDown",
    "NoMatchingGpu",
    "NotOnWorker",
    "NotSupportedByBackend",
    "QueueTimeout",
    "RemoteError",
    "SerializationError",
    "VastnbError",
    "WorkerLost",
    "WorkerStartError",
]


class VastnbError(Exception):
    """Root of every error vastnb raises on purpose."""

    def _render_traceback_(self) -> list[str]:
        """In IPython: the user's own frames and the message, without vastnb's or the futures' frames."""
        from .wire._errors import render_user_traceback

        return render_user_traceback(self)


class ConfigurationError(VastnbError, ValueError):
    """Something declared on a deployment is invalid; raised before anything starts."""


class SerializationError(VastnbError, TypeError):
    """A value cannot be turned into bytes (or back) for the wire."""


class NotSupportedByBackend(ConfigurationError):
    """The deployment's backend cannot do what was asked (e.g. keep an endpoint alive on the local backend)."""


class NoMatchingGpu(ConfigurationError):
    """``image.require(...)`` matches none of this machine's GPUs."""


class ContextNotFound(VastnbError, LookupError):
    """``get_context(cls)`` names a class that is not a registered context."""


class NotOnWorker(VastnbError, NotImplementedError):
    """Something only remote code on a worker can do (``app.get_context``) was called in the notebook.

    A ``NotImplementedError``, as the official SDK raises there, and so also a ``RuntimeError``."""


class DeploymentShutDown(VastnbError, RuntimeError):
    """The deployment was shut down; calls can no longer be made."""


class WorkerStartError(VastnbError, RuntimeError):
    """No worker could be brought to ready (context or benchmark failed, or start-up crashed)."""


class WorkerLost(VastnbError, RuntimeError):
    """The worker running a call died, and the call could not (or may not) be retried."""

    def __init__(self, message: str, *, worker_id: str | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.worker_id = worker_id
        self.attempts = attempts


class QueueTimeout(VastnbError, TimeoutError):
    """A call would wait in the queue longer than its function's ``max_queue_time``."""

    def __init__(self, message: str, *, limit: float, estimated_wait: float) -> None:
        super().__init__(message)
        self.limit = limit
        self.estimated_wait = estimated_wait


class CallTimeout(VastnbError, TimeoutError):
    """A call did not finish within its deadline."""


class RemoteError(VastnbError):
    """A remote exception whose own type could not be rebuilt in this process.

    ``type_name`` is the remote exception's qualified type name; the message and
    the remote traceback are kept.
    """

    def __init__(self, message: str, *, type_name: str = "Exception") -> None:
        super().__init__(message)
        self.type_name = type_name

    def __str__(self) -> str:
        return f"{self.type_name}: {self.args[0]}" if self.args else self.type_name
