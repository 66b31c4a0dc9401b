"""The dashboard's panels as HTML: header, workers, errors, cold starts, benchmarks, autoscaling, decisions."""

from __future__ import annotations

import collections
import time
from typing import Sequence

from ..events import DeploymentSnapshot, WorkerSnapshot, WorkerState
from . import _charts as svg
from . import _html as h

__all__ = ["MAX_DECISIONS", "MAX_POINTS", "WINDOW", "Sample", "render_html", "sections_html"]

WINDOW = 300.0  # seconds of history the charts show
MAX_DECISIONS = 6
MAX_POINTS = 600  # history samples drawn at most; more are thinned

Sample = tuple[float, float, float, float, float, "float | None"]  # t, load, capacity, target_util, queue, target_queue


# --- choosing what to show -------------------------------------------------------------------


def view_time(snapshot: DeploymentSnapshot, now: float | None) -> float:
    if now is not None:
        return now
    return snapshot.time or time.time()


def visible_workers(snapshot: DeploymentSnapshot, max_stopped: int) -> tuple[list[WorkerSnapshot], int]:
    """Live workers first (oldest first), then the most recent stopped or failed ones; and how many were left out."""
    alive = sorted((w for w in snapshot.workers if w.state.alive), key=lambda w: (w.started_at, w.id))
    dead = sorted(
        (w for w in snapshot.workers if not w.state.alive),
        key=lambda w: (w.stopped_at or w.started_at, w.id),
        reverse=True,
    )
    kept = dead[:max_stopped]
    return alive + sorted(kept, key=lambda w: (w.started_at, w.id)), len(dead) - len(kept)


