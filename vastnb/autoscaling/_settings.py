"""Autoscaling settings: Vast's nine parameters, Vast's defaults, validated before anything starts."""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError

__all__ = ["EFFECTIVE_DEFAULTS", "PARAMETERS", "AutoscalingSettings"]

#: The parameter names, in the order Vast documents them and ``configure_autoscaling`` takes them.
PARAMETERS: tuple[str, ...] = (
    "cold_workers",
    "max_workers",
    "min_load",
    "min_cold_load",
    "target_util",
    "cold_mult",
    "max_queue_time",
    "target_queue_time",
    "inactivity_timeout",
)

#: What ``None`` ("Vast's system default") means in the local runtime and the simulator.
#: This is the one place these values live.
#:
#: - ``max_queue_time``: 30 s, the per-worker queue limit Vast's CLI documents as its default.
#: - ``target_queue_time``: 10 s; Vast does not publish its system value.
#: - ``inactivity_timeout``: never (-1). Vast's docs ask for a positive value to scale to
#:   zero, so an unset timeout keeps at least one worker loaded.
EFFECTIVE_DEFAULTS: Mapping[str, float] = {
    "max_queue_time": 30.0,
    "target_queue_time": 10.0,
    "inactivity_timeout": -1.0,
}

_COUNTS = ("cold_workers", "max_workers")
_RATES = ("min_load", "min_cold_load", "cold_mult")
_DEFAULT_COLD_WORKERS = 5


@dataclass(frozen=True)
class AutoscalingSettings:
    """Vast's nine autoscaling parameters with Vast's documented defaults.

    Loads are in workload units per second (a request weighs 100 units unless its
    function says otherwise), times in seconds. ``cold_mult`` defaults to 3 as in
    Vast's parameter docs; the ``vastai`` SDK and CLI help say 2.5. ``None`` means
    Vast's system default; :data:`EFFECTIVE_DEFAULTS` says what that is locally.

    The default ``cold_workers`` (5) yields to a smaller ``max_workers`` (so
    ``configure_autoscaling(max_workers=2)`` just works); a ``cold_workers`` you set
    must fit under ``max_workers``.

    Build new settings with :meth:`merged`; every instance is validated.
    """

    cold_workers: int = _DEFAULT_COLD_WORKERS
    max_workers: int = 16
    min_load: float = 1.0
    min_cold_load: float = 0.0
    target_util: float = 0.9
    cold_mult: float = 3.0
    max_queue_time: float | None = None
    target_queue_time: float | None = None
    inactivity_timeout: float | None = None

    def __post_init__(self) -> None:
        for name in PARAMETERS:
            object.__setattr__(self, name, _check(name, getattr(self, name)))
        if self.cold_workers > self.max_workers and self.cold_workers != _DEFAULT_COLD_WORKERS:
            raise _conflict(self.cold_workers, self.max_workers)

    def merged(self, **changes: Any) -> AutoscalingSettings:
        """New settings with ``changes`` applied on top of these (later calls update, never replace).

        Raises :class:`~vastnb.errors.ConfigurationError` naming the parameter, the
        value and the fix for an unknown name, a wrong type or an out-of-range value,
        and for ``max_workers=0``, which no deployment can run (the pure policy and the
        simulator still accept such settings built directly, as a state to reason about).
        """
        for name in changes:
            if name not in PARAMETERS:
                raise _unknown(name)
        checked = {name: _check(name, value) for name, value in changes.items()}
        if checked.get("max_workers") == 0:  # declared: no worker could ever start, every call would wait forever
            raise ConfigurationError("`max_workers` must be at least 1: with max_workers=0 no worker can start, so no "
                                     "call could run. Instead got 0.")
        new = dataclasses.replace(self, **checked)
        if "cold_workers" in changes and new.cold_workers > new.max_workers:
            raise _conflict(new.cold_workers, new.max_workers)
        return new

    # -- what the policy reads ---------------------------------------------------------

    @property
    def effective_cold_workers(self) -> int:
        """``cold_workers``, lowered to ``max_workers`` when it is the untouched default."""
        return min(self.cold_workers, self.max_workers)

    @property
    def effective_max_queue_time(self) -> float:
        return self.max_queue_time if self.max_queue_time is not None else EFFECTIVE_DEFAULTS["max_queue_time"]

    @property
    def effective_target_queue_time(self) -> float:
        if self.target_queue_time is not None:
            return self.target_queue_time
        return EFFECTIVE_DEFAULTS["target_queue_time"]

    @property
    def effective_inactivity_timeout(self) -> float | None:
        """Seconds of idleness after which the endpoint may scale to its floor; None = never (0 or negative)."""
        value = self.inactivity_timeout
        if value is None:
            value = EFFECTIVE_DEFAULTS["inactivity_timeout"]
        return value if value > 0 else None

    def to_vast_dict(self) -> dict[str, int | float]:
        """The non-None parameters as Vast's API (and ``configure_autoscaling``) takes them.

        ``cold_workers`` is sent as :attr:`effective_cold_workers`, so Vast never sees
        more cold workers than ``max_workers``.
        """
        out: dict[str, int | float] = {}
        for name in PARAMETERS:
            value = self.effective_cold_workers if name == "cold_workers" else getattr(self, name)
            if value is not None:
                out[name] = value
        return out


