"""The dashboard: its renderings of a scripted deployment, and the live widget's redraw behaviour."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from vastnb.events import DeploymentSnapshot, EventKind, WorkerSnapshot, WorkerState
from vastnb.widgets import Dashboard, dashboard, render_html, render_text

from .conftest import wait_until
from .scripted import ScriptedSource, play_demo


def played() -> ScriptedSource:
    src = ScriptedSource("demo")
    play_demo(src, step=0.0)
    return src


def test_text_shows_workers_states_scores_and_decisions() -> None:
    text = render_text(played().snapshot())
    lines = text.splitlines()
    assert lines[0] == "demo (local) · running · code 8c1d2e3"
    assert lines[1] == "  3 workers: 1 loading, 1 ready, 1 busy · 1 failed · used 47% · 4 queued · calls 1,571 · $2.97/h"
    w0 = next(line for line in lines if line.startswith("  w-0 "))
    assert w0.split()[:6] == ["w-0", "RTX_4090", "#0", "ready", "1,840/s", "12%"]
    assert "3f9a1c0 (old)" in w0 and "1,260" in w0
    w1 = next(line for line in lines if line.startswith("  w-1 "))
    assert w1.split()[:9] == ["w-1", "H100_SXM", "#1", "busy", "5,611/s", "82%", "1", "8c1d2e3", "1m"]
    w2 = next(line for line in lines if line.startswith("  w-2 "))
    assert "error" in w2 and "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB" in w2
    assert "  RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (w-2; in context Model)" in lines
    assert "  w-0   26.3 s  process start 1.4 s · installs 8.2 s · context Model 12.6 s · benchmark 4.1 s" in lines
    assert "  w-2   10.0 s  process start 1.3 s · installs 500 ms · context Model ✕ failed after 8.2 s" in lines
    assert any(line.startswith("  w-1  ") and "10 runs  score 5,611/s" in line for line in lines)
    assert "  used 47% of the last 10 s (target 90%) · 1 of 2 busy · 4 queued" in lines
    assert "  Vast's autoscaler sees load 980/s of capacity 7,451/s (13%), in units of predict()'s benchmark" in lines
    assert "  queue time 80.0 ms (target 2.0 s) · target 2 workers of max 4" in lines
    decisions = [line for line in lines if " → " in line]
    assert [d.split("  ")[2] for d in decisions] == ["2 → 2", "1 → 3", "0 → 1"]  # newest first
    assert decisions[1].endswith("load 1,702/s is 93% of capacity 1,840/s, above target_util 90%")


def test_html_shows_every_section() -> None:
    html = render_html(played().snapshot())
    for expected in (
        ">demo<", ">running<", "Workers", "RTX_4090 #0", "H100_SXM #1", "1,840/s", "5,611/s", ">busy<", ">error<",
        "Errors", "<details", "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB", "Cold start",
        "context Model: 12.6 s", "context Model: 8.2 s — failed here", "Benchmarks", "run 3: 1,840/s", "Autoscaling",
        "Utilisation", "Vast autoscaler&#x27;s view", "Workers by state", "<polygon", "1 → 3", "above target_util 90%",
        "$2.97/h", "runs older code", ">47%<", "1 busy · 4 queued", "predict()&#x27;s benchmark",
    ):
        assert expected in html, expected
    assert "<script" not in html and "<style" not in html  # inline styles and SVG only


def test_html_escapes_what_workers_report() -> None:
    src = ScriptedSource("<b>name</b>")
    src.worker("<img src=x onerror=alert(1)>", state=WorkerState.ERROR, error="ValueError: <script>alert(1)</script>")
    src.decide(0, 1, "because <b>")
    html = render_html(src.snapshot())
    assert "<img" not in html and "<script>" not in html and "because <b>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "ValueError: &lt;script&gt;" in html


def test_empty_deployment() -> None:
    snap = DeploymentSnapshot(name="empty", backend="local", state="declared")
    html = render_html(snap)
    assert "No workers yet." in html and "No scaling decision yet." in html and "No history yet." in html
    assert render_text(snap).splitlines()[:5] == [
        "empty (local) · declared", "  0 workers · used – · calls 0", "", "Workers", "  no workers yet",
    ]


def test_stopped_workers_are_capped_and_counted() -> None:
    now = 1000.0
    workers = [WorkerSnapshot(id=f"old-{i}", state=WorkerState.STOPPED, started_at=i, stopped_at=100 + i) for i in range(8)]
    workers.append(WorkerSnapshot(id="live", state=WorkerState.READY, started_at=500.0, perf_score=10.0))
    snap = DeploymentSnapshot(name="d", backend="local", state="running", workers=tuple(workers), time=now)
    text = render_text(snap, max_stopped=3)
    assert "Workers (+5 stopped earlier)" in text
    table = text.split("Workers (+5 stopped earlier)\n")[1].split("\n\n")[0].splitlines()[1:]
    shown = [line.split()[0] for line in table]
    assert shown == ["live", "old-5", "old-6", "old-7"]
    assert "+5 stopped earlier" in render_html(snap, max_stopped=3)


def test_starting_worker_shows_its_unfinished_phase() -> None:
    w = WorkerSnapshot(id="w", state=WorkerState.LOADING, started_at=100.0, phases=(("process start", 2.0),))
    snap = DeploymentSnapshot(name="d", backend="local", state="starting", workers=(w,), time=110.0)
    assert "  w   10.0 s  process start 2.0 s · loading 8.0 s so far" in render_text(snap).splitlines()
    assert "loading: 8.0 s so far" in render_html(snap)


def test_widget_coalesces_events_into_one_redraw(source: ScriptedSource) -> None:
    """Any number of events while a redraw runs (or while the thread rests) make one more redraw, not one each."""
    rests: list[float] = []
    resting, release = threading.Event(), threading.Event()

    def rest(interval: float) -> None:  # the thread rests here after each redraw until the test lets it go
        rests.append(interval)
        resting.set()
        release.wait(10)
        release.clear()

    dash = Dashboard(source, min_interval=0.1, tick=3600, rest=rest)
    widget = dash.widget
    assert dash.redraws == 1  # drawn once when built
    assert len(widget.children) == 5
    source.worker("w-0", state=WorkerState.BUSY, calls_done=0, gpu="RTX_4090 #0")
    wait_until(resting.is_set, what="the first redraw")
    assert dash.redraws == 2
    resting.clear()
    for i in range(1000):  # while it rests
        source.worker("w-0", calls_done=i + 1)
    release.set()
    wait_until(resting.is_set, what="the trailing redraw")
    assert dash.redraws == 3  # a thousand events, one redraw
    assert "1,000" in dash._sections["workers"].value and ">busy<" in dash._sections["workers"].value
    assert rests == [0.1, 0.1]  # each redraw is followed by the rate limit's rest
    release.set()
    assert dash._throttle is not None
    wait_until(lambda: dash._throttle is not None and dash._throttle.settled, what="the thread to wait for events")
    assert dash.redraws == 3
    dash.close()


def test_publisher_never_waits_for_a_slow_snapshot(source: ScriptedSource) -> None:
    armed, release, entered, returned = (threading.Event() for _ in range(4))
    original = source.snapshot

    def snapshot() -> DeploymentSnapshot:
        if armed.is_set():  # a redraw from here on blocks until the test releases it
            entered.set()
            release.wait(10)
            returned.set()
        return original()

    source.snapshot = snapshot  # type: ignore[method-assign]
    dash = Dashboard(source)
    dash.widget
    armed.set()
    for i in range(50):
        source.worker("w-0", calls_done=i)
    wait_until(entered.is_set, what="a redraw taking its snapshot")
    # had publishing waited for that snapshot, it would have returned (after its 10 s) before this line
    assert not returned.is_set()
    release.set()
    dash.close()


def test_shutdown_freezes_the_last_live_state_with_a_note(source: ScriptedSource) -> None:
    """An earlier cell's dashboard keeps what it said about its moment; it never turns into "shut down"."""
    play_demo(source, step=0.0)
    dash = Dashboard(source)
    dash.widget
    assert len(source.events._subscribers) == 1
    source.shutdown()
    wait_until(lambda: dash.closed, what="the dashboard to close")
    assert source.events._subscribers == []
    header = dash._sections["header"].value
    assert ">running<" in header and ">shut down<" not in header
    assert "this view no longer updates." in header and "the deployment shut down at " in header
    assert dash.note.startswith("Figures as of ") and dash.note.endswith("this view no longer updates.")
    assert "busy" in dash._sections["workers"].value and ">47%<" in header
    assert dash.to_text().startswith(f"[{dash.note}]\ndemo (local) · running")
    redraws = dash.redraws
    source.worker("w-9")  # nothing listens any more: no redraw
    assert dash.redraws == redraws and dash._throttle is not None and dash._throttle.stopped.is_set()


