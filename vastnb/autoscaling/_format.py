"""Number formatting shared by reasons, tables and charts (one place, so they agree)."""

from __future__ import annotations

import math


def rate(value: float) -> str:
    """A load or capacity in workload units per second: ``1,840/s``, ``2.5/s``."""
    return f"{number(value)}/s"


def number(value: float) -> str:
    """Whole numbers with thousands separators; one decimal below 10 when not whole."""
    if math.isinf(value):
        return "∞"
    if abs(value) >= 10 or abs(value - round(value)) < 0.05:
        return f"{round(value):,}"
    return f"{value:,.1f}"


def seconds(value: float) -> str:
    """A duration for a reason line: ``300 s``, ``12.5 s``."""
    if math.isinf(value):
        return "∞ s"
    if abs(value - round(value)) < 0.05:
        return f"{round(value)} s"
    return f"{value:.1f} s"


def plural(count: int, word: str = "worker") -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
