"""Shared HTML/SVG pieces for vastnb's views: number formats, colours, tables, bars, charts.

Everything here returns strings with inline styles only (no ``<style>`` blocks,
no scripts), so the same markup works inside an ipywidgets ``HTML`` widget, in a
saved notebook's ``text/html`` output and in exported HTML. Colours read the
JupyterLab theme variables where there are some, with light-theme fallbacks.
"""

from __future__ import annotations

import html
import math
import sys
from typing import Any, Callable, Iterable, Sequence

__all__ = [
    "DEPLOYMENT_STATE_COLORS",
    "MUTED",
    "PHASE_COLORS",
    "STATE_COLORS",
    "TEXT",
    "esc",
    "fmt_count",
    "fmt_gb",
    "fmt_money",
    "fmt_num",
    "fmt_rate",
    "fmt_seconds",
    "widget_frontend",
]

# --- colours ---------------------------------------------------------------------------------

TEXT = "var(--jp-ui-font-color1, #1f2328)"
MUTED = "var(--jp-ui-font-color2, #656d76)"
FAINT = "var(--jp-ui-font-color3, #8c959f)"
BORDER = "var(--jp-border-color2, #e1e4e8)"
TRACK = "rgba(127, 127, 127, 0.14)"
FONT = "var(--jp-ui-font-family, -apple-system, BlinkMacSystemFont, 'Segoe UI', Helvetica, Arial, sans-serif)"
MONO = "var(--jp-code-font-family, SFMono-Regular, Menlo, Consolas, monospace)"

STATE_COLORS: dict[str, str] = {
    "provisioning": "#8b5cf6",
    "loading": "#3b82f6",
    "benchmarking": "#06b6d4",
    "ready": "#22c55e",
    "busy": "#f59e0b",
    "draining": "#64748b",
    "stopped": "#b6bfcb",
    "error": "#ef4444",
}

DEPLOYMENT_STATE_COLORS: dict[str, str] = {
    "declared": "#94a3b8",
    "starting": "#3b82f6",
    "running": "#22c55e",
    "shut down": "#64748b",
}

PHASE_COLORS = ("#6366f1", "#0ea5e9", "#14b8a6", "#84cc16", "#f59e0b", "#ec4899", "#a855f7", "#64748b")

UP = "#16a34a"
DOWN = "#d97706"
ACCENT = "#3b82f6"
DANGER = "#dc2626"


def rgba(hex_color: str, alpha: float) -> str:
    """``#rrggbb`` → ``rgba(r, g, b, alpha)``."""
    h = hex_color.lstrip("#")
    r, g, b = int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    return f"rgba({r}, {g}, {b}, {alpha:g})"


# --- numbers ---------------------------------------------------------------------------------


def esc(value: object) -> str:
    """HTML-escape any value's ``str``."""
    return html.escape(str(value), quote=True)


