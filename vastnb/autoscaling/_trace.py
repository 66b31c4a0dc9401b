"""Load traces for the simulator: request rates over time, or a recording of real calls."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import ConfigurationError

__all__ = ["LoadTrace"]


@dataclass(frozen=True)
class LoadTrace:
    """Arriving requests over ``duration_s`` seconds.

    ``rps[i]`` is the request rate (requests per second, arriving evenly) during
    ``[i * step_s, (i + 1) * step_s)``; each request weighs the simulation's
    ``workload_per_request``. ``calls`` are recorded calls ``(t, workload)`` arriving at
    exact times, with their own workload. ``marks`` are the times where the trace
    changes on purpose (a step, a burst), used by :meth:`SimulationResult.time_to_capacity`
    and :func:`compare`.
    """

    rps: tuple[float, ...] = ()
    step_s: float = 1.0
    calls: tuple[tuple[float, float], ...] = ()
    duration_s: float = 0.0
    marks: tuple[float, ...] = ()
    name: str = "trace"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.step_s) and self.step_s > 0):
            raise ConfigurationError(f"`step_s` must be a positive number of seconds. Instead got {self.step_s!r}.")
        for value in self.rps:
            if not (math.isfinite(value) and value >= 0):
                raise ConfigurationError(
                    f"request rates must be non-negative numbers. Instead got {value!r} in the trace."
                )
        object.__setattr__(self, "duration_s", max(self.duration_s, len(self.rps) * self.step_s))

    # -- constructors ---------------------------------------------------------------------

    @classmethod
    def from_rps(cls, rps: Iterable[float], step_s: float = 1.0, *, name: str = "rps") -> LoadTrace:
        """Requests per second, one value per ``step_s`` seconds."""
        return cls(rps=tuple(float(r) for r in rps), step_s=step_s, name=name)

    @classmethod
    def step(
        cls, before_rps: float, after_rps: float, at_s: float, duration_s: float, *, step_s: float = 1.0
    ) -> LoadTrace:
        """``before_rps`` until ``at_s``, then ``after_rps`` until ``duration_s``."""
        rps = [before_rps if (i * step_s) < at_s else after_rps for i in range(_steps(duration_s, step_s))]
        name = f"step {before_rps:g}→{after_rps:g} rps at {at_s:g} s"
        return cls(rps=tuple(rps), step_s=step_s, marks=(float(at_s),), name=name)

    @classmethod
    def ramp(
        cls,
        from_rps: float,
        to_rps: float,
        start_s: float,
        end_s: float,
        duration_s: float,
        *,
        step_s: float = 1.0,
    ) -> LoadTrace:
        """``from_rps`` until ``start_s``, rising linearly to ``to_rps`` at ``end_s``, then held."""
        if end_s < start_s:
            raise ConfigurationError(f"a ramp must end after it starts. Instead got start_s={start_s}, end_s={end_s}.")
        rps = []
        for i in range(_steps(duration_s, step_s)):
            mid = (i + 0.5) * step_s
            frac = 0.0 if mid <= start_s else 1.0 if mid >= end_s else (mid - start_s) / (end_s - start_s)
            rps.append(from_rps + (to_rps - from_rps) * frac)
        name = f"ramp {from_rps:g}→{to_rps:g} rps over {start_s:g}–{end_s:g} s"
        return cls(rps=tuple(rps), step_s=step_s, marks=(float(start_s),), name=name)

    @classmethod
    def burst(
        cls,
        base_rps: float,
        burst_rps: float,
        at_s: float,
        burst_s: float,
        duration_s: float,
        *,
        step_s: float = 1.0,
    ) -> LoadTrace:
        """``base_rps`` throughout, except ``burst_rps`` for ``burst_s`` seconds from ``at_s``."""
        rps = [
            burst_rps if at_s <= i * step_s < at_s + burst_s else base_rps
            for i in range(_steps(duration_s, step_s))
        ]
        name = f"burst {burst_rps:g} rps for {burst_s:g} s at {at_s:g} s"
        return cls(rps=tuple(rps), step_s=step_s, marks=(float(at_s), float(at_s + burst_s)), name=name)

    @classmethod
    def idle(cls, duration_s: float, *, step_s: float = 1.0) -> LoadTrace:
        """No requests for ``duration_s`` seconds (append it with :meth:`then`)."""
        return cls(rps=(0.0,) * _steps(duration_s, step_s), step_s=step_s, name=f"idle {duration_s:g} s")

    @classmethod
    def from_calls(
        cls, calls: Iterable[Sequence[float]], *, start: float = 0.0, duration_s: float | None = None
    ) -> LoadTrace:
        """Recorded calls ``(t, workload)``; ``t`` in seconds, measured from ``start``.

        Pass ``start`` to replay absolute timestamps (e.g. ``time.time()`` values).
        """
        rows = []
        for row in calls:
            if len(row) != 2:
                raise ConfigurationError(f"each call must be a pair (t, workload). Instead got {tuple(row)!r}.")
            t, workload = float(row[0]) - start, float(row[1])
            if not (math.isfinite(t) and t >= 0 and math.isfinite(workload) and workload >= 0):
                raise ConfigurationError(
                    f"a call needs a time ≥ start and a non-negative workload. Instead got {tuple(row)!r}."
                )
            rows.append((t, workload))
        rows.sort()
        end = rows[-1][0] if rows else 0.0
        return cls(calls=tuple(rows), duration_s=duration_s if duration_s is not None else end + 1.0, name="calls")

    # -- composition and reading ------------------------------------------------------------

    def then(self, other: LoadTrace) -> LoadTrace:
        """This trace followed by ``other`` (rate traces must share ``step_s``)."""
        if self.rps and other.rps and self.step_s != other.step_s:
            raise ConfigurationError(
                f"traces joined with `then` must share step_s. Instead got {self.step_s:g} and {other.step_s:g}."
            )
        if self.calls and len(self.rps) * self.step_s < self.duration_s and other.rps:
            pad = _steps(self.duration_s, self.step_s) - len(self.rps)
            head = self.rps + (0.0,) * pad
        else:
            head = self.rps
        offset = max(self.duration_s, len(head) * self.step_s)
        return LoadTrace(
            rps=head + other.rps,
            step_s=other.step_s if other.rps else self.step_s,
            calls=self.calls + tuple((t + offset, w) for t, w in other.calls),
            duration_s=offset + other.duration_s,
            marks=self.marks + tuple(m + offset for m in other.marks),
            name=f"{self.name}, then {other.name}",
        )

    def rps_at(self, t: float) -> float:
        """The rate part of the trace at time ``t`` (requests per second)."""
        i = int(t // self.step_s)
        return self.rps[i] if 0 <= i < len(self.rps) else 0.0

    def __repr__(self) -> str:
        return f"LoadTrace({self.name!r}, {self.duration_s:g} s)"


def _steps(duration_s: float, step_s: float) -> int:
    if not (math.isfinite(duration_s) and duration_s >= 0):
        raise ConfigurationError(f"`duration_s` must be a non-negative number. Instead got {duration_s!r}.")
    return max(0, math.ceil(duration_s / step_s - 1e-9))
