"""Number formats and small rendering helpers."""

from __future__ import annotations

import pytest

from vastnb.widgets import _charts as charts
from vastnb.widgets import _html as h


@pytest.mark.parametrize(
    "value, text",
    [(0, "0"), (1840.4, "1,840"), (123456.7, "123,457"), (12.34, "12.3"), (1.234, "1.23"), (0.0425, "0.043"),
     (0.005, "0.005"), (0.0001234, "0.00012"), (None, "–"), (-2500.0, "-2,500"), (999_999.0, "999,999"),
     (5_487_270.0, "5.49M"), (12_300_000_000.0, "12.3G")],
)
def test_fmt_num(value: float | None, text: str) -> None:
    assert h.fmt_num(value) == text


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0 s"), (0.00085, "850 µs"), (0.0123, "12.3 ms"), (0.25, "250 ms"), (4.21, "4.2 s"), (59.9, "59.9 s"),
     (192, "3m 12s"), (3600 * 2 + 300, "2h 05m"), (None, "–"), (-1, "0 s")],
)
def test_fmt_seconds(seconds: float | None, text: str) -> None:
    assert h.fmt_seconds(seconds) == text


def test_other_formats() -> None:
    assert h.fmt_rate(1840.4) == "1,840/s"
    assert h.fmt_rate(None) == "–"
    assert h.fmt_money(0.39) == "$0.39/h"
    assert h.fmt_money(0.045) == "$0.045/h"
    assert h.fmt_money(12.3) == "$12.30/h"
    assert h.fmt_gb(24564) == "24 GB"
    assert h.fmt_gb(7680) == "7.5 GB"
    assert h.fmt_uptime(0.3) == "<1 s"
    assert h.fmt_uptime(42.4) == "42 s"
    assert h.fmt_uptime(192) == "3m 12s"
    assert h.fmt_count(1234567) == "1,234,567"
    assert h.short_hash("3f9a1c07d2e4") == "3f9a1c0"
    assert h.short_hash("") == "–"


def test_text_helpers() -> None:
    assert h.text_sparkline([1, 2, 4, 8]) == "▁▂▄█"
    assert h.text_sparkline([]) == ""
    assert h.text_bar(0.5, 10) == "█████·····"
    table = h.text_table(["ID", "PERF"], [["w-0", "1,840/s"], ["w-10", "5/s"]], align="lr")
    assert table.splitlines() == ["  ID       PERF", "  w-0   1,840/s", "  w-10      5/s"]


def test_svg_pieces_escape_and_scale() -> None:
    bar = charts.stacked_hbar([("<phase>", 3.0, "#123456"), ("b", 1.0, "#654321")], 8.0, width=200)
    assert "&lt;phase&gt;: 3.0 s" in bar and "<phase>" not in bar
    assert 'width="75.0"' in bar and 'width="25.0"' in bar  # 3 s and 1 s of 8 s on 200 px
    chart = charts.line_chart([charts.Series("load", "#000000", [(0.0, 1.0), (10.0, 3.0)])], t0=0.0, t1=10.0)
    assert "<polyline" in chart and "now" in chart
    area = charts.stacked_steps([0.0, 5.0], [("ready", "#22c55e", [1.0, 2.0])], t0=0.0, t1=10.0)
    assert "<polygon" in area


def test_widget_frontend_is_false_outside_a_kernel() -> None:
    assert h.widget_frontend() is False
