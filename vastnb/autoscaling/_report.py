"""Text tables, HTML tables and an inline SVG chart for simulation results (no JavaScript)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..events import WorkerState
from . import _format as fmt

if TYPE_CHECKING:
    from ._simulator import Comparison, SimulationResult, SimulationStep

_STARTING = {s.value for s in WorkerState if s.starting}
_SERVING = {s.value for s in WorkerState if s.serving}


def _serving(step: SimulationStep) -> int:
    return sum(n for state, n in step.workers.items() if state in _SERVING)


def _starting(step: SimulationStep) -> int:
    return sum(n for state, n in step.workers.items() if state in _STARTING)


def _headline(r: SimulationResult) -> str:
    return (
        f"{r.trace.name} · perf {fmt.rate(r.perf_score)} per worker · cold start {fmt.seconds(r.cold_start_s)}"
        f" · control every {fmt.seconds(r.control_period_s)}"
    )


def _figures(r: SimulationResult) -> str:
    parts = [
        f"peak {fmt.plural(r.peak_workers)}",
        f"{fmt.number(r.worker_seconds)} worker-s",
        f"max queue {fmt.seconds(r.max_queue_time)}",
        f"{len(r.decisions)} decisions",
    ]
    if r.trace.marks:
        ttc = r.time_to_capacity(r.trace.marks[0])
        parts.append(
            f"capacity {'never' if ttc is None else fmt.seconds(ttc)} after {fmt.seconds(r.trace.marks[0])}"
        )
    if r.backlog > 0:
        parts.append(f"backlog {fmt.number(r.backlog)} units at the end")
    return " · ".join(parts)


def _rows(r: SimulationResult, limit: int) -> list[SimulationStep]:
    """Every step whose target changed, filled up with evenly spaced steps: ``limit`` rows at most."""
    steps = r.timeline
    chosen = [i for i, s in enumerate(steps) if s.reason is not None][:limit]
    spaced = [round(k * (len(steps) - 1) / max(1, limit - 1)) for k in range(limit)] if steps else []
    taken = set(chosen)
    for i in spaced + list(range(len(steps))):
        if len(taken) >= limit:
            break
        taken.add(i)
    return [steps[i] for i in sorted(taken)]


def result_text(r: SimulationResult, limit: int = 30) -> str:
    header = f"{'t s':>7} {'load/s':>9} {'capacity/s':>10} {'queue s':>8} {'serving':>7} {'starting':>8} {'target':>6}  decision"
    lines = [_headline(r), _figures(r), header]
    for s in _rows(r, limit):
        lines.append(
            f"{fmt.number(s.time):>7} {fmt.number(s.load):>9} {fmt.number(s.capacity):>10} "
            f"{s.queue_time:>8.1f} {_serving(s):>7} {_starting(s):>8} {s.target:>6}  {s.reason or ''}".rstrip()
        )
    return "\n".join(lines)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="vastnb-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def result_html(r: SimulationResult) -> str:
    decisions = [
        (fmt.seconds(d.time), f"{d.current} → {d.target}", d.reason) for d in r.decisions[:50]
    ]
    return (
        '<div class="vastnb-simulation">'
        f"<p><b>{html.escape(_headline(r))}</b><br>{html.escape(_figures(r))}</p>"
        f"{svg_chart(r)}"
        f"{_table(['time', 'workers', 'decision'], decisions)}"
        "</div>"
    )


def svg_chart(r: SimulationResult, width: int = 640, height: int = 220) -> str:
    """Load and ready capacity (left axis, units/s) and alive workers (right axis) over time."""
    steps = r.timeline
    if not steps:
        return ""
    pad_l, pad_r, pad_t, pad_b = 56, 64, 18, 24
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    t_max = max(r.trace.duration_s, steps[-1].time, 1e-9)
    y_max = max(max(max(s.load, s.capacity) for s in steps), 1e-9) * 1.1
    n_max = max(max(sum(s.workers.values()) for s in steps), 1)
    stride = max(1, len(steps) // 600)
    sample = steps[::stride] + ([steps[-1]] if (len(steps) - 1) % stride else [])

    def x(t: float) -> float:
        return pad_l + w * t / t_max

    def line(values: list[tuple[float, float]], scale: float, color: str, dash: str = "") -> str:
        pts = " ".join(f"{x(t):.1f},{pad_t + h - h * v / scale:.1f}" for t, v in values)
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        return f'<polyline fill="none" stroke="{color}" stroke-width="1.5"{extra} points="{pts}"/>'

    workers: list[tuple[float, float]] = []
    for s in sample:
        n = float(sum(s.workers.values()))
        if workers:
            workers.append((s.time, workers[-1][1]))
        workers.append((s.time, n))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="10" font-family="sans-serif">',
        f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" fill="none" stroke="#ccc"/>',
        line([(s.time, s.load) for s in sample], y_max, "#1f77b4"),
        line([(s.time, s.capacity) for s in sample], y_max, "#ff7f0e"),
        line(workers, n_max * 1.1, "#555", "4 3"),
        f'<text x="{pad_l - 4}" y="{pad_t + 8}" text-anchor="end">{fmt.number(y_max / 1.1)}/s</text>',
        f'<text x="{pad_l - 4}" y="{pad_t + h}" text-anchor="end">0</text>',
        f'<text x="{pad_l + w + 4}" y="{pad_t + h - h / 1.1 + 4:.1f}">{fmt.plural(n_max)}</text>',
        f'<text x="{pad_l}" y="{height - 6}">0 s</text>',
        f'<text x="{pad_l + w}" y="{height - 6}" text-anchor="end">{fmt.seconds(t_max)}</text>',
        f'<text x="{pad_l + 8}" y="{pad_t - 5}" fill="#1f77b4">load</text>',
        f'<text x="{pad_l + 44}" y="{pad_t - 5}" fill="#ff7f0e">ready capacity</text>',
        f'<text x="{pad_l + 130}" y="{pad_t - 5}" fill="#555">workers (right axis)</text>',
        "</svg>",
    ]
    return "".join(parts)


def _comparison_cells(row: dict[str, Any]) -> list[str]:
    ttc = row["to capacity s"]
    return [
        str(row["settings"]),
        str(row["peak workers"]),
        fmt.number(row["worker-s"]),
        f"{row['max queue s']:.1f}",
        "–" if ttc is None else f"{ttc:.0f}",
        str(row["decisions"]),
        fmt.number(row["backlog"]),
    ]


_COMPARISON_HEADERS = ["settings", "peak workers", "worker-s", "max queue s", "to capacity s", "decisions", "backlog"]


def comparison_text(c: Comparison) -> str:
    cells = [_COMPARISON_HEADERS] + [_comparison_cells(row) for row in c.rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(_COMPARISON_HEADERS))]
    lines = [c.trace.name]
    for r in cells:
        lines.append("  ".join(v.ljust(wd) if i == 0 else v.rjust(wd) for i, (v, wd) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def comparison_html(c: Comparison) -> str:
    rows = [_comparison_cells(row) for row in c.rows]
    return f"<div><p><b>{html.escape(c.trace.name)}</b></p>{_table(_COMPARISON_HEADERS, rows)}</div>"
