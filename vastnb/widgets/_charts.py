"""Inline SVG charts for the views (bars, lines, stacked steps, gauges): no JavaScript, theme-aware colours."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Callable

from ._html import ACCENT, DANGER, FAINT, MUTED, TRACK, esc, fmt_axis, fmt_rate, fmt_seconds, rgba

__all__ = ["Series", "gauge", "hbar", "line_chart", "spark_bars", "stacked_hbar", "stacked_steps"]


# --- SVG -------------------------------------------------------------------------------------


def _svg(width: float, height: float, body: str, *, title: str = "") -> str:
    t = f"<title>{esc(title)}</title>" if title else ""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:g}" height="{height:g}" '
        f'viewBox="0 0 {width:g} {height:g}" style="display:block;overflow:visible;max-width:100%">{t}{body}</svg>'
    )


def hbar(value: float, vmax: float, color: str, *, width: int = 160, height: int = 12, title: str = "") -> str:
    """A single horizontal bar on a faint track."""
    frac = 0.0 if vmax <= 0 else max(0.0, min(1.0, value / vmax))
    w = frac * width
    body = (
        f'<rect x="0" y="0" width="{width}" height="{height}" rx="3" fill="{TRACK}"/>'
        f'<rect x="0" y="0" width="{w:.1f}" height="{height}" rx="3" fill="{color}"><title>{esc(title)}</title></rect>'
    )
    return _svg(width, height, body, title=title)


def stacked_hbar(
    segments: Sequence[tuple[str, float, str]],
    scale: float,
    *,
    width: int = 300,
    height: int = 16,
    pending: tuple[str, float] | None = None,
    failed: tuple[str, float] | None = None,
) -> str:
    """A horizontal bar of (label, seconds, colour) segments on a common ``scale`` (seconds for full width).

    ``pending`` is an unfinished phase (label, seconds so far), drawn hatched at the end; ``failed`` is
    the phase that failed (label, seconds spent in it), drawn red with a cross, at least a few pixels wide.
    Segments wide enough carry their seconds; each has a tooltip.
    """
    scale = scale if scale > 0 else 1.0
    x = 0.0
    parts = [f'<rect x="0" y="0" width="{width}" height="{height}" rx="3" fill="{TRACK}"/>']
    items = [(label, secs, color, "") for label, secs, color in segments]
    if pending is not None:
        items.append((pending[0], pending[1], "#94a3b8", "pending"))
    if failed is not None:
        items.append((failed[0], failed[1], DANGER, "failed"))
    for label, secs, color, kind in items:
        w = max(0.0, secs / scale * width)
        if kind == "failed":
            w = min(max(w, 14.0), max(width - x, 14.0))
        if w <= 0:
            continue
        tip = f"{label}: {fmt_seconds(secs)}" + (" so far" if kind == "pending" else " — failed here" if kind == "failed" else "")
        fill = (
            f'fill="{rgba("#94a3b8", 0.35)}" stroke="#94a3b8" stroke-dasharray="3 2"' if kind == "pending"
            else f'fill="{color}"'
        )
        parts.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" {fill}><title>{esc(tip)}</title></rect>')
        label_text = "✕" if kind == "failed" else fmt_seconds(secs)
        if kind == "failed" or w >= 7 * len(label_text) + 6:
            tcol = MUTED if kind == "pending" else "#fff"
            parts.append(
                f'<text x="{x + w / 2:.1f}" y="{height / 2 + 3.8:.1f}" text-anchor="middle" font-size="10" '
                f'fill="{tcol}" style="pointer-events:none">{esc(label_text)}</text>'
            )
        x += w
    return _svg(width, height, "".join(parts))


def spark_bars(
    values: Sequence[float],
    vmax: float,
    *,
    color: str = ACCENT,
    width: int = 130,
    height: int = 22,
    slots: int = 10,
    highlight: int | None = None,
    fmt: Callable[[float], str] = fmt_rate,
) -> str:
    """Small vertical bars, one per value, on a fixed number of slots (more values widen the row)."""
    n = max(slots, len(values))
    gap = 2.0
    bw = max(1.5, (width - gap * (n - 1)) / n)
    vmax = vmax if vmax > 0 else 1.0
    parts = []
    for i in range(n):
        x = i * (bw + gap)
        parts.append(f'<rect x="{x:.1f}" y="{height - 2}" width="{bw:.1f}" height="2" fill="{TRACK}"/>')
        if i < len(values):
            h = max(1.5, min(1.0, values[i] / vmax) * (height - 1))
            c = color if highlight is None or i == highlight else rgba(color, 0.55) if color.startswith("#") else color
            parts.append(
                f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{bw:.1f}" height="{h:.1f}" rx="1" fill="{c}">'
                f"<title>run {i + 1}: {esc(fmt(values[i]))}</title></rect>"
            )
    return _svg(width, height, "".join(parts))


class Series:
    """One line of a :func:`line_chart`."""

    __slots__ = ("name", "color", "points", "dashed", "width")

    def __init__(self, name: str, color: str, points: Sequence[tuple[float, float]], *, dashed: bool = False, width: float = 1.8) -> None:
        self.name = name
        self.color = color
        self.points = points
        self.dashed = dashed
        self.width = width


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = math.floor(math.log10(v))
    for m in (1, 2, 3, 4, 5, 6, 8, 10):
        if m * 10**exp >= v:
            return m * 10**exp
    return 10 ** (exp + 1)


def _time_ticks(t0: float, t1: float) -> list[tuple[float, str]]:
    span = t1 - t0
    step = next((s for s in (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600) if span / s <= 4), 7200)
    ticks = []
    k = 0
    while t1 - k * step >= t0 - 1e-9:
        t = t1 - k * step
        ago = k * step
        ticks.append((t, "now" if k == 0 else f"−{ago} s" if ago < 60 else f"−{fmt_seconds(ago).replace('m 00s', 'm')}"))
        k += 1
    return ticks


def _label_width(text: str) -> float:
    """About how wide an axis label is at font-size 9.5 (digits are tabular, ~5.8 px)."""
    return 5.8 * len(text) + 2


def _frame(t0: float, t1: float, ymax: float, width: int, height: int, fmt: Callable[[float], str]) -> tuple[str, Callable[[float], float], Callable[[float], float]]:
    """Axes, grid and labels; returns (svg body, x(t), y(v)). The left margin fits the widest y label."""
    labels = [(frac, fmt(ymax * frac)) for frac in (0.0, 0.5, 1.0)]
    left = max(24, int(max(_label_width(label) for _, label in labels)) + 7)
    right, top, bottom = 6, 6, 16
    pw, ph = width - left - right, height - top - bottom
    span = max(t1 - t0, 1e-9)

    def x(t: float) -> float:
        return left + (t - t0) / span * pw

    def y(v: float) -> float:
        return top + ph - (v / ymax) * ph if ymax > 0 else top + ph

    parts = []
    for frac, label in labels:
        yy = top + ph - frac * ph
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="{TRACK}" stroke-width="1"/>')
        parts.append(
            f'<text x="{left - 5}" y="{yy + 3.5:.1f}" text-anchor="end" font-size="9.5" fill="currentColor" '
            f'style="color:{FAINT}">{esc(label)}</text>'
        )
    ticks = _time_ticks(t0, t1)
    for i, (t, label) in enumerate(ticks):
        xx = x(t)
        anchor = "end" if t == t1 else "start" if i == len(ticks) - 1 and xx - _label_width(label) / 2 < left else "middle"
        parts.append(
            f'<text x="{xx:.1f}" y="{height - 3}" text-anchor="{anchor}" font-size="9.5" fill="currentColor" '
            f'style="color:{FAINT}">{esc(label)}</text>'
        )
    return "".join(parts), x, y


def line_chart(
    series: Sequence[Series],
    *,
    t0: float,
    t1: float,
    width: int = 400,
    height: int = 110,
    fmt: Callable[[float], str] = fmt_axis,
    ymax: float | None = None,
    fixed_max: float | None = None,
) -> str:
    """Lines over time (``t0``–``t1``, seconds) on a shared y axis from 0 (to ``fixed_max`` when given, e.g. 100 %)."""
    top = max((v for s in series for _, v in s.points), default=0.0)
    ymax = fixed_max if fixed_max else _nice_max(max(top, ymax or 0.0) * 1.05)
    frame, x, y = _frame(t0, t1, ymax, width, height, fmt)
    parts = [frame]
    for s in series:
        pts = [(t, v) for t, v in s.points if t >= t0 - 1e-9]
        if not pts:
            continue
        if len(pts) == 1:
            pts = [(t0, pts[0][1]), pts[0]]
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="{s.width:g}" '
            f'stroke-linejoin="round"{dash}><title>{esc(s.name)}</title></polyline>'
        )
    return f'<div style="color:{FAINT}">{_svg(width, height, "".join(parts))}</div>'


def stacked_steps(
    times: Sequence[float],
    layers: Sequence[tuple[str, str, Sequence[float]]],
    *,
    t0: float,
    t1: float,
    width: int = 400,
    height: int = 110,
    marks: Sequence[tuple[float, str]] = (),
) -> str:
    """A stacked step-area chart: ``layers`` of (name, colour, value per sample), bottom first.

    Each sample holds until the next one; the last holds until ``t1``. ``marks`` are (time, tooltip)
    events drawn as red ticks on the time axis (workers that failed).
    """
    totals = [sum(layer[2][i] for layer in layers) for i in range(len(times))]
    ymax = float(max(max(totals, default=0), 1))
    ymax = float(math.ceil(ymax)) if ymax <= 4 else _nice_max(ymax)
    frame, x, y = _frame(t0, t1, ymax, width, height, lambda v: f"{v:g}" if v == int(v) else "")  # whole workers
    parts = [frame]
    # Clip samples to the window: the one before t0 starts at t0.
    idx = [i for i in range(len(times)) if times[i] >= t0]
    first = max(0, (idx[0] - 1) if idx else len(times) - 1)
    keep = list(range(first, len(times)))
    ticks = "".join(
        f'<path d="M{x(mt) - 3.5:.1f},{y(0) + 1:.1f} l3.5,-7 l3.5,7 z" fill="{DANGER}"><title>{esc(tip)}</title></path>'
        for mt, tip in marks if t0 <= mt <= t1
    )
    if not keep:
        return f'<div style="color:{FAINT}">{_svg(width, height, frame + ticks)}</div>'
    starts = [max(times[i], t0) for i in keep]
    ends = starts[1:] + [t1]
    base = [0.0] * len(keep)
    for name, color, values in layers:
        top = [base[j] + values[i] for j, i in enumerate(keep)]
        if not any(values[i] for i in keep):
            base = top
            continue
        up = []
        for j in range(len(keep)):
            up.append(f"{x(starts[j]):.1f},{y(top[j]):.1f}")
            up.append(f"{x(ends[j]):.1f},{y(top[j]):.1f}")
        down = []
        for j in reversed(range(len(keep))):
            down.append(f"{x(ends[j]):.1f},{y(base[j]):.1f}")
            down.append(f"{x(starts[j]):.1f},{y(base[j]):.1f}")
        parts.append(
            f'<polygon points="{" ".join(up + down)}" fill="{rgba(color, 0.8)}">'
            f"<title>{esc(name)}</title></polygon>"
        )
        base = top
    return f'<div style="color:{FAINT}">{_svg(width, height, "".join(parts) + ticks)}</div>'


def gauge(
    value: float,
    vmax: float,
    *,
    color: str,
    marker: float | None = None,
    marker_label: str = "",
    width: int = 240,
    height: int = 10,
    title: str = "",
) -> str:
    """A horizontal bar with an optional target marker (a dark tick), e.g. load against capacity."""
    vmax = vmax if vmax > 0 else max(value, 1.0)
    frac = max(0.0, min(1.0, value / vmax))
    parts = [
        f'<rect x="0" y="0" width="{width}" height="{height}" rx="3" fill="{TRACK}"/>',
        f'<rect x="0" y="0" width="{frac * width:.1f}" height="{height}" rx="3" fill="{color}"/>',
    ]
    if marker is not None:
        mx = max(0.0, min(1.0, marker / vmax)) * width
        parts.append(
            f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="-3" y2="{height + 3}" stroke="currentColor" stroke-width="2">'
            f"<title>{esc(marker_label)}</title></line>"
        )
    return f'<div style="color:{MUTED}">{_svg(width, height, "".join(parts), title=title)}</div>'