def error_line(error: str) -> str:
    """The last non-empty line of a traceback: usually ``Type: message``."""
    lines = [ln.strip() for ln in error.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "error"


def _phase_colors(workers: Sequence[WorkerSnapshot]) -> dict[str, str]:
    colors: dict[str, str] = {}
    for w in workers:
        for name, _ in w.phases:
            if name not in colors:
                colors[name] = h.PHASE_COLORS[len(colors) % len(h.PHASE_COLORS)]
    return colors


def pending_phase(w: WorkerSnapshot, now: float) -> tuple[str, float] | None:
    """For a starting worker: its current state and the seconds spent since the last finished phase."""
    if not w.state.starting:
        return None
    elapsed = w.uptime(now) - sum(s for _, s in w.phases)
    return (w.state.value, elapsed) if elapsed > 0.05 else None


def _gpu_model(gpu: str | None) -> str:
    """``"RTX_4090 #0"`` → ``"RTX_4090"``; ``None`` → ``"CPU"``."""
    return gpu.split(" #")[0] if gpu else "CPU"


# States whose GPU time Vast bills (its pricing page: Ready and Loading; Creating and Inactive bill storage only).
_BILLED = (WorkerState.READY, WorkerState.BUSY, WorkerState.LOADING, WorkerState.BENCHMARKING, WorkerState.DRAINING)


def cost_per_hour(snapshot: DeploymentSnapshot) -> float | None:
    """GPU cost per hour of the billed workers; None when none has a price, or one of them lacks it (unknown)."""
    billed = [w.price_per_hour for w in snapshot.workers if w.state in _BILLED]
    if not any(p is not None for p in billed) or any(p is None for p in billed):
        return None
    return sum(p for p in billed if p is not None)


def cost_text(snapshot: DeploymentSnapshot) -> str | None:
    """``$0.84/h``; ``unknown`` on Vast when a billed worker came without a price; None where nothing is priced."""
    cost = cost_per_hour(snapshot)
    if cost is not None:
        return h.fmt_money(cost)
    if snapshot.backend == "vast" and any(w.state in _BILLED for w in snapshot.workers):
        return "unknown"
    return None


def state_counts(snapshot: DeploymentSnapshot) -> dict[str, int]:
    counts: dict[str, int] = collections.Counter(w.state.value for w in snapshot.workers)
    return {s.value: counts[s.value] for s in WorkerState if counts.get(s.value)}


def serving_capacity(snapshot: DeploymentSnapshot) -> float:
    if snapshot.autoscaler.capacity:
        return snapshot.autoscaler.capacity
    return sum(w.perf_score or 0.0 for w in snapshot.workers if w.state.serving)


# --- HTML sections ---------------------------------------------------------------------------


def header_html(snapshot: DeploymentSnapshot) -> str:
    """Name, backend, state and the headline figures."""
    a = snapshot.autoscaler
    counts = state_counts(snapshot)
    alive = sum(1 for w in snapshot.workers if w.state.alive)
    serving = sum(1 for w in snapshot.workers if w.state.serving)
    capacity = serving_capacity(snapshot)
    state_color = h.DEPLOYMENT_STATE_COLORS.get(snapshot.state, "#94a3b8")
    title = (
        f'<div style="display:flex;align-items:center;gap:8px;flex-wrap:wrap;margin-bottom:6px">'
        f'<span style="font-size:15px;font-weight:650">{h.esc(snapshot.name)}</span>'
        f"{h.chip(snapshot.backend)}{h.pill(snapshot.state, state_color)}"
        + (h.chip(h.short_hash(snapshot.code_version), mono=True, title=f"code {snapshot.code_version}") if snapshot.code_version else "")
        + '<span style="flex:1"></span>'
        + "".join(
            f'<span style="white-space:nowrap;font-size:11.5px;color:{h.MUTED};margin-left:6px">'
            f"{h.dot(h.STATE_COLORS.get(s, '#999'), 7)}{n} {h.esc(s)}</span>"
            for s, n in counts.items()
            if s != WorkerState.STOPPED.value
        )
        + "</div>"
    )
    util = (a.load / capacity) if capacity else None
    target = f"target {a.target_workers}" + (f" · max {a.max_workers}" if a.max_workers else "")
    tiles = [
        h.stat("Workers", f"{serving}<span style='color:{h.FAINT};font-weight:400'>/{alive}</span>", sub=target),
        h.stat("Capacity", h.fmt_rate(capacity) if capacity else "–"),
        h.stat("Load", h.fmt_rate(a.load), sub=f"{util:.0%} used" if util is not None else ""),
        h.stat(
            "Queue",
            h.fmt_seconds(a.queue_time),
            sub=f"target {h.fmt_seconds(a.target_queue_time)}" if a.target_queue_time is not None else "",
            color=h.DANGER if a.target_queue_time and a.queue_time > a.target_queue_time else None,
        ),
        h.stat("Calls", h.fmt_count(sum(w.calls_done for w in snapshot.workers))),
    ]
    cost = cost_text(snapshot)
    if cost is not None:
        tiles.append(h.stat("Cost", cost))
    return title + f'<div style="display:flex;flex-wrap:wrap">{"".join(tiles)}</div>'


def workers_html(snapshot: DeploymentSnapshot, now: float | None = None, max_stopped: int = 5) -> str:
    """The workers table, one row per worker."""
    t = view_time(snapshot, now)
    workers, hidden = visible_workers(snapshot, max_stopped)
    if not workers:
        return h.panel(h.empty("No workers yet."), title="Workers")
    rows, styles = [], []
    for w in workers:
        gpu = h.esc(w.gpu or "CPU")
        if w.gpu_memory_mb:
            gpu += f' <span style="color:{h.FAINT};font-size:11px">{h.fmt_gb(w.gpu_memory_mb)}</span>'
        code = h.esc(h.short_hash(w.code_version))
        if snapshot.code_version and w.code_version and w.code_version != snapshot.code_version:
            code = f'<span style="color:{h.DOWN}" title="runs older code; the deployment is at {h.esc(h.short_hash(snapshot.code_version))}">{code} ↻</span>'
        err = ""
        if w.error:
            line = error_line(w.error)
            err = (
                f'<span style="color:{h.DANGER};display:inline-block;max-width:230px;overflow:hidden;'
                f'text-overflow:ellipsis;vertical-align:bottom" title="{h.esc(line)}">{h.esc(line)}</span>'
            )
        pid = f"pid {w.pid}" if w.pid else ""
        rows.append(
            [
                f'<span style="font-weight:600" title="{h.esc(pid)}">{h.esc(w.id)}</span>',
                gpu,
                h.state_pill(w.state.value),
                f"<b>{h.fmt_rate(w.perf_score)}</b>" if w.perf_score is not None else f'<span style="color:{h.FAINT}">–</span>',
                h.fmt_num(w.load),
                h.fmt_count(w.queue),
                f'<span style="font-family:{h.MONO};font-size:11.5px">{code}</span>',
                h.fmt_uptime(w.uptime(t)),
                h.fmt_count(w.calls_done),
                err,
            ]
        )
        styles.append("" if w.state.alive else "opacity:.55")
    note = f"+{hidden} stopped earlier" if hidden else ""
    body = h.table(
        ["Worker", "GPU", "State", "Perf", "Load", "Queue", "Code", "Uptime", "Calls", "Last error"],
        rows,
        align="lllrrrlrrl",
        row_styles=styles,
    )
    return h.panel(body, title="Workers", note=h.esc(note))


def errors_html(snapshot: DeploymentSnapshot, max_stopped: int = 5) -> str:
    """Each failed worker's traceback, folded. Kept apart from the table so an opened one stays open while the table redraws."""
    workers, _ = visible_workers(snapshot, max_stopped)
    failed = [w for w in workers if w.error]
    if not failed:
        return ""
    items = []
    for w in failed:
        items.append(
            f'<details style="margin:2px 0"><summary style="cursor:pointer;color:{h.DANGER}">'
            f"<b>{h.esc(w.id)}</b> · {h.esc(error_line(w.error or ''))}</summary>"
            f'<pre style="font-family:{h.MONO};font-size:11.5px;line-height:1.4;max-height:260px;overflow:auto;'
            f"margin:4px 0 6px 0;padding:8px 10px;border-left:3px solid {h.DANGER};background:{h.rgba('#ef4444', 0.06)};"
            f'white-space:pre-wrap">{h.esc((w.error or "").rstrip())}</pre></details>'
        )
    return h.panel("".join(items), title="Errors")


def coldstart_html(snapshot: DeploymentSnapshot, now: float | None = None, max_stopped: int = 5) -> str:
    """Per worker, its cold-start phases as one stacked bar on a common time scale."""
    t = view_time(snapshot, now)
    workers, _ = visible_workers(snapshot, max_stopped)
    workers = [w for w in workers if w.phases or pending_phase(w, t)]
    if not workers:
        return h.panel(h.empty("No worker has started yet."), title="Cold start", min_width=360)
    colors = _phase_colors(workers)
    pend = {w.id: pending_phase(w, t) for w in workers}
    totals = {w.id: sum(s for _, s in w.phases) + (pend[w.id] or ("", 0.0))[1] for w in workers}
    scale = max(totals.values()) or 1.0
    rows = []
    for w in workers:
        bar = svg.stacked_hbar([(n, s, colors[n]) for n, s in w.phases], scale, width=220, pending=pend[w.id])
        total = h.fmt_seconds(totals[w.id])
        rows.append(
            f'<tr><td style="padding:3px 10px 3px 0;font-weight:600;white-space:nowrap">{h.esc(w.id)}</td>'
            f'<td style="padding:3px 8px 3px 0">{bar}</td>'
            f'<td style="padding:3px 0;text-align:right;white-space:nowrap;color:{h.MUTED}">'
            f"{'' if pend[w.id] is None else '≥ '}{total}</td></tr>"
        )
    legend = h.legend([(h.esc(n), c) for n, c in colors.items()])
    body = legend + h.simple_table(rows)
    return h.panel(body, title="Cold start", min_width=360)


def benchmarks_html(snapshot: DeploymentSnapshot, max_stopped: int = 5) -> str:
    """Each worker's benchmark runs as they complete, and its score (the best run)."""
    workers, _ = visible_workers(snapshot, max_stopped)
    workers = [w for w in workers if w.benchmark_runs or w.perf_score is not None or w.state is WorkerState.BENCHMARKING]
    if not workers:
        return h.panel(h.empty("No benchmark has run yet."), title="Benchmarks", min_width=360)
    top = max([v for w in workers for v in w.benchmark_runs] + [w.perf_score or 0.0 for w in workers] + [1e-9])
    rows = []
    for w in workers:
        runs = list(w.benchmark_runs)
        best = runs.index(max(runs)) if runs else None
        color = h.STATE_COLORS["benchmarking"] if w.state is WorkerState.BENCHMARKING else h.ACCENT
        spark = svg.spark_bars(runs, max(runs, default=0.0), color=color, highlight=best, width=80, height=18)
        if w.perf_score is not None:
            score = (
                f'<div style="display:flex;align-items:center;gap:8px">{svg.hbar(w.perf_score, top, h.STATE_COLORS["ready"], width=80, title=h.fmt_rate(w.perf_score))}'
                f"<b>{h.fmt_rate(w.perf_score)}</b></div>"
            )
        else:
            score = f'<span style="color:{h.FAINT}">running…</span>' if w.state is WorkerState.BENCHMARKING else ""
        rows.append(
            f'<tr><td style="padding:3px 10px 3px 0;font-weight:600;white-space:nowrap">{h.esc(w.id)}</td>'
            f'<td style="padding:3px 10px 3px 0;color:{h.MUTED};white-space:nowrap" title="{h.esc(w.gpu or "CPU")}">{h.esc(_gpu_model(w.gpu))}</td>'
            f'<td style="padding:3px 6px 3px 0">{spark}</td>'
            f'<td style="padding:3px 12px 3px 0;color:{h.FAINT};font-size:11px;white-space:nowrap">{len(runs)} run{"s" if len(runs) != 1 else ""}</td>'
            f'<td style="padding:3px 0">{score}</td></tr>'
        )
    return h.panel(h.simple_table(rows), title="Benchmarks", note="runs · score", min_width=360)


def _window(now: float, first: float | None) -> tuple[float, float]:
    start = now - WINDOW if first is None else max(now - WINDOW, first)
    return min(start, now - 10.0), now


def autoscaling_html(snapshot: DeploymentSnapshot, samples: Sequence[Sample] = (), now: float | None = None) -> str:
    """Load against capacity and target utilisation, queue time, workers by state over time, and the last decisions."""
    t = view_time(snapshot, now)
    a = snapshot.autoscaler
    capacity = serving_capacity(snapshot)
    target_load = capacity * a.target_util
    load_color, cap_color, tgt_color, q_color = h.ACCENT, "#94a3b8", "#16a34a", "#a855f7"
    over = capacity > 0 and a.load > target_load
    load_line = (
        f'<div style="margin-bottom:4px">load <b>{h.fmt_rate(a.load)}</b> of capacity <b>{h.fmt_rate(capacity)}</b>'
        f' <span style="color:{h.FAINT}">· target utilisation {a.target_util:.0%}</span></div>'
        + svg.gauge(a.load, capacity, color=h.DANGER if over else load_color, marker=target_load if capacity else None,
                  marker_label=f"target {h.fmt_rate(target_load)}", width=300)
    )
    q_target = a.target_queue_time
    queue_line = (
        f'<div style="margin:8px 0 4px 0">queue time <b>{h.fmt_seconds(a.queue_time)}</b>'
        + (f' <span style="color:{h.FAINT}">· target {h.fmt_seconds(q_target)}</span>' if q_target is not None else "")
        + "</div>"
        + svg.gauge(a.queue_time, max(a.queue_time, (q_target or 0.0) * 1.5, 1e-3), color=h.DANGER if q_target and a.queue_time > q_target else q_color,
                  marker=q_target, marker_label=f"target {h.fmt_seconds(q_target)}", width=300)
    )
    left = load_line + queue_line
    if len(samples) >= 2:
        t0, t1 = _window(t, samples[0][0])
        pts = [s for s in samples if s[0] >= t0]
        chart = svg.line_chart(
            [
                svg.Series("capacity", cap_color, [(s[0], s[2]) for s in pts]),
                svg.Series("target", tgt_color, [(s[0], s[2] * s[3]) for s in pts], dashed=True, width=1.4),
                svg.Series("load", load_color, [(s[0], s[1]) for s in pts], width=2.2),
            ],
            t0=t0, t1=t1, width=330, height=100, fmt=h.fmt_num,
        )
        qpts = [(s[0], s[4]) for s in pts]
        series = [svg.Series("queue time", q_color, qpts, width=2.0)]
        if any(s[5] is not None for s in pts):
            series.append(svg.Series("target", tgt_color, [(s[0], s[5] or 0.0) for s in pts if s[5] is not None], dashed=True, width=1.4))
        qchart = svg.line_chart(series, t0=t0, t1=t1, width=330, height=70, fmt=lambda v: h.fmt_seconds(v) if v else "0")
        left += (
            '<div style="margin-top:10px">'
            + h.legend([("load", load_color), ("capacity", cap_color), ("target util", tgt_color)], dashed=["target util"])
            + chart
            + '<div style="height:6px"></div>'
            + h.legend([("queue time", q_color), ("target", tgt_color)], dashed=["target"])
            + qchart
            + "</div>"
        )
    # worker count by state
    hist = [(ts, c) for ts, c in snapshot.history if ts >= t - WINDOW - 60]
    if len(hist) > MAX_POINTS:  # thin evenly, keeping the latest sample
        step = -(-len(hist) // MAX_POINTS)
        hist = hist[::-1][::step][::-1]
    if hist:
        t0, t1 = _window(t, hist[0][0])
        first = [WorkerState.READY, WorkerState.BUSY]
        order: list[WorkerState] = first + [s for s in WorkerState if s is not WorkerState.STOPPED and s not in first]
        present = [s for s in order if any(c.get(s.value) for _, c in hist)]
        layers = [(s.value, h.STATE_COLORS[s.value], [float(c.get(s.value, 0)) for _, c in hist]) for s in present]
        right = (
            h.legend([(s.value, h.STATE_COLORS[s.value]) for s in present])
            + svg.stacked_steps([ts for ts, _ in hist], layers, t0=t0, t1=t1, width=360, height=120)
        )
    else:
        right = h.empty("No history yet.")
    target = f'target {a.target_workers} worker{"s" if a.target_workers != 1 else ""}' + (f" · max {a.max_workers}" if a.max_workers else "")
    charts = h.row(
        h.panel(left, title="Load & capacity", min_width=330, sub=True),
        h.panel(right, title="Workers by state", note=f"last {h.fmt_seconds(WINDOW).replace(' 00s', '')}", min_width=360, sub=True),
    )
    return h.panel(charts + decisions_html(snapshot), title="Autoscaling", note=target)


def decisions_html(snapshot: DeploymentSnapshot) -> str:
    """The last autoscaler decisions, newest first, each with its reason."""
    decisions = list(snapshot.decisions[-MAX_DECISIONS:])[::-1]
    if not decisions:
        return h.panel(h.empty("No scaling decision yet."), title="Decisions", sub=True)
    rows = []
    for d in decisions:
        arrow, color = ("▲", h.UP) if d.target > d.current else ("▼", h.DOWN) if d.target < d.current else ("●", h.FAINT)
        clock = time.strftime("%H:%M:%S", time.localtime(d.time))
        rows.append(
            f'<tr><td style="padding:2px 12px 2px 0;color:{h.FAINT};white-space:nowrap">{clock}</td>'
            f'<td style="padding:2px 12px 2px 0;white-space:nowrap"><span style="color:{color}">{arrow}</span> '
            f"<b>{d.current} → {d.target}</b></td>"
            f'<td style="padding:2px 0">{h.esc(d.reason)}</td></tr>'
        )
    return h.panel(h.simple_table(rows), title="Decisions", sub=True)


def sections_html(snapshot: DeploymentSnapshot, samples: Sequence[Sample] = (), now: float | None = None, max_stopped: int = 5) -> dict[str, str]:
    """Every section's HTML by name, in display order (what the widget's children show)."""
    t = view_time(snapshot, now)
    return {
        "header": header_html(snapshot),
        "workers": workers_html(snapshot, now=t, max_stopped=max_stopped),
        "errors": errors_html(snapshot, max_stopped=max_stopped),
        "startup": h.row(coldstart_html(snapshot, now=t, max_stopped=max_stopped), benchmarks_html(snapshot, max_stopped=max_stopped)),
        "autoscaling": autoscaling_html(snapshot, samples, now=t),
    }


def render_html(snapshot: DeploymentSnapshot, *, samples: Sequence[Sample] = (), now: float | None = None, max_stopped: int = 5) -> str:
    """The whole dashboard as one self-contained HTML fragment (inline styles and SVG only)."""
    return h.root("".join(sections_html(snapshot, samples, now=now, max_stopped=max_stopped).values()))


