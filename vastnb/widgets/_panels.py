"""The dashboard's panels as HTML: header, workers, errors, cold starts, benchmarks, autoscaling, decisions."""

from __future__ import annotations

import collections
import time
from typing import Sequence

from ..events import DeploymentSnapshot, WorkerSnapshot, WorkerState
from . import _charts as svg
from . import _html as h
from ._figures import Figures, error_groups, error_line, failures, figures, live_history, stopped

__all__ = ["MAX_DECISIONS", "MAX_POINTS", "WINDOW", "Sample", "render_html", "sections_html"]

WINDOW = 300.0  # seconds of history the charts show
MAX_DECISIONS = 6
MAX_POINTS = 600  # history samples drawn at most; more are thinned

# t, load, capacity, target_util, queue time, target queue time, used (None: not known)
Sample = tuple[float, float, float, float, float, "float | None", "float | None"]


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


def state_counts(snapshot: DeploymentSnapshot) -> dict[str, int]:
    """Workers per state, in the state model's order; stopped ones left out."""
    counts: dict[str, int] = collections.Counter(w.state.value for w in snapshot.workers)
    return {s.value: counts[s.value] for s in WorkerState if counts.get(s.value) and s is not WorkerState.STOPPED}


def benchmark_of(f: Figures) -> str:
    """``"square()'s benchmark"``, or ``"the benchmark"`` when the snapshot does not say whose."""
    return f"{f.benchmark_function}()'s benchmark" if f.benchmark_function else "the benchmark"


# --- HTML sections ---------------------------------------------------------------------------


def header_html(snapshot: DeploymentSnapshot, note: str = "") -> str:
    """Name, backend, state and the headline figures; ``note`` says why the view stopped following (plain text)."""
    f = figures(snapshot)
    counts = state_counts(snapshot)
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
        )
        + "</div>"
    )
    if note:
        title = (f'<div class="vastnb-frozen" style="margin:0 0 6px 0;padding:3px 8px;border-radius:4px;font-size:11.5px;'
                 f'color:{h.MUTED};background:{h.rgba("#64748b", 0.1)}"><b>Not live</b> · {h.esc(note)}</div>') + title
    target = f"target {snapshot.autoscaler.target_workers}"
    target += f" · max {snapshot.autoscaler.max_workers}" if snapshot.autoscaler.max_workers else ""
    if f.serving == 0 and not stopped(snapshot):
        used_sub = "no worker serving"
    elif f.used is None:
        used_sub = "not known"
    else:
        used_sub = f"{f.busy} busy"
    used_sub += f" · {h.fmt_count(f.queued)} queued" if f.queued else ""
    tiles = [
        h.stat("Workers", f"{f.serving}<span style='color:{h.FAINT};font-weight:400'>/{f.alive}</span>", sub=target,
               title="serving / alive"),
        h.stat("Used", h.fmt_percent(f.used), sub=used_sub, cls="vastnb-used",
               title=f"share of the last {f.window:g} s the serving workers spent running calls"),
        h.stat(
            "Queue",
            h.fmt_seconds(f.queue_time),
            sub=f"target {h.fmt_seconds(f.target_queue_time)}" if f.target_queue_time is not None else "",
            color=h.ERROR_TEXT if f.target_queue_time and f.queue_time > f.target_queue_time else None,
        ),
        h.stat("Load", h.fmt_rate(f.load), sub=f"{h.fmt_percent(f.load_share)} of capacity" if f.load_share is not None else "",
               title="what Vast's autoscaler sees: workload units per second"),
        h.stat("Capacity", h.fmt_rate(f.capacity) if f.capacity else "–", sub=f"{benchmark_of(f)}" if f.capacity else "",
               title="serving workers' benchmark scores, in workload units per second"),
        h.stat("Calls", h.fmt_count(f.calls)),
    ]
    if f.cost is not None or f.cost_unknown:
        tiles.append(h.stat("Cost", h.fmt_money(f.cost) if f.cost is not None else "unknown",
                            title="GPU cost per hour of the billed workers, at the prices Vast reports"))
    out = title + f'<div style="display:flex;flex-wrap:wrap">{"".join(tiles)}</div>'
    if f.start_failures and f.start_error:
        n = f.start_failures
        out += (
            f'<div class="vastnb-start-error" style="margin:6px 0 0 0;padding:5px 9px;border-left:3px solid {h.DANGER};'
            f'background:{h.rgba("#ef4444", 0.08)};color:{h.TEXT}"><b style="color:{h.ERROR_TEXT}">'
            f"{'Workers cannot start' if f.serving == 0 else 'A worker could not start'}</b>"
            f' <span style="color:{h.MUTED}">({n} failed start{"s" if n != 1 else ""} in a row)</span>: '
            f'<span style="font-family:{h.MONO};font-size:11.5px">{h.esc(error_line(f.start_error))}</span></div>'
        )
    return out


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
            err = f'<span style="color:{h.ERROR_TEXT}" title="{h.esc(line)}">{h.esc(line)}</span>'
        calls = h.fmt_count(w.calls_done)
        if w.queue:
            calls += (f' <span style="color:{h.FAINT}" title="{w.queue} in flight: {h.fmt_num(w.load)} workload units">'
                      f"+{h.fmt_count(w.queue)}</span>")
        pid = f"pid {w.pid}" if w.pid else ""
        rows.append(
            [
                f'<span style="font-weight:600" title="{h.esc(pid)}">{h.esc(w.id)}</span>',
                gpu,
                h.state_pill(w.state.value),
                f"<b>{h.fmt_rate(w.perf_score)}</b>" if w.perf_score is not None else f'<span style="color:{h.FAINT}">–</span>',
                _busy_cell(w),
                calls,
                f'<span style="font-family:{h.MONO};font-size:11.5px">{code}</span>',
                h.fmt_uptime(w.uptime(t)),
                err,
            ]
        )
        styles.append("opacity:.55" if w.state is WorkerState.STOPPED else "")
    note = f"+{hidden} stopped earlier" if hidden else ""
    body = h.table(
        ["Worker", "GPU", "State", "Perf", "Used", "Calls", "Code", "Uptime", "Last error"],
        rows,
        align="lllrrrlrl",
        row_styles=styles,
        fill=8,
    )
    return h.panel(body, title="Workers", note=h.esc(note))


