"""The local backend: a deployment's workers as processes on this machine (``Deployment(backend="local")``).

:class:`LocalBackend` implements :class:`vastnb.backends.Backend`. Inside:
``_runtime`` (the control loop and the protocol's methods), ``_routing`` (the
call path), ``_workers`` (worker processes, health, failures), ``_autoscaler``
(Vast's policy over live state), ``_gpus`` (which local GPUs match the image) and
``_machine`` (what this machine runs well: the local cap on cold workers).
"""

from __future__ import annotations

from ._gpus import matching_gpus
from ._runtime import LocalBackend

__all__ = ["LocalBackend", "matching_gpus"]
