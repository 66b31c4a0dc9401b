"""The example notebooks, executed end to end in a real Jupyter kernel, outputs compared with the saved ones.

Each notebook is stored with the outputs it should produce. The test runs it in
a fresh kernel (this interpreter, through a kernel spec made for the test, so it
works wherever ``.venv`` was created) and compares every code cell's outputs
with the stored ones after masking what truly changes between runs: timings,
rates, clock times, process ids, ports, addresses and code hashes. Streams are
compared per stream (stdout, stderr), since how a stream is split into chunks
is not part of the result.

To store new outputs after an intended change, run::

    VASTNB_UPDATE_NOTEBOOKS=1 .venv/bin/pytest tests/test_notebooks.py
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ["quickstart", "contexts_and_hot_reload", "shared_runtime"]
UPDATE = os.environ.get("VASTNB_UPDATE_NOTEBOOKS") == "1"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
BUDGET = {"quickstart": 60.0, "contexts_and_hot_reload": 60.0, "shared_runtime": 60.0}  # seconds, 2-core CI

_MASKS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\x1b\[[0-9;]*m"), ""),  # colours
    # this machine's GPUs: the notebooks run on machines with and without them
    (re.compile(r"(?m)^vastnb: no NVIDIA GPU found on this machine.*\n?"), ""),
    (re.compile(r"(?m)^(\s*this machine:).*$"), r"\1 …"),
    (re.compile(r"/tmp/ipykernel_\d+/\d+\.py"), "<cell file>"),
    (re.compile(r"0x[0-9a-fA-F]+"), "0x…"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}\b"), "hh:mm:ss"),
    (re.compile(r"\b(pid|process) \d+"), r"\1 …"),
    (re.compile(r"(127\.0\.0\.1|localhost):\d+"), r"\1:…"),
    (re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,64}\b"), "<hash>"),
    (re.compile(r"[▁▂▃▄▅▆▇█]+"), "▁"),
    (re.compile(r"(?<![\w.])[0-9][0-9,]*(\.[0-9]+)?(e[+-]?\d+)?\s?(ns|µs|us|ms|s|min|h)\b"), "<t>"),
    (re.compile(r"(?<![\w.])[0-9][0-9,]*(\.[0-9]+)?([kMG])?\s?(/s|/h)"), r"<n>\3"),
    (re.compile(r"perf score \(workload units/s\)"), "perf score"),
    (re.compile(r"(?m)^(\s*w\d+\s+)[0-9][0-9,.]*$"), r"\1<score>"),
    (re.compile(r"[ \t]+"), " "),
]


def sanitize(text: str) -> str:
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def comparable(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """What must match in a cell's outputs: streams per name, results' text, errors; that displays were shown."""
    streams: dict[str, str] = {}
    rich: list[tuple[Any, ...]] = []
    for out in outputs:
        kind = out["output_type"]
        if kind == "stream":
            streams[out["name"]] = streams.get(out["name"], "") + out["text"]
        elif kind == "display_data":
            # Live displays (progress bars, the dashboard) redraw from their own threads; which frame the
            # saved notebook ends with is timing. Their content is tested in test_magics and the widget tests.
            rich.append((kind,))
        elif kind == "execute_result":
            data = out.get("data", {})
            rich.append((kind, sanitize(data.get("text/plain", "")), "text/html" in data))
        elif kind == "error":
            rich.append(("error", out["ename"], sanitize(out["evalue"]), sanitize("\n".join(out.get("traceback", [])))))
    cleaned = {name: sanitize(text) for name, text in sorted(streams.items())}
    return {"streams": {name: text for name, text in cleaned.items() if text}, "rich": rich}


@pytest.fixture(scope="session")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernel spec for this interpreter, private to the test run (nothing installed into the environment)."""
    root = tmp_path_factory.mktemp("kernels")
    spec = root / "vastnb-test"
    spec.mkdir()
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "vastnb test (this interpreter)",
        "language": "python",
    }))
    return root


def execute(name: str, kernel_dir: Path) -> tuple[Any, Any, float]:
    path = ROOT / "notebooks" / f"{name}.ipynb"
    stored = nbformat.read(path, as_version=4)
    nb = copy.deepcopy(stored)
    return (stored, nb, run_in_kernel(nb, path.parent, kernel_dir))


