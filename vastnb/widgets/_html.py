"""Shared HTML pieces for vastnb's views: number formats, colours, tables, pills (the SVG charts are in ``_charts``).

Everything here returns strings with inline styles only (no ``<style>`` blocks,
no scripts), so the same markup works inside an ipywidgets ``HTML`` widget, in a
saved notebook's ``text/html`` output and in exported HTML. Colours read the
JupyterLab theme variables where there are some, with light-theme fallbacks.
"""

from __future__ import annotations

import html
import math
import sys
from typing import Any, Iterable, Sequence

__all__ = [
    "DEPLOYMENT_STATE_COLORS",
    "MUTED",
    "PHASE_COLORS",
    "STATE_COLORS",
    "TEXT",
    "esc",
    "fmt_axis",
    "fmt_count",
    "fmt_gb",
    "fmt_money",
    "fmt_num",
    "fmt_percent",
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
    "inactive": "#94a3b8",  # loaded, out of routing (Vast's cold workers)
    "draining": "#64748b",
    "stopped": "#b6bfcb",
    "error": "#ef4444",
}

DEPLOYMENT_STATE_COLORS: dict[str, str] = {
    "declared": "#94a3b8",
    "starting": "#3b82f6",
    "running": "#22c55e",
    "failing": "#ef4444",
    "shutting down": "#64748b",
    "shut down": "#64748b",
}

PHASE_COLORS = ("#6366f1", "#0ea5e9", "#14b8a6", "#84cc16", "#f59e0b", "#ec4899", "#a855f7", "#64748b")

UP = "#16a34a"
DOWN = "#d97706"
ACCENT = "#3b82f6"
DANGER = "#dc2626"  # fills (bars, gauges); text uses ERROR_TEXT, which stays readable on a dark theme
ERROR_TEXT = "var(--jp-error-color1, #dc2626)"


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


def fmt_axis(x: float) -> str:
    """An axis label: short, one style for every size (``0``, ``950``, ``1.5k``, ``100k``, ``17.3M``)."""
    a = abs(x)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}" if a else "0"


def fmt_percent(share: float | None) -> str:
    """A share as a whole percentage (``87%``); ``–`` when it is not known (never ``0%``)."""
    if share is None or (isinstance(share, float) and math.isnan(share)):
        return "–"
    return f"{max(0.0, share):.0%}"


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


def fmt_per_dollar(perf: float, dph: float) -> str:
    """Workload units per dollar, from units per second and dollars per hour."""
    units = perf * 3600 / dph
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if units >= div:
            return f"{units / div:.3g}{suffix}"
    return f"{units:.3g}"


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

    mw = f"min-width:min(100%, {min_width}px);flex:1 1 {min_width}px;" if min_width else ""  # narrower outputs: the panel shrinks
    return f'<div style="{mw}margin:10px 0 4px 0">{head}{body}</div>'


def row(*panels: str, gap: int = 28) -> str:
    """Panels side by side, wrapping on narrow outputs."""
    return f'<div style="display:flex;flex-wrap:wrap;gap:0 {gap}px;align-items:flex-start">{"".join(panels)}</div>'


def root(body: str) -> str:
    """The outer wrapper every view sits in: theme font, tabular digits, theme colour."""
    return (
        f'<div class="vastnb-view" style="font-family:{FONT};font-size:12.5px;line-height:1.45;color:{TEXT};'
        f'font-variant-numeric:tabular-nums;white-space:normal;max-width:1100px;overflow-x:auto;padding-right:4px;box-sizing:border-box">{body}</div>'
    )


def fluid(body: str) -> str:
    """``body`` for an ipywidgets ``HTML`` value: as wide as the output, never wider.

    The widget's content box is a flex item as wide as its content's widest unbreakable piece (a table, a
    code line); inline-size containment makes it take the output's width, so what is wider scrolls inside
    its own box instead of pushing the whole view sideways. (Only for widgets: in a shrink-to-fit box it
    would collapse, so static HTML outputs do without it.)"""
    return f'<div style="contain:inline-size">{body}</div>'


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


def stat(label: str, value: str, *, sub: str = "", color: str | None = None, title: str = "", cls: str = "") -> str:
    """A figure tile: small label above a large value (value is HTML); ``title`` explains it on hover."""
    c = f"color:{color};" if color else ""
    sub_html = f'<span style="font-size:11px;color:{FAINT};margin-left:4px">{sub}</span>' if sub else ""
    t = f' title="{esc(title)}"' if title else ""
    k = f' class="{esc(cls)}"' if cls else ""
    return (
        f'<div{k}{t} style="padding:2px 14px 2px 0;margin-right:4px;min-width:72px">'
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
    fill: int | None = None,
) -> str:
    """A compact table. Cells are HTML; ``align`` holds one letter per column (``l``/``r``/``c``).

    Column ``fill`` (if given) takes the width the others leave and cuts its text short with an ellipsis,
    so the table fits a narrow output; a table that cannot fit scrolls inside its own box."""
    al = {"l": "left", "r": "right", "c": "center"}
    aligns = [al.get(align[i] if i < len(align) else "l", "left") for i in range(len(headers))]
    th = "".join(
        f'<th style="text-align:{a};font-weight:500;font-size:11px;color:{FAINT};padding:3px 10px 4px 0;'
        f'border:none;border-bottom:1px solid {BORDER};white-space:nowrap">{esc(h)}</th>'
        for h, a in zip(headers, aligns)
    )
    filler = "max-width:0;width:100%;overflow:hidden;text-overflow:ellipsis"
    body = []
    for i, cells in enumerate(rows):
        rs = row_styles[i] if row_styles and i < len(row_styles) else ""
        tds = "".join(
            f'<td style="text-align:{a};padding:4px 10px 4px 0;border:none;border-bottom:1px solid {BORDER};vertical-align:middle;'
            f'white-space:nowrap;{filler if j == fill else "max-width:none"}">{c}</td>'
            for j, (c, a) in enumerate(zip(cells, aligns))
        )
        body.append(f'<tr style="{_TR};{rs}">{tds}</tr>')
    width = "width:100%" if fill is not None else "width:auto;min-width:min(60%, 100%)"
    return (
        f'<div style="overflow-x:auto;max-width:100%"><table style="{_TABLE};{width};font-size:12.5px">'
        f'<thead><tr style="{_TR}">{th}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
    )


def progress_html(frac: float, label: str, *, description: str = "", color: str = ACCENT, width: int = 260) -> str:
    """A static progress bar: description, bar, label on one line."""
    frac = max(0.0, min(1.0, frac))
    desc = f'<b style="margin-right:8px">{esc(description)}</b>' if description else ""
    return root(
        f'<div style="display:flex;flex-wrap:wrap;align-items:center;gap:2px 0">{desc}'
        f'<div style="width:{width}px;height:10px;border-radius:5px;background:{TRACK};flex:none;overflow:hidden">'
        f'<div style="width:{frac * 100:.1f}%;height:100%;background:{color}"></div></div>'
        f'<span style="margin-left:8px">{esc(label)}</span></div>'
    )


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
