"""Every number the dashboard shows, computed from snapshots alone (no widget, no thread)."""

from __future__ import annotations

import dataclasses

import pytest

from vastnb.events import BUSY_WINDOW_S, AutoscalerSnapshot, DeploymentSnapshot, WorkerSnapshot, WorkerState
from vastnb.widgets import render_html, render_text
from vastnb.widgets._figures import error_groups, failures, figures, live_history

from .scripted import MISSING, ScriptedSource, play_failing

READY, BUSY, LOADING, ERROR, STOPPED = (WorkerState.READY, WorkerState.BUSY, WorkerState.LOADING, WorkerState.ERROR,
                                        WorkerState.STOPPED)


def worker(wid: str, state: WorkerState, **kw: object) -> WorkerSnapshot:
    return WorkerSnapshot(id=wid, state=state, started_at=kw.pop("started_at", 100.0), **kw)  # type: ignore[arg-type]


def snap(*workers: WorkerSnapshot, state: str = "running", load: float = 0.0, capacity: float = 0.0, **kw: object) -> DeploymentSnapshot:
    return DeploymentSnapshot(name="d", backend="local", state=state, workers=workers,
                              autoscaler=AutoscalerSnapshot(load=load, capacity=capacity, target_util=0.9), time=200.0, **kw)  # type: ignore[arg-type]


# --- used: the share of recent time the serving workers ran calls ----------------------------------


def test_used_is_the_mean_busy_share_of_serving_workers_whatever_the_benchmark_says() -> None:
    """The issue's map: both workers busy on slow(), 2,000 queued, capacity from square()'s benchmark (17.3M/s)."""
    s = snap(worker("w1", BUSY, busy_share=0.96, perf_score=8.65e6), worker("w2", BUSY, busy_share=0.92, perf_score=8.65e6),
             load=40_000.0, capacity=17.3e6, queued=2000, benchmark_function="square")
    f = figures(s)
    assert f.used == pytest.approx(0.94)
    assert (f.busy, f.serving, f.queued) == (2, 2, 2000)
    assert f.load_share == pytest.approx(40_000 / 17.3e6)
    assert f.units_disagree  # 94 % used against 0 % of Vast's capacity: say why
    assert "used 94% of the last 10 s (target 90%) · 2 of 2 busy · 2,000 queued" in render_text(s)
    assert ("Vast's autoscaler sees load 40,000/s of capacity 17.3M/s (0%), in units of square()'s benchmark"
            in render_text(s))
    html = render_html(s)
    assert ">94%<" in html and "2 busy · 2,000 queued" in html
    assert "The calls running now are not square(): they weigh differently, so this differs from Used." in html


def test_used_decays_with_the_workers_busy_share() -> None:
    s = snap(worker("w1", READY, busy_share=0.0), worker("w2", READY, busy_share=0.004), load=0.0, capacity=10.0)
    assert figures(s).used == pytest.approx(0.002)
    assert "used 0% of the last 10 s" in render_text(s)
    assert ">0%<" in render_html(s)


def test_used_counts_serving_workers_only() -> None:
    s = snap(worker("w1", BUSY, busy_share=1.0), worker("w2", LOADING), worker("w3", STOPPED, busy_share=0.0))
    assert figures(s).used == 1.0


@pytest.mark.parametrize("workers", [
    (worker("w1", READY), worker("w2", BUSY)),  # the backend does not report it
    (),
])
def test_used_not_known_is_never_drawn_as_zero(workers: tuple[WorkerSnapshot, ...]) -> None:
    s = snap(*workers)
    assert figures(s).used is None
    assert "used – of the last" in render_text(s) and "used 0%" not in render_text(s)
    assert ">0%<" not in render_html(s)


def test_a_worker_without_a_busy_share_is_left_out_of_the_mean() -> None:
    assert figures(snap(worker("w1", BUSY, busy_share=0.8), worker("w2", READY))).used == pytest.approx(0.8)


