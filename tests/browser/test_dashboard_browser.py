"""The dashboard over a real deployment (local worker processes) in JupyterLab: a long map, a failing context,
and an earlier cell's status after %vast_down."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from vastnb.events import BUSY_WINDOW_S

from .conftest import JupyterLab, LabPage

CELLS = [
    "%load_ext vastnb\n%vast_deployment live\napp.configure_autoscaling(cold_workers=2, max_workers=2)",
    """%%vast_remote --benchmark-dataset '[{"x": 2}]'
async def square(x):
    return x * x


async def slow(x):
    import time
    time.sleep(0.05)  # holds the worker, as model code does; not the benchmarked function
    return x""",
    "app.ensure_ready()",
    "%vast_status",
]

USED = """() => {
    const tile = document.querySelector('.vastnb-dashboard .vastnb-used');
    const m = tile && tile.innerText.match(/(\\d+)%/);
    return m ? Number(m[1]) : null;
}"""


def used(lab: LabPage) -> int | None:
    value = lab.page.evaluate(USED)
    return None if value is None else int(value)


def test_dashboard_of_a_real_deployment(jupyter_lab: JupyterLab, lab: LabPage, tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    path = tmp_path / "dashboard_live.ipynb"
    nbformat.write(nb, path)
    lab.open(jupyter_lab.add(path))
    lab.run_all(timeout=180)
    lab.wait_for_text("2 ready", ".vastnb-dashboard", timeout=60)

    # A long map of a function that is not the benchmarked one: "Used" tells how busy the workers are.
    lab.run_cell("results = slow.map(range(400))", wait=False)
    lab.page.wait_for_function(f"() => ({USED})() > 50", timeout=60_000)
    assert "square()'s benchmark" in lab.text(".vastnb-dashboard")  # Vast's figures say whose units they are in
    lab.screenshot("map", ".vastnb-dashboard")
    lab.wait_all_run(timeout=120)
    assert "400/400 calls" in lab.outputs()[-1]
    # ... and falls to 0 % once the calls stop (within the busy window, BUSY_WINDOW_S).
    lab.page.wait_for_function(f"() => ({USED})() === 0", timeout=(BUSY_WINDOW_S + 10) * 1000)

    # A context that cannot load: "failing", the error once with its count, the failed phase on the bar.
    lab.run_cell(
        "import vastnb\n"
        "broken = vastnb.Deployment('broken')\n"
        "broken.configure_autoscaling(cold_workers=1, max_workers=1)\n\n"
        "@broken.context()\n"
        "class Weights:\n"
        "    async def __aenter__(self):\n"
        "        self.data = open('weights.bin', 'rb').read()\n"
        "        return self\n\n"
        "    async def __aexit__(self, *exc):\n"
        "        pass\n\n"
        "@broken.remote()\n"
        "async def predict(x):\n"
        "    return x\n\n"
        "broken.dashboard()"
    )
    lab.run_cell("broken.ensure_ready()", timeout=120)
    error = next(e for e in lab.errors() if "No such file or directory: 'weights.bin'" in e)
    assert "concurrent" not in error and "site-packages" not in error, error  # the user's code, not vastnb's frames
    assert error.index("open('weights.bin', 'rb')") < error.index("FileNotFoundError: [Errno 2]"), error
    failing = lab.page.locator(".vastnb-dashboard").last
    failing.filter(has_text="×3").wait_for(timeout=30_000)
    assert failing.locator("details").count() == 1  # one error, told once
    assert "FileNotFoundError: [Errno 2] No such file or directory: 'weights.bin' ×3" in failing.inner_text()
    failing.filter(has_text="Workers cannot start").wait_for(timeout=30_000)  # start_failures, start_error (issue 13)
    assert "failing" in failing.locator(".vastnb-view").first.inner_text()  # the runtime's state (issue 13)
    assert "✕ context Weights" in failing.inner_text()  # the failed phase (issue 13's failed_phase)
    lab.screenshot("failing", failing)

    # %vast_down: the %vast_status output above keeps its moment ("running"), frozen with a note.
    lab.run_cell("%vast_down\nbroken.shutdown()")
    status = lab.page.locator(".jp-Notebook .jp-CodeCell").nth(3).locator(".jp-OutputArea")
    status.locator(".vastnb-frozen").wait_for(timeout=30_000)
    frozen = status.inner_text()
    assert "running" in frozen and "this view no longer updates" in frozen
    assert re.search(r"the deployment (began shutting|shut) down at \d\d:\d\d:\d\d", frozen), frozen
    assert "Not live" in frozen
    assert lab.console_errors() == []
