"""notebooks/torch_inference.ipynb end to end in a real kernel: CPU here, CUDA on a GPU machine."""

from __future__ import annotations

import os
import shutil

import nbformat
from nbclient import NotebookClient

from vastnb.gpus import local_gpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _stream_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def test_torch_inference_notebook(tmp_path):
    src = os.path.join(ROOT, "notebooks", "torch_inference.ipynb")
    shutil.copy(src, tmp_path / "nb.ipynb")
    nb = nbformat.read(tmp_path / "nb.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    text = "\n".join(_stream_text(c) for c in nb.cells if c.cell_type == "code")
    assert "torch.int64 (4,)" in text
    assert "300 batches -> (32,) labels each; classes seen: True" in text
    device = "cuda" if local_gpus() else "cpu"
    assert f"('{device}'," in text
    assert "2 workers benchmarked" in text
    assert "(4, 3, 2)" in text  # the redefined post-processing answers
    assert "model loads per worker: [1]" in text  # ... and the model was not reloaded
