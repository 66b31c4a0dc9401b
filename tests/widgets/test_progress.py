"""Progress bars (widget and text) and the Throttle every view redraws through."""

from __future__ import annotations

import io
import re
import threading
from typing import Any

import pytest

from vastnb.widgets import Progress, progress as progress_module
from vastnb.widgets.progress import Throttle

from .conftest import wait_until


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text_line() -> None:
    bar = Progress(100, "map predict", mode="text", file=io.StringIO())
    bar.update(37)
    bar.set_postfix("2 workers")
    assert bar.text.startswith("map predict: 37/100 calls, 2 workers")
    bar.close()
    assert bar.text.startswith("map predict: 37/100 calls, 2 workers · done in ")


def test_unknown_total_and_other_units() -> None:
    bar = Progress(None, unit="workers", mode="text", file=io.StringIO())
    bar.update(3)
    assert bar.text.startswith("3 workers")
    bar.total = 4
    assert bar.text.startswith("3/4 workers")
    bar.close()


def test_text_mode_in_a_pipe_prints_few_lines_and_the_final_one() -> None:
    out = io.StringIO()
    with Progress(1000, "map", mode="text", file=out) as bar:
        for _ in range(1000):
            bar.update()
    lines = out.getvalue().splitlines()
    assert 1 <= len(lines) <= 3
    assert lines[-1].startswith("map: 1,000/1,000 calls · done in ")


def test_text_mode_on_a_terminal_rewrites_one_line() -> None:
    out = Tty()
    bar = Progress(500, "ensure_ready", unit="workers", mode="text", file=out, min_interval=0.05)
    for _ in range(500):
        bar.update()
    bar.close()
    written = out.getvalue()
    assert written.startswith("\r") and written.endswith("\n") and written.count("\n") == 1
    assert written.count("\r") < 500  # updates coalesce (test_throttle_coalesces_pokes pins how)
    assert written.rsplit("\r", 1)[1].startswith("ensure_ready: 500/500 workers · done in ")


def test_waiting_shows_time_elapsed_not_a_rate() -> None:
    """Workers coming up have no meaningful rate ("0.5/s, ~2 s left"); the time so far is what helps."""
    bar = Progress(2, "demo: workers ready", unit="workers", mode="text", file=io.StringIO(), rate=False)
    bar.started -= 2.7  # as if started 2.7 s ago
    bar.update()
    bar.set_postfix("w2 loading (process start done)")
    assert bar.text == "demo: workers ready: 1/2 workers, w2 loading (process start done) · 2.7 s"
    bar.close(failed=True)
    assert bar.text.startswith("demo: workers ready: 1/2 workers, w2 loading (process start done) · failed after 2.7 s")


def test_a_ticking_bar_redraws_without_updates() -> None:
    out = Tty()
    bar = Progress(1, "ready", unit="workers", mode="text", file=out, rate=False, tick=0.01)
    wait_until(lambda: out.getvalue().count("\r") >= 2, what="two redraws with no update")
    bar.close()


def test_a_failed_bar_is_red_and_full() -> None:
    bar = Progress(2, "ready", unit="workers", mode="widget", display=False)
    bar.close(failed=True)
    assert bar._bar is not None and bar._bar.value == bar._bar.max and bar._bar.bar_style == "danger"
    assert "width:100.0%;height:100%;background:#dc2626" in bar.to_html()


def test_updates_from_many_threads_are_all_counted() -> None:
    bar = Progress(1000, mode="text", file=io.StringIO())

    def work() -> None:
        for _ in range(250):
            bar.update()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bar.close()
    assert bar.n == 1000


def test_widget_mode() -> None:
    bar = Progress(100, "map predict", mode="widget", display=False)
    assert bar.widget is not None
    for _ in range(37):
        bar.update()
    bar.set_postfix("2 workers")
    label = bar._label
    assert label is not None and bar._bar is not None
    wait_until(lambda: label.value.startswith("37/100 calls, 2 workers"), what="the label")
    assert bar._bar.value == 37 and bar._bar.max == 100 and bar._bar.bar_style == "info"
    bar.update(63)
    bar.close()
    assert bar._bar.value == 100 and bar._bar.bar_style == "success"
    assert label.value.startswith("100/100 calls, 2 workers · done in ")


def test_widget_mode_failure_turns_red() -> None:
    with pytest.raises(KeyError):
        with Progress(10, "map", mode="widget", display=False) as bar:
            bar.update(3)
            raise KeyError("boom")
    assert bar._bar is not None and bar._bar.bar_style == "danger"
    assert bar.text.startswith("map: 3/10 calls · failed after ")
    assert "#dc2626" in bar.to_html()


