"""Progress bars (widget and text) and the Throttle every view redraws through."""

from __future__ import annotations

import io
import threading
import time

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
    started = time.monotonic()
    for _ in range(500):
        bar.update()
        time.sleep(0.0002)
    elapsed = time.monotonic() - started
    bar.close()
    written = out.getvalue()
    assert written.endswith("\n") and written.count("\n") == 1
    redraws = written.count("\r")
    assert 1 <= redraws <= 3 + elapsed / 0.05
    assert written.rsplit("\r", 1)[1].startswith("ensure_ready: 500/500 workers · done in ")


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


def test_throttle_rate_and_trailing_call() -> None:
    seen: list[int] = []
    state = {"value": 0}
    throttle = Throttle(lambda: seen.append(state["value"]), 0.05)
    started = time.monotonic()
    while time.monotonic() - started < 0.25:
        state["value"] += 1
        throttle.poke()
    final = state["value"]
    wait_until(lambda: bool(seen) and seen[-1] == final, what="the trailing call")
    assert len(seen) <= 0.25 / 0.05 + 2
    throttle.stop()
    assert throttle.stopped.is_set()
    assert len(seen) == throttle.calls


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