def _busy_cell(w: WorkerSnapshot) -> str:
    if not w.state.serving and w.state is not WorkerState.DRAINING:
        return f'<span style="color:{h.FAINT}">–</span>'
    if w.busy_share is None:
        return f'<span style="color:{h.FAINT}" title="not known">–</span>'
    return h.fmt_percent(w.busy_share)


def errors_html(snapshot: DeploymentSnapshot) -> str:
    """Each distinct failure once (how many workers, which, in which phase), its traceback folded.

    Kept apart from the table so an opened one stays open while the table redraws."""
    groups = error_groups(snapshot)
    if not groups:
        return ""
    items = []
    for g in groups:
        who = ", ".join(g.workers[:3]) + (f" and {g.count - 3} more" if g.count > 3 else "")
        where = f" · in {h.esc(g.phase)}" if g.phase else ""
        count = f'<span style="color:{h.MUTED}"> ×{g.count}</span>' if g.count > 1 else ""
        items.append(
            f'<details style="margin:2px 0"><summary style="cursor:pointer">'
            f'<span style="color:{h.ERROR_TEXT}">{h.esc(g.summary)}</span>{count}'
            f'<span style="color:{h.MUTED}"> · {h.esc(who)}{where}</span></summary>'
            f'<pre style="font-family:{h.MONO};font-size:11.5px;line-height:1.4;max-height:260px;overflow:auto;'
            f"margin:4px 0 6px 0;padding:8px 10px;border-left:3px solid {h.DANGER};background:{h.rgba('#ef4444', 0.06)};"
            f'white-space:pre-wrap">{h.esc(g.text)}</pre></details>'
        )
    return h.panel("".join(items), title="Errors")


def failed_phase(w: WorkerSnapshot) -> tuple[str, float] | None:
    """For a worker that failed while starting: the phase it failed in and the seconds spent in it."""
    if w.state is not WorkerState.ERROR or (w.failed_phase is None and w.ready_at is not None):
        return None
    spent = max(0.0, w.uptime() - sum(s for _, s in w.phases)) if w.stopped_at is not None else 0.0
    return (w.failed_phase or "start", spent)


