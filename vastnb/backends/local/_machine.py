"""What this machine runs well: its cores and GPU slots, the local cap on cold workers, and the notice about it.

Vast's default ``cold_workers=5`` keeps five workers started; on a 2-core laptop
that is five Python processes fighting over two cores before any call runs. The
local backend keeps at most one cold worker per GPU slot (or per CPU core without
GPUs) unless told otherwise (``LocalBackend(max_cold_workers=...)``), and says so
once on stderr. The settings themselves, what Vast and the export get, are not changed.
"""

from __future__ import annotations

import os
import time
from typing import Literal

__all__ = ["CPU_WORKER_CAP", "ColdCap", "check_cold_cap", "cold_cap", "cold_cap_notice", "cpu_cores", "wait_dead"]

CPU_WORKER_CAP = 8  # workers on a machine without GPUs, at most, when the load asks for more (they share its cores)

#: ``max_cold_workers``: an int, "machine" (one per GPU slot, or per CPU core without GPUs) or None (no cap).
ColdCap = int | Literal["machine"] | None


def cpu_cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_cold_cap(value: object) -> None:
    from ...errors import ConfigurationError

    if value in ("machine", None):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            "`max_cold_workers` must be an integer >= 1, \"machine\" (one per GPU slot, or per CPU core without "
            f"GPUs) or None (no cap). Instead got {value!r}.")


def cold_cap(setting: ColdCap, gpu_slots: int) -> int | None:
    """The most cold workers kept started here, None for no cap."""
    if setting is None or isinstance(setting, int):
        return setting
    return gpu_slots if gpu_slots else cpu_cores()


def cold_cap_notice(name: str, want: int, setting: ColdCap, gpu_slots: int) -> str | None:
    """The one line said at start when the cap lowers ``cold_workers`` (None when it does not)."""
    cap = cold_cap(setting, gpu_slots)
    if cap is None or want <= cap:
        return None
    if setting == "machine":
        where = f"{cap} GPU slot(s)" if gpu_slots else f"{cap} CPU core(s)"
    else:
        where = f"max_cold_workers={cap}"
    return (f"vastnb: deployment {name!r} keeps {cap} local worker(s) started, not cold_workers={want} ({where}); "
            f"Vast and the export keep {want}. To start {want} here: Deployment(backend=LocalBackend("
            f"max_cold_workers={want})).")


def wait_dead(pids: list[int], limit: float) -> None:
    """Wait (at most ``limit`` seconds in all) until the killed processes ``pids`` are gone or zombies."""
    deadline = time.monotonic() + limit
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        break
            except (OSError, IndexError):
                break
            time.sleep(0.01)