def test_used_is_clamped_to_a_share() -> None:
    assert figures(snap(worker("w1", BUSY, busy_share=1.3))).used == 1.0


def test_the_busy_window_is_named() -> None:
    assert figures(snap()).window == BUSY_WINDOW_S


# --- Vast's load and capacity ---------------------------------------------------------------


def test_capacity_counts_serving_workers_only() -> None:
    """1 of 4 serving and overloaded: capacity is that worker's score, not the four's."""
    s = snap(worker("w1", BUSY, perf_score=1000.0), *(worker(f"w{i}", LOADING, perf_score=1000.0) for i in (2, 3, 4)),
             load=2_000.0, capacity=4_000.0)
    f = figures(s)
    assert f.capacity == 1000.0 and f.load_share == 2.0
    assert "load 2,000/s of capacity 1,000/s (200%)" in render_text(s)
    assert "#dc2626" in render_html(s).split("Vast autoscaler")[1].split("</svg>")[0]  # over target: the gauge turns red


def test_capacity_falls_back_to_the_autoscalers_figure_when_no_serving_worker_has_a_score() -> None:
    assert figures(snap(worker("w1", READY), capacity=500.0)).capacity == 500.0
    assert figures(snap(worker("w1", LOADING), capacity=500.0)).capacity == 0.0  # no one serving: nothing to count


def test_units_agree_when_the_benchmarked_function_is_called() -> None:
    s = snap(worker("w1", BUSY, busy_share=0.7, perf_score=100.0), load=75.0, benchmark_function="square")
    assert not figures(s).units_disagree
    assert "Workload units per second from square()&#x27;s benchmark." in render_html(s)
    assert "they weigh differently" not in render_html(s)


# --- stopped and zero -----------------------------------------------------------------------


def test_a_shut_down_deployment_reads_stopped_and_zero() -> None:
    """Even if the last figures the backend kept are stale (the issue: "Capacity 17.3M/s" after %vast_down)."""
    s = snap(worker("w1", STOPPED, perf_score=8e6, busy_share=0.5, stopped_at=190.0),
             worker("w2", STOPPED, perf_score=8e6, stopped_at=190.0),
             state="shut down", load=6_667.0, capacity=17.3e6, queued=3, start_failures=1, start_error="x",
             history=((150.0, {"ready": 2}),))
    f = figures(s)
    assert (f.alive, f.serving, f.used, f.load, f.capacity, f.queued, f.load_share) == (0, 0, 0.0, 0.0, 0.0, 0, None)
    assert (f.start_failures, f.start_error) == (0, None)
    text = render_text(s)
    assert text.splitlines()[1] == "  0 workers · used 0% · calls 0"
    assert "load 0/s of capacity 0/s" in text
    assert live_history(s)[-1] == (190.0, {})  # "Workers by state" drops to zero when it stopped, not "2 ready" up to now


# --- failures -------------------------------------------------------------------------------


def failing() -> DeploymentSnapshot:
    src = ScriptedSource("broken")
    play_failing(src, attempts=5)
    return src.snapshot()


def test_a_failing_deployment_says_so_once_with_a_count() -> None:
    s = failing()
    assert s.state == "failing"
    text = render_text(s)
    lines = text.splitlines()
    assert lines[:3] == [
        "broken (local) · failing · code 3f9a1c0",
        "  0 workers · 5 failed · used – · calls 0",
        "  workers cannot start (5 failed starts in a row): FileNotFoundError: [Errno 2] No such file or directory: 'weights.bin'",
    ]
    errors = text.split("\nErrors\n")[1].split("\n\n")[0].splitlines()
    assert errors == ["  FileNotFoundError: [Errno 2] No such file or directory: 'weights.bin' ×5 (w-0, w-1, w-2 and 2 more; in context Model)"]
    html = render_html(s)
    assert html.count("<details") == 1 and "×5" in html
    assert "Workers cannot start</b>" in html and "(5 failed starts in a row)" in html
    assert " · w-0, w-1, w-2 and 2 more · in context Model</span></summary>" in html
    assert ">failing<" in html