def _kind(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check(name: str, value: Any) -> Any:
    """``value`` normalised (int counts, float numbers), or a ConfigurationError with the fix."""
    if name in _COUNTS:
        rule = f"`{name}` must be a non-negative integer."
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise ConfigurationError(f"{rule} Instead got {_kind(value)}.")
        if value < 0:
            raise ConfigurationError(f"{rule} Instead got {value!r}.")
        return int(value)
    if name in _RATES:
        rule = f"`{name}` must be a non-negative number."
        if not _is_real(value):
            raise ConfigurationError(f"{rule} Instead got {_kind(value)}.")
        if not math.isfinite(value) or value < 0:
            raise ConfigurationError(f"{rule} Instead got {value!r}.")
        return float(value)
    if name == "target_util":
        rule = "`target_util` must be in (0, 1]."
        if not _is_real(value):
            raise ConfigurationError(f"{rule} Instead got {_kind(value)}.")
        if not 0 < value <= 1:  # also refuses nan
            raise ConfigurationError(f"{rule} Instead got {value!r}.")
        return float(value)
    if value is None:
        return None
    if name in ("max_queue_time", "target_queue_time"):
        rule = f"`{name}` must be None or a positive number of seconds."
        if not _is_real(value):
            raise ConfigurationError(f"{rule} Instead got {_kind(value)}.")
        if not (math.isfinite(value) and value > 0):
            raise ConfigurationError(f"{rule} Instead got {value!r}.")
        return float(value)
    # inactivity_timeout: any finite number; 0 disables it, negative means never (Vast's semantics).
    rule = "`inactivity_timeout` must be None or a number of seconds (0 disables it, negative means never)."
    if not _is_real(value):
        raise ConfigurationError(f"{rule} Instead got {_kind(value)}.")
    if not math.isfinite(value):
        raise ConfigurationError(f"{rule} Instead got {value!r}.")
    return float(value)


def _unknown(name: str) -> ConfigurationError:
    valid = ", ".join(PARAMETERS)
    close = difflib.get_close_matches(name, PARAMETERS, n=1)
    hint = f"; did you mean `{close[0]}`?" if close else "."
    return ConfigurationError(f"unknown autoscaling parameter `{name}`{hint} Valid parameters: {valid}.")


def _conflict(cold: int, max_workers: int) -> ConfigurationError:
    return ConfigurationError(
        f"`cold_workers` ({cold}) cannot exceed `max_workers` ({max_workers}): "
        "raise max_workers or lower cold_workers."
    )