def test_the_freeze_starts_when_shutting_down_begins(source: ScriptedSource) -> None:
    play_demo(source, step=0.0)
    dash = Dashboard(source, tick=3600)
    dash.widget
    source.deployment(state="shutting down")
    wait_until(lambda: bool(dash.note), what="the view to freeze")
    assert "the deployment began shutting down at " in dash.note
    assert ">running<" in dash._sections["header"].value
    source.shutdown()
    wait_until(lambda: dash.closed, what="the dashboard to close")
    assert ">running<" in dash._sections["header"].value


def test_displayed_after_shutdown_it_shows_that_moment(source: ScriptedSource) -> None:
    play_demo(source, step=0.0)
    dash = Dashboard(source)
    dash.widget
    source.shutdown()
    wait_until(lambda: dash.closed, what="the dashboard to close")
    bundle = dash._repr_mimebundle_()  # %vast_status again, in a later cell
    assert bundle["text/plain"].startswith("demo (local) · shut down · code 8c1d2e3\n  0 workers · 1 failed · used 0% · calls 1,571")
    assert ">shut down<" in bundle["text/html"] and "no longer updates" not in bundle["text/html"]


def test_close_freezes_too(source: ScriptedSource) -> None:
    source.deployment(state="running")
    dash = Dashboard(source)
    dash.widget
    dash.close()
    assert dash.closed and "this view was closed at " in dash.note
    assert "this view was closed at " in dash._sections["header"].value


