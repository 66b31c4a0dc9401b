"""The local runtime's autoscaler: its state as a :class:`~vastnb.autoscaling.ScalingView` for the pure policy.

:func:`vastnb.autoscaling.decide` decides; the runtime applies the
recommendation exactly as returned (start ``start`` workers, drain the workers
named in ``stop``), as :func:`vastnb.autoscaling.simulate` does.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import TYPE_CHECKING, Callable

from ...autoscaling import (
    SCALE_DOWN_COOLDOWN_S,
    AutoscalingSettings,
    LoadMeter,
    PolicyState,
    Recommendation,
    ScalingView,
    WorkerView,
    decide,
)

if TYPE_CHECKING:
    from ._runtime import LocalBackend

__all__ = ["Autoscaler", "ScalePolicy"]

#: A scaling policy sees the runtime and the time and recommends what to do.
ScalePolicy = Callable[["LocalBackend", float], Recommendation]


class Autoscaler:
    """Vast's autoscaling policy over the runtime's live state, one control period at a time."""

    def __init__(self, settings: AutoscalingSettings, started_at: float, *,
                 scale_down_cooldown: float = SCALE_DOWN_COOLDOWN_S, cold_cap: int | None = None) -> None:
        self.settings = settings
        self.state = PolicyState()
        self.meter = LoadMeter(started_at=started_at)
        self.seen = 0
        self.scale_down_cooldown = scale_down_cooldown
        self.cold_cap = cold_cap  # the local backend's max_cold_workers: Vast's settings stay as declared

    def local_settings(self) -> AutoscalingSettings:
        """The settings the policy runs with here: ``cold_workers`` lowered to ``cold_cap``."""
        if self.cold_cap is None or self.settings.effective_cold_workers <= self.cold_cap:
            return self.settings
        return dataclasses.replace(self.settings, cold_workers=self.cold_cap)

    def view(self, runtime: "LocalBackend", now: float) -> ScalingView:
        fresh = runtime.arrivals_total - self.seen
        if fresh > 0:
            for t, w in reversed(list(itertools.islice(reversed(runtime.arrival_log), fresh))):  # the new ones only
                self.meter.record(t, w)
            self.seen = runtime.arrivals_total
        workers = tuple(
            WorkerView(h.id, h.shown_state, h.perf_score, h.load, h.idle_since)
            for h in runtime.workers.values() if h.state.alive and not h.stopping
        )
        head = runtime.pending.first()
        waiting = now - head.created if head is not None else 0.0
        known = [h.perf_score for h in runtime.workers.values() if h.perf_score]
        return ScalingView(
            now=now, workers=workers, load=self.meter.rate(now), queue_time=waiting, queued=runtime.pending.load,
            last_request_at=runtime.last_activity(), machine_max_workers=runtime.machine_max_workers(),
            prior_perf_score=sum(known) / len(known) if known else None,
        )

    def __call__(self, runtime: "LocalBackend", now: float) -> Recommendation:
        rec, self.state = decide(self.view(runtime, now), self.local_settings(), self.state,
                                 scale_down_cooldown=self.scale_down_cooldown)
        return rec