def fmt_num(x: float | None) -> str:
    """A number with thousands separators and about three significant digits: 1,840; 12.3; 0.042."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1e9:
        return f"{x / 1e9:.3g}G"
    if a >= 1e6:
        return f"{x / 1e6:.3g}M"
    if a >= 100:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:,.1f}"
    if a >= 1:
        return f"{x:,.2f}"
    if a >= 0.01:
        return f"{x:.3f}".rstrip("0").rstrip(".")
    return f"{x:.2g}"


def fmt_count(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def fmt_rate(x: float | None, unit: str = "/s") -> str:
    """Throughput: ``1,840/s``."""
    return "–" if x is None else f"{fmt_num(x)}{unit}"


def fmt_seconds(s: float | None) -> str:
    """A duration: ``850 µs``, ``12.3 ms``, ``4.2 s``, ``3m 12s``, ``2h 05m``."""
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "–"
    if s < 0:
        s = 0.0
    if s == 0:
        return "0 s"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{fmt_num(s * 1e3)} ms"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        m, sec = divmod(int(round(s)), 60)
        return f"{m}m {sec:02d}s"
    h, rest = divmod(int(round(s)), 3600)
    return f"{h}h {rest // 60:02d}m"


def fmt_uptime(s: float | None) -> str:
    """A coarse duration for uptimes: ``<1 s``, ``42 s``, ``3m 12s``."""
    if s is None:
        return "–"
    if s < 1:
        return "<1 s"
    if s < 60:
        return f"{s:.0f} s"
    return fmt_seconds(s)


def fmt_money(x: float | None, per: str = "/h") -> str:
    """Dollars: ``$0.42/h``, ``$12.30/h``."""
    if x is None:
        return "–"
    if 0 < abs(x) < 0.1:
        return f"${x:.3f}{per}"
    return f"${x:,.2f}{per}"


def fmt_gb(mb: float | None) -> str:
    """Memory given in MB (as Vast and nvidia-smi report it) as GB: ``24 GB``, ``7.5 GB``."""
    if mb is None:
        return "–"
    gb = mb / 1024
    return f"{gb:.0f} GB" if gb >= 10 or gb == int(gb) else f"{gb:.1f} GB"


def short_hash(version: str, n: int = 7) -> str:
    return version[:n] if version else "–"


# --- small HTML blocks -----------------------------------------------------------------------


def panel(body: str, *, title: str | None = None, note: str = "", min_width: int | None = None, sub: bool = False) -> str:
    """A section: a small upper-case title (with an optional muted note, HTML) over its body; ``sub`` for a lighter sub-heading."""
    head = ""
    if title:
        note_html = f'<span style="font-weight:400;text-transform:none;letter-spacing:0;color:{FAINT};margin-left:8px">{note}</span>' if note else ""
        style = (
            f"font-size:12px;font-weight:600;color:{TEXT};margin:0 0 4px 0"
            if sub
            else f"font-size:11px;font-weight:600;letter-spacing:.06em;text-transform:uppercase;color:{MUTED};margin:0 0 6px 0"
        )
        head = f'<div style="{style}">{esc(title)}{note_html}</div>'

    mw = f"min-width:{min_width}px;flex:1 1 {min_width}px;" if min_width else ""
    return f'<div style="{mw}margin:10px 0 4px 0">{head}{body}</div>'


def row(*panels: str, gap: int = 28) -> str:
    """Panels side by side, wrapping on narrow outputs."""
    return f'<div style="display:flex;flex-wrap:wrap;gap:0 {gap}px;align-items:flex-start">{"".join(panels)}</div>'


def root(body: str) -> str:
    """The outer wrapper every view sits in: theme font, tabular digits, theme colour."""
    return (
        f'<div class="vastnb-view" style="font-family:{FONT};font-size:12.5px;line-height:1.45;color:{TEXT};'
        f'font-variant-numeric:tabular-nums;white-space:normal;max-width:1100px;overflow-x:auto">{body}</div>'
    )


# JupyterLab's rendered-HTML stylesheet right-aligns cells, stripes and highlights rows and centres
# tables; inline styles (which outrank it) restore a plain layout in saved-notebook HTML too.
_TABLE = "border-collapse:collapse;table-layout:auto;margin:0;background:transparent;border:none"
_TR = "background:transparent;border:none"
_CELL = "text-align:left;border:none;max-width:none;line-height:1.45;"


def _neutral(html_rows: str) -> str:
    return html_rows.replace("<tr>", f'<tr style="{_TR}">').replace('<td style="', f'<td style="{_CELL}')


def simple_table(rows: Iterable[str]) -> str:
    """A borderless layout table around pre-built ``<tr><td style="…">`` rows."""
    return f'<table style="{_TABLE};font-size:12.5px">{_neutral("".join(rows))}</table>'


def empty(text: str) -> str:
    return f'<div style="color:{FAINT};font-style:italic;padding:2px 0">{esc(text)}</div>'


def dot(color: str, size: int = 8) -> str:
    return (
        f'<span style="display:inline-block;width:{size}px;height:{size}px;border-radius:50%;'
        f'background:{color};vertical-align:middle;margin-right:5px;flex:none"></span>'
    )


def pill(text: str, color: str, *, title: str = "") -> str:
    """A tinted rounded label with a coloured dot, for states."""
    t = f' title="{esc(title)}"' if title else ""
    return (
        f'<span{t} style="display:inline-flex;align-items:center;white-space:nowrap;padding:1px 8px 1px 6px;'
        f'border-radius:10px;background:{rgba(color, 0.14)};font-size:11.5px;font-weight:500">'
        f"{dot(color, 7)}{esc(text)}</span>"
    )


def state_pill(state: str, *, title: str = "") -> str:
    return pill(state, STATE_COLORS.get(state, "#94a3b8"), title=title)


def chip(text: str, *, mono: bool = False, title: str = "") -> str:
    fam = f"font-family:{MONO};" if mono else ""
    t = f' title="{esc(title)}"' if title else ""
    return (
        f'<span{t} style="{fam}display:inline-block;padding:0 6px;border:1px solid {BORDER};border-radius:4px;'
        f'font-size:11px;color:{MUTED};white-space:nowrap">{esc(text)}</span>'
    )


def stat(label: str, value: str, *, sub: str = "", color: str | None = None) -> str:
    """A figure tile: small label above a large value (value is HTML)."""
    c = f"color:{color};" if color else ""
    sub_html = f'<span style="font-size:11px;color:{FAINT};margin-left:4px">{sub}</span>' if sub else ""
    return (
        f'<div style="padding:2px 14px 2px 0;margin-right:4px;min-width:72px">'
        f'<div style="font-size:10.5px;letter-spacing:.05em;text-transform:uppercase;color:{FAINT}">{esc(label)}</div>'
        f'<div style="font-size:16px;font-weight:600;{c}white-space:nowrap">{value}{sub_html}</div></div>'
    )


def legend(items: Iterable[tuple[str, str]], *, dashed: Sequence[str] = ()) -> str:
    """A one-line legend of (name HTML, colour) swatches."""
    parts = []
    for name, color in items:
        if name in dashed:
            sw = f'<span style="display:inline-block;width:14px;border-top:2px dashed {color};vertical-align:middle;margin-right:5px"></span>'
        else:
            sw = f'<span style="display:inline-block;width:10px;height:10px;border-radius:2px;background:{color};vertical-align:middle;margin-right:5px"></span>'
        parts.append(f'<span style="white-space:nowrap;margin-right:12px">{sw}{name}</span>')
    return f'<div style="font-size:11px;color:{MUTED};margin:0 0 3px 0">{"".join(parts)}</div>'


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    align: str = "",
    row_styles: Sequence[str] | None = None,
) -> str:
    """A compact table. Cells are HTML; ``align`` holds one letter per column (``l``/``r``/``c``)."""
    al = {"l": "left", "r": "right", "c": "center"}
    aligns = [al.get(align[i] if i < len(align) else "l", "left") for i in range(len(headers))]
    th = "".join(
        f'<th style="text-align:{a};font-weight:500;font-size:11px;color:{FAINT};padding:3px 10px 4px 0;'
        f'border:none;border-bottom:1px solid {BORDER};white-space:nowrap">{esc(h)}</th>'
        for h, a in zip(headers, aligns)
    )
    body = []
    for i, cells in enumerate(rows):
        rs = row_styles[i] if row_styles and i < len(row_styles) else ""
        tds = "".join(
            f'<td style="text-align:{a};padding:4px 10px 4px 0;border:none;border-bottom:1px solid {BORDER};vertical-align:middle;white-space:nowrap;max-width:none">{c}</td>'
            for c, a in zip(cells, aligns)
        )
        body.append(f'<tr style="{_TR};{rs}">{tds}</tr>')
    return (
        f'<table style="{_TABLE};width:auto;min-width:60%;font-size:12.5px">'
        f'<thead><tr style="{_TR}">{th}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def progress_html(frac: float, label: str, *, description: str = "", color: str = ACCENT, width: int = 260) -> str:
    """A static progress bar: description, bar, label on one line."""
    frac = max(0.0, min(1.0, frac))
    desc = f'<b style="margin-right:8px">{esc(description)}</b>' if description else ""
    return root(
        f'<div style="display:flex;align-items:center;gap:0">{desc}'
        f'<div style="width:{width}px;height:10px;border-radius:5px;background:{TRACK};flex:none;overflow:hidden">'
        f'<div style="width:{frac * 100:.1f}%;height:100%;background:{color}"></div></div>'
        f'<span style="margin-left:8px">{esc(label)}</span></div>'
    )


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
) -> str:
    """A horizontal bar of (label, seconds, colour) segments on a common ``scale`` (seconds for full width).

    ``pending`` is an unfinished phase (label, seconds so far), drawn hatched at the end.
    Segments wide enough carry their seconds; each has a tooltip.
    """
    scale = scale if scale > 0 else 1.0
    x = 0.0
    parts = [f'<rect x="0" y="0" width="{width}" height="{height}" rx="3" fill="{TRACK}"/>']
    items = [(label, secs, color, False) for label, secs, color in segments]
    if pending is not None:
        items.append((pending[0], pending[1], "#94a3b8", True))
    for label, secs, color, is_pending in items:
        w = max(0.0, secs / scale * width)
        if w <= 0:
            continue
        tip = f"{label}: {fmt_seconds(secs)}" + (" so far" if is_pending else "")
        fill = f'fill="{color}"' if not is_pending else f'fill="{rgba("#94a3b8", 0.35)}" stroke="#94a3b8" stroke-dasharray="3 2"'
        parts.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" {fill}><title>{esc(tip)}</title></rect>')
        label_text = fmt_seconds(secs)
        if w >= 7 * len(label_text) + 6:
            tcol = "#fff" if not is_pending else MUTED
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


def _frame(t0: float, t1: float, ymax: float, width: int, height: int, fmt: Callable[[float], str]) -> tuple[str, Callable[[float], float], Callable[[float], float]]:
    """Axes, grid and labels; returns (svg body, x(t), y(v))."""
    left, right, top, bottom = 40, 6, 6, 16
    pw, ph = width - left - right, height - top - bottom
    span = max(t1 - t0, 1e-9)

    def x(t: float) -> float:
        return left + (t - t0) / span * pw

    def y(v: float) -> float:
        return top + ph - (v / ymax) * ph if ymax > 0 else top + ph

    parts = []
    for frac in (0.0, 0.5, 1.0):
        yy = top + ph - frac * ph
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="{TRACK}" stroke-width="1"/>')
        parts.append(
            f'<text x="{left - 5}" y="{yy + 3.5:.1f}" text-anchor="end" font-size="9.5" fill="currentColor" '
            f'style="color:{FAINT}">{esc(fmt(ymax * frac))}</text>'
        )
    for t, label in _time_ticks(t0, t1):
        xx = x(t)
        anchor = "end" if t == t1 else "middle"
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
    fmt: Callable[[float], str] = fmt_num,
    ymax: float | None = None,
) -> str:
    """Lines over time (``t0``–``t1``, seconds) on a shared y axis from 0."""
    top = max((v for s in series for _, v in s.points), default=0.0)
    ymax = _nice_max(max(top, ymax or 0.0) * 1.05)
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
) -> str:
    """A stacked step-area chart: ``layers`` of (name, colour, value per sample), bottom first.

    Each sample holds until the next one; the last holds until ``t1``.
    """
    totals = [sum(layer[2][i] for layer in layers) for i in range(len(times))]
    ymax = float(max(max(totals, default=0), 1))
    ymax = float(math.ceil(ymax)) if ymax <= 4 else _nice_max(ymax)
    frame, x, y = _frame(t0, t1, ymax, width, height, lambda v: f"{v:g}")
    parts = [frame]
    # Clip samples to the window: the one before t0 starts at t0.
    idx = [i for i in range(len(times)) if times[i] >= t0]
    first = max(0, (idx[0] - 1) if idx else len(times) - 1)
    keep = list(range(first, len(times)))
    if not keep:
        return f'<div style="color:{FAINT}">{_svg(width, height, frame)}</div>'
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
            f'<polygon points="{" ".join(up + down)}" fill="{rgba(color, 0.75)}" stroke="{color}" stroke-width="0.8">'
            f"<title>{esc(name)}</title></polygon>"
        )
        base = top
    return f'<div style="color:{FAINT}">{_svg(width, height, "".join(parts))}</div>'


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


# --- text helpers ----------------------------------------------------------------------------

_BLOCKS = " ▁▂▃▄▅▆▇█"


def text_sparkline(values: Sequence[float], vmax: float | None = None) -> str:
    """``▁▃▅▇█`` bars for plain-text views."""
    if not values:
        return ""
    top = vmax if vmax and vmax > 0 else max(values) or 1.0
    return "".join(_BLOCKS[max(1, min(8, round(v / top * 8)))] for v in values)


def text_bar(frac: float, width: int = 20) -> str:
    frac = max(0.0, min(1.0, frac))
    full = int(frac * width)
    return "█" * full + ("▌" if frac * width - full >= 0.5 else "") + "·" * (width - full - (1 if frac * width - full >= 0.5 else 0))


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, align: str = "", indent: str = "  ") -> str:
    """Columns padded to their widest cell."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, c in enumerate(cells):
            a = align[i] if i < len(align) else "l"
            out.append(c.rjust(widths[i]) if a == "r" else c.ljust(widths[i]))
        return (indent + "  ".join(out)).rstrip()

    return "\n".join([line(headers)] + [line(r) for r in rows])


# --- environment -----------------------------------------------------------------------------


def widget_frontend(shell: Any = None) -> bool:
    """True inside a Jupyter kernel (ipykernel) where ipywidgets can be shown; False in a terminal.

    ``shell`` is the IPython shell to ask about (default: the running one, if any)."""
    if shell is None:
        ipython_mod = sys.modules.get("IPython")
        if ipython_mod is None:
            return False
        try:
            shell = ipython_mod.get_ipython()
        except Exception:
            return False
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True
