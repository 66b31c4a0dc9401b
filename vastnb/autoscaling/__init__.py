"""Autoscaling: Vast's settings, the scaling policy, and a simulator that runs the same policy.

- :class:`AutoscalingSettings` holds Vast's nine parameters (``configure_autoscaling``).
- :func:`decide` is the policy: a pure function of a :class:`ScalingView`, the settings and
  a :class:`PolicyState`, returning a :class:`Recommendation` with a one-line reason. Its
  formula is written once, in :mod:`vastnb.autoscaling._policy`.
- :func:`simulate` and :func:`compare` run :func:`decide` on a :class:`LoadTrace` with a
  simulated clock, to choose settings before paying for workers.
"""

from __future__ import annotations

from ._policy import (
    LOAD_LONG_WINDOW_S,
    LOAD_SHORT_WINDOW_S,
    SCALE_DOWN_COOLDOWN_S,
    SCALE_DOWN_HEADROOM,
    LoadMeter,
    PolicyState,
    Recommendation,
    ScalingView,
    WorkerView,
    decide,
)
from ._settings import EFFECTIVE_DEFAULTS, PARAMETERS, AutoscalingSettings
from ._simulator import Comparison, SimulationResult, SimulationStep, compare, simulate
from ._trace import LoadTrace

__all__ = [
    "EFFECTIVE_DEFAULTS",
    "LOAD_LONG_WINDOW_S",
    "LOAD_SHORT_WINDOW_S",
    "PARAMETERS",
    "SCALE_DOWN_COOLDOWN_S",
    "SCALE_DOWN_HEADROOM",
    "AutoscalingSettings",
    "Comparison",
    "LoadMeter",
    "LoadTrace",
    "PolicyState",
    "Recommendation",
    "ScalingView",
    "SimulationResult",
    "SimulationStep",
    "WorkerView",
    "compare",
    "decide",
    "simulate",
]