def test_mimebundle_and_static_html() -> None:
    bar = Progress(4, "ready", unit="workers", mode="widget", display=False)
    bar.update(4)
    bar.close()
    bundle = bar._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}  # closed: static
    assert bundle["text/plain"].startswith("ready: 4/4 workers")
    assert "width:100.0%" in bundle["text/html"] and "4/4 workers" in bundle["text/html"]
    live = Progress(4, mode="widget", display=False)
    assert "application/vnd.jupyter.widget-view+json" in live._repr_mimebundle_()
    live.close()


def test_automatic_mode_is_text_outside_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Progress(3, file=io.StringIO()).mode == "text"
    monkeypatch.setattr(progress_module.h, "widget_frontend", lambda: True)
    assert Progress(3, display=False).mode == "widget"


def test_bad_mode() -> None:
    with pytest.raises(ValueError) as info:
        Progress(3, mode="fancy")
    assert str(info.value) == "Progress mode must be 'widget', 'text' or None (automatic). Instead got 'fancy'."


def test_throttle_coalesces_pokes() -> None:
    """Pokes while the function runs, or while the thread rests its interval, make exactly one more call."""
    seen: list[int] = []
    state = {"value": 0}
    running, release_run = threading.Event(), threading.Event()
    resting, release_rest = threading.Event(), threading.Event()
    rests: list[float] = []

    def fn() -> None:
        running.set()
        release_run.wait(10)
        release_run.clear()
        seen.append(state["value"])

    def rest(interval: float) -> None:
        rests.append(interval)
        resting.set()
        release_rest.wait(10)
        release_rest.clear()

    throttle = Throttle(fn, 0.05, rest=rest)
    throttle.poke()
    wait_until(running.is_set, what="the first call")
    for _ in range(100):  # while fn runs
        state["value"] += 1
        throttle.poke()
    release_run.set()
    wait_until(resting.is_set, what="the rest after the first call")
    resting.clear()
    for _ in range(100):  # while the thread rests
        state["value"] += 1
        throttle.poke()
    running.clear()
    release_rest.set()
    wait_until(running.is_set, what="the trailing call")
    release_run.set()
    wait_until(resting.is_set, what="the rest after the trailing call")
    release_rest.set()
    wait_until(lambda: throttle.settled, what="the thread to wait for pokes")
    assert seen == [100, 200]  # two hundred pokes, two calls, the last one with the latest state
    assert rests == [0.05, 0.05]
    release_run.set()  # the final call runs fn once more
    throttle.stop()
    assert throttle.stopped.is_set()
    assert throttle.calls == 3  # and the final call at stop


def test_throttle_stop_runs_final_once_even_if_never_started() -> None:
    calls: list[str] = []
    throttle = Throttle(lambda: calls.append("fn"), final=lambda: calls.append("final"))
    throttle.stop()
    throttle.stop()
    throttle.poke()
    assert calls == ["final"]


def test_throttle_survives_a_failing_function(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def fn() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first redraw fails")

    throttle = Throttle(fn, 0.01, name="test-throttle")
    throttle.poke()
    wait_until(lambda: len(calls) == 1, what="the first call")
    throttle.poke()
    wait_until(lambda: len(calls) == 2, what="the second call")
    throttle.stop()
    assert "test-throttle: redraw failed" in caplog.text


def test_ensure_ready_says_why_workers_cannot_start(make_app: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """The bar of a context that cannot load: which worker failed, where, why, how often; no rate."""
    from vastnb.errors import WorkerStartError

    app = make_app("weightless")
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.context()
    class Weights:
        async def __aenter__(self) -> Weights:
            self.data = open("weights.bin", "rb").read()
            return self

        async def __aexit__(self, *exc: object) -> None:
            pass

    @app.remote()
    async def f(x: int) -> int:
        return x

    capsys.readouterr()
    with pytest.raises(WorkerStartError):
        app.ensure_ready()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("weightless: ")]
    assert not any(re.search(r"\d/s", line) for line in lines), lines  # a time elapsed, never a rate
    assert re.fullmatch(
        r"weightless: workers ready: 0/1 workers, 3 failed starts: w3( in context [\w.<>]*Weights)?: FileNotFoundError: "
        r"\[Errno 2\] No such file or directory: 'weights\.bin' · failed after \d+\.\d s", lines[-1]), lines[-1]