def coldstart_html(snapshot: DeploymentSnapshot, now: float | None = None, max_stopped: int = 5) -> str:
    """Per worker, its cold-start phases as one stacked bar on a common time scale; a failed phase in red."""
    t = view_time(snapshot, now)
    workers, _ = visible_workers(snapshot, max_stopped)
    workers = [w for w in workers if w.phases or pending_phase(w, t) or failed_phase(w)]
    if not workers:
        return h.panel(h.empty("No worker has started yet."), title="Cold start", min_width=360)
    colors = _phase_colors(workers)
    pend = {w.id: pending_phase(w, t) for w in workers}
    fail = {w.id: failed_phase(w) for w in workers}
    totals = {w.id: sum(s for _, s in w.phases) + (pend[w.id] or ("", 0.0))[1] + (fail[w.id] or ("", 0.0))[1] for w in workers}
    scale = max(totals.values()) or 1.0
    rows = []
    for w in workers:
        bar = svg.stacked_hbar([(n, s, colors[n]) for n, s in w.phases], scale, width=220, pending=pend[w.id], failed=fail[w.id])
        total = h.fmt_seconds(totals[w.id])
        failed = fail[w.id]
        end = (f'<span style="color:{h.ERROR_TEXT}">✕ {h.esc(failed[0])}</span> · {total}' if failed
               else f"{'' if pend[w.id] is None else '≥ '}{total}")
        rows.append(
            f'<tr><td style="padding:3px 10px 3px 0;font-weight:600;white-space:nowrap">{h.esc(w.id)}</td>'
            f'<td style="padding:3px 8px 3px 0">{bar}</td>'
            f'<td style="padding:3px 0;text-align:right;white-space:nowrap;color:{h.MUTED}">{end}</td></tr>'
        )
    legend = h.legend([(h.esc(n), c) for n, c in colors.items()] + ([("failed", h.DANGER)] if any(fail.values()) else []))
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
                f'<div style="display:flex;flex-wrap:wrap;align-items:center;gap:0 8px">{svg.hbar(w.perf_score, top, h.STATE_COLORS["ready"], width=80, title=h.fmt_rate(w.perf_score))}'
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


