"""End to end: vastnb's widgets in a real JupyterLab, in headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import conftest
from .conftest import JupyterLab, LabPage

HERE = Path(__file__).resolve().parent


VIEWS = ".vastnb-dashboard, .vastnb-gpu-picker, .vastnb-view"


def test_widgets_render_and_update_in_jupyterlab(jupyter_lab: JupyterLab, lab: LabPage) -> None:
    jupyter_lab.add(HERE.parent / "widgets" / "scripted.py")
    notebook = jupyter_lab.add(HERE / "widget_smoke.ipynb")
    lab.open(notebook)
    lab.run_all()

    # The dashboard is a live widget, redrawn from events on its own thread after its cell finished.
    dash = lab.wait_for_text("5,611/s", ".vastnb-dashboard", timeout=60)
    lab.wait_for_text("4 queued", ".vastnb-dashboard")
    text = dash.inner_text().lower()  # section titles are upper-cased by CSS
    for expected in ("demo", "w-0", "w-1", "w-2", "RTX_4090 #0", "H100_SXM #1", "busy", "ready", "error",
                     "1,840/s", "RuntimeError: CUDA out of memory", "Cold start", "context Model", "✕ context Model",
                     "Benchmarks", "Autoscaling", "used 47%", "1 of 2 busy", "Vast autoscaler's view",
                     "predict()'s benchmark", "1 → 3", "above target_util 90%", "$2.97/h"):
        assert expected.lower() in text, f"{expected!r} not in the dashboard:\n{text}"

    picker = lab.wait_for_text("image.require(", ".vastnb-gpu-picker")
    assert "image.require(gpu_name.in_([RTX_4090, H100_SXM]), gpu_ram >= 16)" in picker.inner_text()  # from the image
    lab.wait_for_text("3 matching offers", ".vastnb-gpu-picker")

    # The filter hides both selected models and shows them again: the selection stays, nothing is logged.
    search = picker.get_by_placeholder("filter models, e.g. 4090 or H100")
    search.fill("3060")
    lab.wait_for_text("no match for “3060”", ".vastnb-gpu-picker")
    search.fill("")
    lab.page.wait_for_function("() => !document.querySelector('.vastnb-gpu-picker').innerText.includes('no match')")
    checked = [t.replace("\xa0", " ") for t in picker.locator("select option:checked").all_inner_texts()]
    assert checked == ["H100 SXM · 80 GB · 989 TF", "RTX 4090 · 24 GB · 165 TF"]

    # Over the image's own gpu_ram >= 16: GPU memory to 24 GB with the keyboard, then the Apply button.
    memory = picker.locator(".widget-slider", has_text="GPU memory ≥")
    memory.locator(".noUi-handle").focus()
    lab.page.keyboard.press("ArrowRight")
    lab.wait_for_text("image.require(gpu_name.in_([RTX_4090, H100_SXM]), gpu_ram >= 24)", ".vastnb-gpu-picker")
    picker.get_by_role("button", name="Apply").click()
    lab.wait_for_text("Applied: image.require(gpu_name.in_([RTX_4090, H100_SXM]), gpu_ram >= 24)", ".vastnb-gpu-picker")
    lab.run_cell("image.requirement.unparse_query()")
    assert "'verified=true rentable=true rented=false gpu_name in RTX_4090,H100_SXM gpu_ram>=24'" in lab.outputs()[-1]
    assert lab.errors() == []  # nothing was raised into the kernel
    assert "60/60 calls, 2 workers" in lab.outputs()[3]

    # Light, dark, 700 px: saved as artifacts, and no view scrolls sideways.
    for width, theme in ((1280, "JupyterLab Light"), (700, "JupyterLab Light"), (1280, "JupyterLab Dark"), (700, "JupyterLab Dark")):
        lab.page.set_viewport_size({"width": 1280, "height": 1000})
        lab.set_theme(theme)
        lab.page.set_viewport_size({"width": width, "height": 1000})
        lab.page.wait_for_timeout(300)  # the notebook reflows
        label = f"{'dark' if 'Dark' in theme else 'light'}-{width}"
        lab.screenshot(f"dashboard-{label}", ".vastnb-dashboard")
        lab.screenshot(f"picker-{label}", ".vastnb-gpu-picker")
        assert lab.overflow(VIEWS) == [], label
    lab.page.set_viewport_size({"width": 1280, "height": 1000})  # narrower, the toolbar hides the kernel's status
    lab.set_theme("JupyterLab Light")

    # Shutting the deployment down freezes the live view at its last live state, with a note, as static HTML.
    lab.run_cell("demo.join(); src.shutdown()")
    frozen = lab.wait_for_text("this view no longer updates", ".jp-OutputArea-output .vastnb-view", timeout=30)
    assert "running" in frozen.inner_text() and "w-1" in frozen.inner_text()
    assert lab.page.locator(".vastnb-dashboard").count() == 0  # the live widget was swapped for static HTML
    lab.screenshot("dashboard-final", frozen)
    assert lab.overflow(VIEWS) == []
    assert lab.console_errors() == []


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
