"""Which of this machine's GPUs the workers may use.

This machine's NVIDIA GPUs are discovered without importing torch and matched
against ``image.require(...)``. Matching GPUs get workers pinned to them
(``CUDA_VISIBLE_DEVICES``); a requirement no local GPU meets is an error listing
them; a machine with no GPU runs workers on the CPU after a one-line notice.
"""

from __future__ import annotations

import sys
from typing import Any

from ...errors import NoMatchingGpu

__all__ = ["matching_gpus"]


def matching_gpus(requirement: Any) -> list[Any]:
    """Local GPUs that meet ``requirement`` ([] on a machine without GPUs, after a one-line notice on stderr)."""
    from ... import gpus as gpu_mod

    found = gpu_mod.local_gpus()
    if not found:
        print(f"vastnb: {gpu_mod.NO_GPU_NOTICE}", file=sys.stderr)
        return []
    if requirement is None:
        return found
    matching, _report = gpu_mod.match_local_gpus(requirement, found)
    if not matching:
        raise NoMatchingGpu(gpu_mod.no_match_message(requirement, found))
    return matching