def _thin(hist: list[tuple[float, dict[str, int]]]) -> list[tuple[float, dict[str, int]]]:
    if len(hist) > MAX_POINTS:  # thin evenly, keeping the latest sample
        step = -(-len(hist) // MAX_POINTS)
        hist = hist[::-1][::step][::-1]
    return hist


def utilisation_html(f: Figures, pts: Sequence[Sample], t0: float, t1: float) -> str:
    """How busy the workers are (the share of recent time running calls) and the calls waiting."""
    target = f.target_util
    color = h.DANGER if f.used is not None and f.used > target else h.ACCENT
    head = (
        f'<div style="margin-bottom:4px">used <b class="vastnb-used-share">{h.fmt_percent(f.used)}</b>'
        f' <span style="color:{h.FAINT}">of the last {f.window:g} s · target {target:.0%}</span>'
        + (f" · <b>{f.busy}</b> of {f.serving} busy" if f.serving else " · no worker serving")
        + f" · <b>{h.fmt_count(f.queued)}</b> queued</div>"
        + svg.gauge(f.used or 0.0, 1.0, color=color, marker=target, marker_label=f"target {target:.0%}", width=300)
    )
    known = [(s[0], s[6]) for s in pts if s[6] is not None]
    if len(known) >= 2:
        head += (
            '<div style="margin-top:10px">' + h.legend([("used", h.ACCENT), ("target", "#16a34a")], dashed=["target"])
            + svg.line_chart([svg.Series("target", "#16a34a", [(s[0], s[3]) for s in pts], dashed=True, width=1.4),
                              svg.Series("used", h.ACCENT, known, width=2.2)],
                             t0=t0, t1=t1, width=330, height=90, fmt=lambda v: f"{v:.0%}", fixed_max=1.0)
            + "</div>"
        )
    queue = (
        f'<div style="margin:10px 0 4px 0">queue time <b>{h.fmt_seconds(f.queue_time)}</b>'
        + (f' <span style="color:{h.FAINT}">· target {h.fmt_seconds(f.target_queue_time)}</span>' if f.target_queue_time is not None else "")
        + "</div>"
    )
    if len(pts) >= 2:
        series = [svg.Series("queue time", "#a855f7", [(s[0], s[4]) for s in pts], width=2.0)]
        if any(s[5] is not None for s in pts):
            series.append(svg.Series("target", "#16a34a", [(s[0], s[5] or 0.0) for s in pts if s[5] is not None], dashed=True, width=1.4))
        queue += svg.line_chart(series, t0=t0, t1=t1, width=330, height=70, fmt=lambda v: h.fmt_seconds(v) if v else "0 s")
    return h.panel(head + queue, title="Utilisation", min_width=330, sub=True)


def vast_view_html(f: Figures, pts: Sequence[Sample], t0: float, t1: float) -> str:
    """Load against capacity in workload units per second: what Vast's autoscaler scales on."""
    target_load = f.capacity * f.target_util
    over = f.capacity > 0 and f.load > target_load
    body = (
        f'<div style="margin-bottom:4px">load <b>{h.fmt_rate(f.load)}</b> of capacity <b>{h.fmt_rate(f.capacity)}</b>'
        + (f" ({h.fmt_percent(f.load_share)})" if f.load_share is not None else "")
        + f' <span style="color:{h.FAINT}">· target {f.target_util:.0%}</span></div>'
        + svg.gauge(f.load, f.capacity, color=h.DANGER if over else "#64748b", marker=target_load if f.capacity else None,
                    marker_label=f"target {h.fmt_rate(target_load)}", width=300)
    )
    note = f"Workload units per second from {benchmark_of(f)}."
    if f.units_disagree:
        note += f" The calls running now are not {f.benchmark_function}(): they weigh differently, so this differs from Used."
    body += f'<div class="vastnb-units-note" style="font-size:11px;color:{h.FAINT};margin-top:3px;max-width:330px">{h.esc(note)}</div>'
    if len(pts) >= 2:
        body += (
            '<div style="margin-top:8px">'
            + h.legend([("load", h.ACCENT), ("capacity", "#94a3b8"), ("target", "#16a34a")], dashed=["target"])
            + svg.line_chart(
                [svg.Series("capacity", "#94a3b8", [(s[0], s[2]) for s in pts]),
                 svg.Series("target", "#16a34a", [(s[0], s[2] * s[3]) for s in pts], dashed=True, width=1.4),
                 svg.Series("load", h.ACCENT, [(s[0], s[1]) for s in pts], width=2.2)],
                t0=t0, t1=t1, width=330, height=90, fmt=lambda v: f"{h.fmt_axis(v)}/s" if v else "0")
            + "</div>"
        )
    return h.panel(body, title="Vast autoscaler's view", min_width=330, sub=True)


def autoscaling_html(snapshot: DeploymentSnapshot, samples: Sequence[Sample] = (), now: float | None = None) -> str:
    """Used share, the autoscaler's load against capacity, queue time, live workers by state, and the last decisions.

    Every chart spans the same window, so side by side they line up."""
    t = view_time(snapshot, now)
    f = figures(snapshot)
    hist = _thin([(ts, c) for ts, c in live_history(snapshot) if ts >= t - WINDOW - 60])
    firsts = [x for x in (samples[0][0] if samples else None, hist[0][0] if hist else None) if x is not None]
    t0, t1 = _window(t, min(firsts) if firsts else None)
    pts = [s for s in samples if s[0] >= t0]
    if hist:
        first = [WorkerState.READY, WorkerState.BUSY]
        order: list[WorkerState] = first + [s for s in WorkerState if s.alive and s not in first]
        present = [s for s in order if any(c.get(s.value) for _, c in hist)]
        layers = [(s.value, h.STATE_COLORS[s.value], [float(c.get(s.value, 0)) for _, c in hist]) for s in present]
        marks = failures(snapshot, t0)
        right = (
            h.legend([(s.value, h.STATE_COLORS[s.value]) for s in present] + ([("▲ failed", h.DANGER)] if marks else []))
            + svg.stacked_steps([ts for ts, _ in hist], layers, t0=t0, t1=t1, width=360, height=120, marks=marks)
        )
    else:
        right = h.empty("No history yet.")
    a = snapshot.autoscaler
    target = f'target {a.target_workers} worker{"s" if a.target_workers != 1 else ""}' + (f" · max {a.max_workers}" if a.max_workers else "")
    charts = h.row(
        utilisation_html(f, pts, t0, t1),
        vast_view_html(f, pts, t0, t1),
        h.panel(right, title="Workers by state", note="live workers", min_width=360, sub=True),
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


def sections_html(snapshot: DeploymentSnapshot, samples: Sequence[Sample] = (), now: float | None = None, max_stopped: int = 5,
                  note: str = "") -> dict[str, str]:
    """Every section's HTML by name, in display order (what the widget's children show)."""
    t = view_time(snapshot, now)
    return {
        "header": header_html(snapshot, note=note),
        "workers": workers_html(snapshot, now=t, max_stopped=max_stopped),
        "errors": errors_html(snapshot),
        "startup": h.row(coldstart_html(snapshot, now=t, max_stopped=max_stopped), benchmarks_html(snapshot, max_stopped=max_stopped)),
        "autoscaling": autoscaling_html(snapshot, samples, now=t),
    }


def render_html(snapshot: DeploymentSnapshot, *, samples: Sequence[Sample] = (), now: float | None = None, max_stopped: int = 5,
                note: str = "") -> str:
    """The whole dashboard as one self-contained HTML fragment (inline styles and SVG only)."""
    return h.root("".join(sections_html(snapshot, samples, now=now, max_stopped=max_stopped, note=note).values()))