def run_in_kernel(nb: Any, cwd: Path, kernel_dir: Path, *, allow_errors: bool = False) -> float:
    """Execute ``nb`` in place in a fresh kernel started in ``cwd``; the seconds it took."""
    km = KernelManager(kernel_name="vastnb-test", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]))
    client = NotebookClient(nb, km=km, timeout=120, allow_errors=allow_errors, resources={"metadata": {"path": str(cwd)}})
    t0 = time.monotonic()
    try:
        client.execute()
        elapsed = time.monotonic() - t0
    finally:  # a kernel manager passed in stays ours to stop
        if client.kc is not None:
            client.kc.stop_channels()
        if km.has_kernel:
            km.shutdown_kernel(now=False)
        km.cleanup_resources()
    return elapsed


@pytest.fixture(params=NOTEBOOKS)
def executed(request: pytest.FixtureRequest, kernel_dir: Path) -> Iterator[tuple[str, Any, Any, float]]:
    name = request.param
    stored, nb, elapsed = execute(name, kernel_dir)
    yield name, stored, nb, elapsed
    if UPDATE:
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            cell.metadata.pop("execution", None)
            for out in cell.outputs:  # a saved widget view shows nothing without the kernel; keep HTML and text
                out.get("data", {}).pop(WIDGET_VIEW, None)
        nb.metadata.pop("widgets", None)
        nbformat.write(nb, ROOT / "notebooks" / f"{name}.ipynb")


def test_notebook_runs_end_to_end_with_the_stored_outputs(executed: tuple[str, Any, Any, float]) -> None:
    name, stored, nb, elapsed = executed
    print(f"{name}.ipynb: executed in {elapsed:.1f} s")
    assert elapsed < BUDGET[name]
    code = [(s, c) for s, c in zip(stored.cells, nb.cells) if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for _s, c in code)
    if UPDATE:
        return
    for i, (want, got) in enumerate(code):
        assert comparable(got.outputs) == comparable(want.outputs), f"{name}.ipynb code cell {i}:\n{got.source}"


def test_sanitize_masks_only_volatile_values() -> None:
    text = "w1  CPU  ready  2,650,411/s  0  0  28d1e5d  164 ms  3 · took 1.5 s at 10:20:37 (pid 4242, 127.0.0.1:33307)"
    assert sanitize(text) == "w1 CPU ready <n>/s 0 0 <hash> <t> 3 · took <t> at hh:mm:ss (pid …, 127.0.0.1:…)"
    assert sanitize("Out: [w1] 'w1'\n[w2] 285") == "Out: [w1] 'w1'\n[w2] 285"
    assert sanitize("  w2      1,234.5") == " w2 <score>"


# ---------------------------------------------------------------------------------- the README's tour
def readme_tour_cells() -> list[str]:
    """The Python blocks of the README's "A short tour", in order: each is one notebook cell."""
    text = (ROOT / "README.md").read_text()
    tour = text.split("## A short tour", 1)[1].split("\n### ", 1)[0]
    return [block.strip("\n") for block in re.findall(r"```python\n(.*?)```", tour, flags=re.S)]


def test_the_readme_tour_runs_as_written(kernel_dir: Path, tmp_path: Path) -> None:
    cells = readme_tour_cells()
    assert len(cells) >= 5 and cells[0].startswith("%load_ext vastnb")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in [*cells, "%vast_down"]])
    run_in_kernel(nb, tmp_path, kernel_dir, allow_errors=True)
    errors = [(i, o["ename"], o["evalue"]) for i, cell in enumerate(nb.cells) for o in cell.outputs
              if o["output_type"] == "error"]
    assert errors == []

    def text_of(fragment: str, kind: str) -> str:
        cell = next(c for c in nb.cells if fragment in c.source)
        return "".join(o.get("text", "") if kind == "stream" else o.get("data", {}).get("text/plain", "")
                       for o in cell.outputs if o["output_type"] == kind)

    assert "on worker 5" in text_of("await predict(5)", "stream")
    assert re.fullmatch(r"\[w1\] \d+\n\[w2\] \d+", text_of("%%vast_run --all", "execute_result").strip())
    assert "async def predict(x):" in (tmp_path / "deploy.py").read_text()

