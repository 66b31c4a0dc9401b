"""End to end: vastnb's widgets in a real JupyterLab, in headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import conftest
from .conftest import JupyterLab, LabPage

HERE = Path(__file__).resolve().parent


def test_widgets_render_and_update_in_jupyterlab(jupyter_lab: JupyterLab, lab: LabPage) -> None:
    jupyter_lab.add(HERE.parent / "widgets" / "scripted.py")
    notebook = jupyter_lab.add(HERE / "widget_smoke.ipynb")
    lab.open(notebook)
    lab.run_all()

    # The dashboard is a live widget, redrawn from events on its own thread after its cell finished.
    dash = lab.wait_for_text("5,611/s", ".vastnb-dashboard", timeout=60)
    lab.wait_for_text("w-3", ".vastnb-dashboard")
    lab.screenshot("dashboard", ".vastnb-dashboard")
    text = dash.inner_text().lower()  # section titles are upper-cased by CSS
    for expected in ("demo", "w-0", "w-1", "w-2", "RTX_4090 #0", "H100_SXM #1", "busy", "ready", "error",
                     "1,840/s", "RuntimeError: CUDA out of memory", "Cold start", "context Model",
                     "Benchmarks", "Autoscaling", "1 → 3", "above target_util 90%", "$2.97/h"):
        assert expected.lower() in text, f"{expected!r} not in the dashboard:\n{text}"

    picker = lab.wait_for_text("image.require(", ".vastnb-gpu-picker")
    text = picker.inner_text()
    assert "image.require(gpu_name.in_([RTX_4090, H100_SXM]), gpu_ram >= 24)" in text
    assert "gpu_name in RTX_4090,H100_SXM gpu_ram>=24" in text
    assert "fails gpu_name in RTX_4090,H100_SXM" in text  # the local RTX 3060
    lab.wait_for_text("3 matching offers", ".vastnb-gpu-picker")
    lab.wait_for_text("cheapest $0.35/h", ".vastnb-gpu-picker")
    lab.screenshot("picker", ".vastnb-gpu-picker")
    outputs = lab.outputs()
    assert "Applied: image.require(gpu_name.in_([RTX_4090, H100_SXM]), gpu_ram >= 24) — new workers will use it" in outputs[3]
    assert "60/60 calls, 2 workers" in outputs[4]

    # Shutting the deployment down draws the final state and leaves static HTML that survives saving.
    lab.run_cell("demo.join(); src.shutdown(); time.sleep(0.5)")
    static = lab.wait_for_text("shut down", ".jp-OutputArea-output .vastnb-view", timeout=30)
    assert "w-1" in static.inner_text()
    assert lab.page.locator(".vastnb-dashboard").count() == 0  # the live widget was swapped for static HTML
    lab.screenshot("dashboard-final", static)


def test_missing_chromium_fails_with_the_command_that_installs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "CHROMIUM_CANDIDATES", ("/nonexistent/chromium",))
    monkeypatch.delenv("VASTNB_CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception) as info:
        conftest.chromium_executable()
    assert str(info.value) == (
        "The browser tests need Chromium, which is not installed (looked for /nonexistent/chromium and `chromium` "
        "on PATH). Run the README's test command, ./scripts/test, which installs it (Debian's chromium package: "
        "apt-get install -y chromium), or set VASTNB_CHROMIUM to a Chromium binary."
    )
