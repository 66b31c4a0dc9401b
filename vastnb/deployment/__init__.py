"""What a user declares: the deployment, its image, remote functions and contexts, validated before anything starts."""

from __future__ import annotations

from ._deployment import Deployment, DeploymentState
from ._image import Image
from ._relay import OutputRelay
from ._remote import RemoteFunction, RemoteOptions

__all__ = ["Deployment", "DeploymentState", "Image", "OutputRelay", "RemoteFunction", "RemoteOptions"]
