"""notebooks/quickstart.ipynb in a real JupyterLab (headless Chromium): live dashboard and GPU picker."""

from __future__ import annotations

from pathlib import Path

import nbformat

from .conftest import JupyterLab, LabPage

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_in_jupyterlab(jupyter_lab: JupyterLab, lab: LabPage, tmp_path: Path) -> None:
    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    assert nb.cells[-1].source.strip() == "%vast_down"
    nb.cells = nb.cells[:-2]  # keep the workers up for the browser to see them; stopped below
    copy = tmp_path / "quickstart_live.ipynb"
    nbformat.write(nb, copy)
    lab.open(jupyter_lab.add(copy))
    lab.run_all(timeout=180)

    dash = lab.wait_for_text("w2", ".vastnb-dashboard", timeout=60)
    text = dash.inner_text()
    assert "quickstart" in text and "w1" in text and "w2" in text
    # cold_workers=2: both serve at first; once one has sufficed for the cooldown the other waits inactive (as on Vast)
    assert "2 ready" in text or ("1 ready" in text and "1 inactive" in text), text
    assert text.count("M/s") >= 2 or text.count("k/s") >= 2  # each ready worker shows its perf score
    lab.screenshot("quickstart-dashboard", ".vastnb-dashboard")

    lab.run_cell("picker = _\npicker.select('RTX_4090', 'H100_SXM')\npicker.set(min_gpu_ram=24)")
    picker = lab.wait_for_text("image.require(gpu_name.in_([RTX_4090, H100_SXM]), gpu_ram >= 24)", ".vastnb-gpu-picker")
    assert "gpu_name in RTX_4090,H100_SXM gpu_ram>=24" in picker.inner_text()
    lab.screenshot("quickstart-picker", ".vastnb-gpu-picker")

    lab.run_cell("%vast_down")
    lab.wait_for_text("shut down", ".jp-Notebook", timeout=60)