def test_ticks_refresh_uptime_while_running(source: ScriptedSource) -> None:
    source.state = "running"
    source.worker("w-0", state=WorkerState.READY)
    dash = Dashboard(source, tick=0.05)
    dash.widget
    before = dash.redraws
    wait_until(lambda: dash.redraws >= before + 2, what="two ticks without any event")
    dash.close()
    assert dash.closed


def test_no_ticks_once_the_deployment_is_not_running(source: ScriptedSource) -> None:
    dash = Dashboard(source, tick=0.05)
    source.state = "declared"
    dash.widget
    assert dash._tick() is None
    source.deployment(state="running")
    wait_until(lambda: dash._tick() == 0.05, what="ticks to start")
    dash.close()


def test_errors_section_is_hidden_without_errors(source: ScriptedSource) -> None:
    source.worker("w-0", state=WorkerState.READY)
    dash = Dashboard(source)
    dash.widget
    assert dash._sections["errors"].layout.display == "none"
    source.worker("w-0", state=WorkerState.ERROR, error="Traceback ...\nKeyError: 'x'")
    wait_until(lambda: dash._sections["errors"].layout.display is None, what="the errors section")
    assert "KeyError: &#x27;x&#x27;" in dash._sections["errors"].value
    dash.close()


def test_text_and_html_fallbacks(source: ScriptedSource) -> None:
    play_demo(source, step=0.0)
    dash = Dashboard(source)
    assert repr(dash) == dash.to_text() == render_text(source.snapshot(), now=None)[: len(dash.to_text())]
    assert dash._repr_html_().startswith('<div class="vastnb-view"')
    bundle = dash._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}  # no kernel: no widget view
    assert bundle["text/plain"].startswith("demo (local) · running")
    assert dash._throttle is None  # nothing started without a widget


def test_mimebundle_has_the_widget_view_in_a_kernel(source: ScriptedSource, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard.h, "widget_frontend", lambda: True)
    dash = Dashboard(source)
    bundle = dash._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html", "application/vnd.jupyter.widget-view+json"}
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == dash.widget.model_id
    dash.close()
    assert set(dash._repr_mimebundle_()) == {"text/plain", "text/html"}  # a closed dashboard is static


def test_log_events_do_not_redraw(source: ScriptedSource) -> None:
    from vastnb.events import Event

    dash = Dashboard(source, tick=3600)
    dash.widget
    throttle = dash._throttle
    assert throttle is not None
    wait_until(lambda: throttle.settled, what="the thread to wait for events")
    before = dash.redraws
    for _ in range(20):
        source.events.publish(Event(EventKind.LOG, time.time(), data={"line": "hello"}))
    assert not throttle.pending and throttle.settled  # publishing is synchronous: nothing asked for a redraw
    assert dash.redraws == before
    dash.close()


def test_long_histories_stay_small() -> None:
    now = 10_000.0
    history = tuple((now - 300 + i * 0.05, {"ready": 1 + i % 3}) for i in range(6000))
    snap = DeploymentSnapshot(name="d", backend="local", state="running", history=history, time=now)
    samples = [(now - 300 + i * 0.1, 10.0, 20.0, 0.9, 0.1, None, 0.5) for i in range(3000)]
    html = render_html(snap, samples=samples)
    assert len(html) < 400_000
    assert html.count("<polygon") >= 1


def test_the_dashboard_keeps_at_most_two_points_a_second() -> None:
    clock = [1000.0]
    src = ScriptedSource(clock=lambda: clock[0])
    dash = Dashboard(src)
    for i in range(30):  # 30 snapshots 0.02 s apart: 0.6 s
        src.autoscale(load=float(i))
        dash._record(src.snapshot())
        clock[0] += 0.02
    assert [round(s[0] - 1000.0, 2) for s in dash.samples()] == [0.0, 0.5, 0.58]
    assert dash.samples()[-1][1] == 29.0  # the latest figures are kept
    dash._record(dataclasses.replace(src.snapshot(), time=1000.0))  # an older snapshot adds nothing
    assert len(dash.samples()) == 3


def test_a_restarted_deployment_gets_a_new_live_view(source: ScriptedSource) -> None:
    dash = Dashboard(source)
    first = dash.widget
    source.shutdown()
    wait_until(lambda: dash.closed, what="the dashboard to close")
    assert dash.widget is first  # still shut down: the final view stays
    source.state = "running"
    second = dash.widget
    assert second is not first and not dash.closed
    source.worker("w-7", state=WorkerState.READY)
    wait_until(lambda: "w-7" in dash._sections["workers"].value, what="the new view to follow the source")
    assert "w-7" not in first.children[1].value
    dash.close()