def test_error_groups_keep_different_failures_apart() -> None:
    s = snap(
        worker("w1", ERROR, error=MISSING, failed_phase="context Model", stopped_at=110.0),
        worker("w2", ERROR, error="Traceback\nKeyError: 'x'", stopped_at=120.0),
        worker("w3", ERROR, error=MISSING, failed_phase="context Model", stopped_at=130.0),
    )
    groups = error_groups(s)
    assert [(g.summary, g.workers, g.phase, g.count) for g in groups] == [
        ("FileNotFoundError: [Errno 2] No such file or directory: 'weights.bin'", ("w1", "w3"), "context Model", 2),
        ("KeyError: 'x'", ("w2",), None, 1),
    ]
    assert groups[0].text == MISSING


def test_the_failed_phase_is_marked_on_the_cold_start_bar() -> None:
    s = snap(worker("w1", ERROR, error=MISSING, failed_phase="context Model", phases=(("process start", 0.4),),
                    started_at=100.0, stopped_at=101.5))
    text = render_text(s)
    assert "  w1    1.5 s  process start 400 ms · context Model ✕ failed after 1.1 s" in text
    html = render_html(s)
    assert "context Model: 1.1 s — failed here" in html and "✕ context Model</span> · 1.5 s" in html


def test_a_worker_that_died_after_serving_has_no_failed_phase() -> None:
    s = snap(worker("w1", ERROR, error="Traceback\nWorkerLost: killed", ready_at=105.0, stopped_at=150.0,
                    phases=(("process start", 0.4),)))
    assert "failed after" not in render_text(s) and "failed here" not in render_html(s)


def test_the_worker_history_counts_live_workers_only() -> None:
    """Five dead workers do not stack into a 5-high red area: they are marks on the time axis."""
    s = failing()
    assert max(sum(c.values()) for _, c in live_history(s)) == 1
    assert all("error" not in c for _, c in live_history(s))
    marks = failures(s, since=0.0)
    assert len(marks) == 5 and marks[0][1] == "w-0: FileNotFoundError: [Errno 2] No such file or directory: 'weights.bin'"
    html = render_html(s)
    chart = html.split("Workers by state")[1]
    assert chart.count("failed here") == 0 and chart.count("<path d=") == 5 and "▲ failed" in chart


def test_the_worker_history_ends_with_the_workers_now() -> None:
    """The history is sampled on events; its last point is the snapshot's own workers, not a stale "busy"."""
    s = snap(worker("w1", READY), worker("w2", READY), history=((150.0, {"busy": 2}),))
    assert live_history(s) == [(150.0, {"busy": 2}), (200.0, {"ready": 2})]
    same = snap(worker("w1", READY), history=((150.0, {"ready": 1}),))
    assert live_history(same) == [(150.0, {"ready": 1})]


# --- smaller --------------------------------------------------------------------------------


def test_workers_table_shows_each_workers_used_share_and_calls_in_flight() -> None:
    s = snap(worker("w1", BUSY, busy_share=0.5, queue=3, load=800.0, calls_done=12), worker("w2", LOADING))
    row = render_text(s).split("\nWorkers\n")[1].splitlines()[1]
    assert row.split()[:6] == ["w1", "CPU", "busy", "–", "50%", "3"]
    html = render_html(s)
    assert 'title="3 in flight: 800 workload units">+3</span>' in html  # a unit with the number, never a bare "800"


def test_one_window_for_every_chart() -> None:
    """Side-by-side charts span the same time (the issue: −10 s beside −1 m)."""
    s = dataclasses.replace(snap(worker("w1", READY)), history=((140.0, {"ready": 1}),))
    samples = [(195.0 + i, 1.0, 2.0, 0.9, 0.0, None, 0.5) for i in range(5)]
    html = render_html(s, samples=samples)
    assert html.count(">−1m<") == 4  # used, queue time, load/capacity and workers-by-state all start at −1m
    assert html.count(">−10 s<") == 0
