"""The live deployment dashboard: workers, cold starts, benchmarks and autoscaling.

``Dashboard(source)`` draws any *source* (an object with ``.snapshot()``,
``.events`` and ``.name``; a :class:`vastnb.Deployment` is one)::

    dash = app.dashboard()        # or %vast_status
    dash                          # a live widget in JupyterLab, text in a terminal

The widget redraws from the source's events on its own thread, at most
``1 / min_interval`` times a second and always once after the last event, so
the kernel and the runtime's event thread never wait on it. Where no widget
frontend exists the same view is plain HTML (:func:`render_html`) or text
(:func:`render_text`).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Protocol

from ..events import DeploymentSnapshot, Event, EventBus, EventKind
from . import _html as h
from ._figures import error_groups, error_line, figures, stopped
from ._panels import (
    MAX_DECISIONS,
    WINDOW,
    Sample,
    benchmark_of,
    failed_phase,
    pending_phase,
    render_html,
    sections_html,
    state_counts,
    view_time,
    visible_workers,
)
from .progress import Throttle

if TYPE_CHECKING:
    import ipywidgets

__all__ = ["Dashboard", "Source", "render_html", "render_text"]

log = logging.getLogger("vastnb")

SAMPLE_EVERY = 0.5  # seconds between the load/capacity points the dashboard keeps


class Source(Protocol):
    """What a dashboard draws: a deployment, or anything shaped like one."""

    name: str
    events: EventBus

    def snapshot(self) -> DeploymentSnapshot: ...


# --- text ------------------------------------------------------------------------------------


def render_text(snapshot: DeploymentSnapshot, *, now: float | None = None, max_stopped: int = 5, note: str = "") -> str:
    """The dashboard as plain text, for terminals and logs; ``note`` (if any) heads it."""
    t = view_time(snapshot, now)
    f = figures(snapshot)
    counts = state_counts(snapshot)
    head = f"{snapshot.name} ({snapshot.backend}) · {snapshot.state}"
    if snapshot.code_version:
        head += f" · code {h.short_hash(snapshot.code_version)}"
    live = {s: n for s, n in counts.items() if s != "error"}
    parts = [f"{f.alive} worker{'s' if f.alive != 1 else ''}" + (": " + ", ".join(f"{n} {s}" for s, n in live.items()) if live else "")]
    if counts.get("error"):
        parts.append(f"{counts['error']} failed")
    parts.append(f"used {h.fmt_percent(f.used)}")
    if f.queued:
        parts.append(f"{h.fmt_count(f.queued)} queued")
    parts.append(f"calls {h.fmt_count(f.calls)}")
    if f.cost is not None or f.cost_unknown:
        parts.append(h.fmt_money(f.cost) if f.cost is not None else "cost unknown")
    out = ([f"[{note}]"] if note else []) + [head, "  " + " · ".join(parts)]
    if f.start_failures and f.start_error:
        out.append(f"  {'workers cannot start' if f.serving == 0 else 'a worker could not start'} "
                   f"({f.start_failures} failed start{'s' if f.start_failures != 1 else ''} in a row): {error_line(f.start_error)}")

    workers, hidden = visible_workers(snapshot, max_stopped)
    out.append("")
    out.append("Workers" + (f" (+{hidden} stopped earlier)" if hidden else ""))
    if workers:
        rows = []
        for w in workers:
            code = h.short_hash(w.code_version)
            if snapshot.code_version and w.code_version and w.code_version != snapshot.code_version:
                code += " (old)"
            err = error_line(w.error) if w.error else ""
            used = h.fmt_percent(w.busy_share) if w.state.serving else "–"
            rows.append([
                w.id, w.gpu or "CPU", w.state.value, h.fmt_rate(w.perf_score), used, h.fmt_count(w.queue),
                code, h.fmt_uptime(w.uptime(t)), h.fmt_count(w.calls_done), err[:60],
            ])
        out.append(h.text_table(["ID", "GPU", "STATE", "PERF", "USED", "CALLS IN", "CODE", "UPTIME", "CALLS", "LAST ERROR"], rows, align="lllrrrlrrl"))
    else:
        out.append("  no workers yet")

    groups = error_groups(snapshot)
    if groups:
        out += ["", "Errors"]
        for g in groups:
            who = ", ".join(g.workers[:3]) + (f" and {g.count - 3} more" if g.count > 3 else "")
            out.append(f"  {g.summary}" + (f" ×{g.count}" if g.count > 1 else "") + f" ({who}" + (f"; in {g.phase}" if g.phase else "") + ")")

    started = [w for w in workers if w.phases or pending_phase(w, t) or failed_phase(w)]
    if started:
        out += ["", "Cold start"]
        width = max(len(w.id) for w in started)
        for w in started:
            pend, failed = pending_phase(w, t), failed_phase(w)
            phases = [f"{n} {h.fmt_seconds(s)}" for n, s in w.phases]
            if pend:
                phases.append(f"{pend[0]} {h.fmt_seconds(pend[1])} so far")
            if failed:
                phases.append(f"{failed[0]} ✕ failed after {h.fmt_seconds(failed[1])}")
            total = sum(s for _, s in w.phases) + (pend[1] if pend else 0.0) + (failed[1] if failed else 0.0)
            out.append(f"  {w.id.ljust(width)}  {h.fmt_seconds(total).rjust(7)}  " + " · ".join(phases))

    benched = [w for w in workers if w.benchmark_runs or w.perf_score is not None]
    if benched:
        out += ["", "Benchmarks"]
        top = max([v for w in benched for v in w.benchmark_runs] + [w.perf_score or 0.0 for w in benched])
        width = max(len(w.id) for w in benched)
        for w in benched:
            score = f"score {h.fmt_rate(w.perf_score)}" if w.perf_score is not None else "running…"
            out.append(f"  {w.id.ljust(width)}  {h.text_sparkline(w.benchmark_runs, top).ljust(10)}  {len(w.benchmark_runs)} runs  {score}")

    a = snapshot.autoscaler
    out += ["", "Autoscaling"]
    out.append(f"  used {h.fmt_percent(f.used)} of the last {f.window:g} s (target {f.target_util:.0%}) · "
               + (f"{f.busy} of {f.serving} busy" if f.serving else "no worker serving") + f" · {h.fmt_count(f.queued)} queued")
    share = f" ({h.fmt_percent(f.load_share)})" if f.load_share is not None else ""
    out.append(f"  Vast's autoscaler sees load {h.fmt_rate(f.load)} of capacity {h.fmt_rate(f.capacity)}{share}, "
               f"in units of {benchmark_of(f)}")
    q = f"  queue time {h.fmt_seconds(f.queue_time)}"
    if f.target_queue_time is not None:
        q += f" (target {h.fmt_seconds(f.target_queue_time)})"
    out.append(q + f" · target {a.target_workers} worker{'s' if a.target_workers != 1 else ''}" + (f" of max {a.max_workers}" if a.max_workers else ""))
    for d in list(snapshot.decisions[-MAX_DECISIONS:])[::-1]:
        clock = time.strftime("%H:%M:%S", time.localtime(d.time))
        out.append(f"  {clock}  {d.current} → {d.target}  {d.reason}")
    return "\n".join(out)


# --- the live widget -------------------------------------------------------------------------


class Dashboard:
    """A live view of a deployment (or any source): a widget in Jupyter, HTML or text elsewhere.

    The widget is built on first use. From then on the dashboard listens to the
    source's events and redraws on its own thread: at most once per
    ``min_interval`` seconds, always once after the last event, and every
    ``tick`` seconds while the deployment runs (uptimes, charts).

    It follows the deployment only while the deployment is alive: once it shuts
    down (or :meth:`close` is called) the view freezes at its last live state
    with a note saying so, and that frozen view is what a saved notebook keeps.
    An earlier cell's output never turns into a later moment's "shut down".
    """

    def __init__(self, source: Source, *, min_interval: float = 0.1, tick: float = 1.0, max_stopped: int = 5,
                 rest: Callable[[float], object] | None = None) -> None:
        self.source = source
        self.min_interval = min_interval
        self.tick = tick
        self.max_stopped = max_stopped
        self.redraws = 0  # how many times the widget was redrawn (tests read it)
        self._rest = rest  # how the redraw thread rests between redraws (tests hold it there)
        self._widget: ipywidgets.VBox | None = None
        self._sections: dict[str, ipywidgets.HTML] = {}
        self._samples: collections.deque[Sample] = collections.deque(maxlen=4000)
        self._stopping = False
        self._closed = threading.Event()
        self._throttle: Throttle | None = None
        self._unsubscribe: Any = None
        self._render_lock = threading.Lock()
        self._displays: list[Any] = []
        self._live: DeploymentSnapshot | None = None  # the last snapshot drawn while the deployment was alive
        self._ended: DeploymentSnapshot | None = None  # the snapshot that ended following (shut down, or at close())
        self._note = ""  # why the view stopped following, once it did

    @property
    def name(self) -> str:
        return str(getattr(self.source, "name", ""))

    @property
    def closed(self) -> bool:
        """True after a ``SHUTDOWN`` event or :meth:`close`, once the final state is drawn."""
        return self._closed.is_set()

    @property
    def note(self) -> str:
        """Why the view no longer follows the deployment (``""`` while it does)."""
        return self._note

    # -- snapshots and static renderings --

    def snapshot(self) -> DeploymentSnapshot:
        return self.source.snapshot()

    def _record(self, snap: DeploymentSnapshot) -> None:
        t = snap.time or time.time()
        if self._samples and t <= self._samples[-1][0]:
            return
        f = figures(snap)
        sample = (t, f.load, f.capacity, f.target_util, f.queue_time, f.target_queue_time, f.used)
        if len(self._samples) >= 2 and t - self._samples[-2][0] < SAMPLE_EVERY:
            self._samples[-1] = sample  # at most one point per SAMPLE_EVERY seconds, holding the latest figures
        else:
            self._samples.append(sample)
        while self._samples and self._samples[0][0] < t - WINDOW - 60:
            self._samples.popleft()

    def samples(self) -> list[Sample]:
        """The points recorded so far (time, load, capacity, target_util, queue time, target queue time, used)."""
        with self._render_lock:
            return list(self._samples)

    def _shown(self) -> tuple[DeploymentSnapshot, str]:
        """What a static rendering shows: the frozen view once following ended, else the source now."""
        if self._note and self._live is not None:
            return self._live, self._note
        return self.snapshot(), ""

    def to_html(self) -> str:
        """The current state as self-contained HTML (the frozen view, with its note, once following ended)."""
        snap, note = self._shown()
        return render_html(snap, samples=self.samples(), max_stopped=self.max_stopped, note=note)

    def to_text(self) -> str:
        """The current state as plain text."""
        snap, note = self._shown()
        return render_text(snap, max_stopped=self.max_stopped, note=note)

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        try:
            return self.to_text()
        except Exception as exc:  # repr must not raise
            return f"<Dashboard {self.name!r}: snapshot failed: {exc!r}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """Widget view (inside a kernel) plus ``text/html`` and ``text/plain``, so saved notebooks and terminals show it too.

        Displayed anew, a dashboard shows this moment: after a shutdown, the stopped deployment."""
        snap = self.snapshot()
        data: dict[str, Any] = {
            "text/plain": render_text(snap, max_stopped=self.max_stopped),
            "text/html": render_html(snap, samples=self.samples() if not stopped(snap) else (), max_stopped=self.max_stopped),
        }
        if h.widget_frontend() and (not self.closed or self._restarted(snap)):
            view = self.widget._repr_mimebundle_()
            key = "application/vnd.jupyter.widget-view+json"
            if view and key in view:
                data[key] = view[key]
        return data

    def _ipython_display_(self) -> None:
        """Display the bundle under a display id, so the final redraw can swap the live widget for static HTML."""
        from IPython.display import display

        handle = display(self._repr_mimebundle_(), raw=True, display_id=True)
        if handle is not None and not self.closed and h.widget_frontend():
            self._displays.append(handle)

    # -- the widget --

    @property
    def widget(self) -> ipywidgets.VBox:
        """The live ipywidgets view, built on first use; starts listening to the source.

        After a shutdown the old view stays as it was; if the source runs again
        (a restarted deployment), a new live view is built.
        """
        if self._widget is not None and self.closed and self._restarted(self.snapshot()):
            self._widget, self._throttle, self._stopping = None, None, False
            self._live, self._ended, self._note = None, None, ""
            self._samples.clear()
            self._closed.clear()
        if self._widget is None:
            import ipywidgets as w

            names = ["header", "workers", "errors", "startup", "autoscaling"]
            self._sections = {n: w.HTML(layout=w.Layout(width="100%", margin="0")) for n in names}
            self._widget = w.VBox(list(self._sections.values()), layout=w.Layout(width="100%", padding="4px 2px"))
            self._widget.add_class("vastnb-dashboard")
            self._redraw()
            if not self._stopping and not self._note:
                self._throttle = Throttle(
                    self._redraw, self.min_interval, name=f"vastnb-dashboard-{self.name}", tick=self._tick,
                    final=self._finish, rest=self._rest,
                )
                self._unsubscribe = self.source.events.subscribe(self._on_event)
                self._throttle.start()
            else:
                self._closed.set()
        return self._widget

    def _restarted(self, snap: DeploymentSnapshot) -> bool:
        """Following ended because the source shut down, and the source runs again."""
        return self._ended is not None and stopped(self._ended) and not stopped(snap)

    def _tick(self) -> float | None:
        live = self._live is not None and not self._note and self._live.state in ("starting", "running", "failing")
        return self.tick if live else None

    def _on_event(self, event: Event) -> None:
        # Runs on the publisher's thread: flag and return.
        if event.kind is EventKind.LOG or self._throttle is None:
            return
        if event.kind is EventKind.SHUTDOWN:
            self._stopping = True
            self._throttle.stop(wait=False)
        else:
            self._throttle.poke()

    def refresh(self) -> None:
        """Ask for a redraw (it happens on the dashboard's thread)."""
        if self._throttle is not None:
            self._throttle.poke()

    def close(self, timeout: float = 5.0) -> None:
        """Stop listening and freeze the view at its last live state (with a note); end the dashboard's thread."""
        self._stopping = True
        if self._throttle is not None:
            self._throttle.stop(timeout)
        elif not self.closed:
            self._finish()

    def _finish(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._widget is not None:
            self._redraw(final=True)
        self._closed.set()
        for handle in self._displays:
            try:  # a finished dashboard becomes static HTML (its frozen view), which survives saving the notebook
                handle.update({"text/plain": self.to_text(), "text/html": self.to_html()}, raw=True)
            except Exception:
                log.debug("could not update a dashboard display", exc_info=True)
        self._displays.clear()

    def _freeze(self, snap: DeploymentSnapshot) -> None:
        """Stop following: keep the last live state and say why (under the render lock)."""
        self._ended = snap
        asof = time.strftime("%H:%M:%S", time.localtime((self._live or snap).time or time.time()))
        end = time.strftime("%H:%M:%S", time.localtime(snap.time or time.time()))
        if snap.state == "shut down":
            why = f"the deployment shut down at {end}"
        elif snap.state == "shutting down":
            why = f"the deployment began shutting down at {end}"
        else:
            why = f"this view was closed at {end}"
        self._note = f"Figures as of {asof}: {why}; this view no longer updates."

    def _redraw(self, final: bool = False) -> None:
        with self._render_lock:
            if self._note:  # frozen: nothing changes any more
                return
            try:
                snap = self.snapshot()
            except Exception:
                log.exception("dashboard: snapshot() failed")
                return
            if stopped(snap) and self._live is not None:
                self._freeze(snap)
                self._draw(self._live)
                return
            self._live = snap
            self._record(snap)
            if final:
                self._freeze(snap)
            self._draw(snap)

    def _draw(self, snap: DeploymentSnapshot) -> None:
        sections = sections_html(snap, list(self._samples), max_stopped=self.max_stopped, note=self._note)
        for name, value in sections.items():
            widget = self._sections.get(name)
            if widget is None:
                continue
            html = h.fluid(h.root(value)) if value else ""
            if widget.value != html:
                widget.value = html
            widget.layout.display = None if value else "none"
        self.redraws += 1
