"""Writes the tricky notebooks the export tests use (run it after editing a notebook here).

    .venv/bin/python tests/export_notebooks/make_notebooks.py

``tests/test_export.py`` checks that the committed ``.ipynb`` files match this script.
"""

from __future__ import annotations

import os
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))


def code(source: str, *tags: str) -> nbformat.NotebookNode:
    cell = new_code_cell(source.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip("\n"))


# Plain style; the golden test pins its whole export.
SMALL = [
    md("# Squares\nPlain Python, as the official SDK writes it, with vastnb's units."),
    code('''
import vastnb
from vastnb.query import gpu_ram, gpu_name, RTX_4090, H100_SXM
'''),
    code('''
app = vastnb.Deployment("sq", tag="v2", backend="local")
image = app.image("vastai/pytorch:@vastai-automatic-tag", storage=16)
image.pip_install("numpy").env(MODE="dev").require(gpu_ram >= 16, gpu_name.in_([RTX_4090, H100_SXM]))
app.configure_autoscaling(cold_workers=2, max_workers=4)
'''),
    code('''
OFFSET = 1

# one helper, used by square
def shift(v):
    return v + OFFSET
'''),
    code('''
@app.remote(benchmark_dataset=[{"x": 2}, {"x": 100}], retries=3)
async def square(x):
    return shift(x * x) - OFFSET
'''),
    code('''
app.ensure_ready()
await square(5)
'''),
    code('''
import matplotlib.pyplot as plt  # exploration: never exported
plt.plot([await square(i) for i in range(5)])
print("done")
'''),
]

# Magics style: a context with constructor arguments, a workload calculator, serve-only options,
# helpers inside the remote cell, and exploration magics.
MAGICS = [
    code('''
%load_ext vastnb
%vast_deployment magic-demo --backend local --tag t1
'''),
    code('''
from vastnb.query import gpu_ram, cpu_ram

image = app.image("vastai/base-image:@vastai-automatic-tag", storage=20)
image.require(gpu_ram >= 8, cpu_ram > 15.5)
image.env(GREETING="hi")
app.configure_autoscaling(max_workers=3, cold_workers=1)
'''),
    code('''
%%vast_context "weights-v1", scale=3
class Scaler:
    def __init__(self, weights, scale=1):
        self.weights, self.scale = weights, scale

    async def __aenter__(self):
        self.loaded = f"{self.weights}@{self.scale}"
        return self

    async def __aexit__(self, *exc):
        pass
'''),
    code('''
def cost(text, repeat=1):
    """Workload: longer texts cost more (the worker calls it with echo's own arguments)."""
    return float(len(text) * repeat)
'''),
    code('''
%%vast_remote --benchmark-dataset '[{"text": "abc", "repeat": 2}]' --benchmark-runs 3 --workload-calculator cost --allow-parallel-requests --max-queue-time 5 --retries 0
import string


def _shout(s):
    return s.upper()


async def echo(text, repeat=1):
    ctx = app.get_context(Scaler)
    return {"text": _shout(text) * repeat, "scale": ctx.scale, "loaded": ctx.loaded}


async def count(text):
    return sum(c in string.ascii_letters for c in text)
'''),
    code('''
%%vast_run
import os
print("on the worker", os.getpid())
'''),
    code("%vast_status"),
    code('''
await echo("hey", repeat=2)
'''),
    code("%vast_down"),
]

# Plain style with dependencies across cells, a class as argument and result, a benchmark
# generator, redefinitions, mutations, and tags that override the analysis.
HELPERS = [
    code('''
import vastnb
import math
import statistics
from dataclasses import dataclass
'''),
    code('''
app = vastnb.Deployment(name="helpers")
app.image("vastai/base-image:@vastai-automatic-tag", 8).require(vastnb.query.gpu_total_ram >= 24)
'''),
    code('''
SCALE = 2
LABELS = []
LABELS.append("base")
'''),
    code('''
@dataclass
class Point:
    x: float
    y: float

    def norm(self):
        return math.hypot(self.x, self.y)
'''),
    code('''
def scale(v):
    return v * SCALE
'''),
    code('''
def scale(v):  # a debugging version the author keeps out of the deployment
    print("debug", v)
    return v * 1000
''', "vast-skip"),
    code('''
def scaled_norm(p):
    return scale(p.norm())
'''),
    code('''
def unused_helper():
    return statistics.mean([1, 2])
'''),
    code('''
import random


def sample_point():
    return {"p": Point(random.randint(0, 5), random.randint(0, 5))}
'''),
    code('''
@app.remote(benchmark_generator=sample_point, benchmark_runs=4, timeout=30)
async def measure(p: Point) -> float:
    return scaled_norm(p)
'''),
    code('''
@app.remote(benchmark_dataset=[{"a": Point(1, 2), "b": Point(3, 4)}])
async def add(a, b):
    return Point(a.x + b.x, a.y + b.y)
'''),
    code('''
@app.remote(benchmark_dataset=[{"n": 2}])
async def labels(n):
    return LABELS * n + [LATE, BUILD]
'''),
    code('''
LATE = "late"  # defined below the function that reads it: fine, it is read at call time
'''),
    code('''
BUILD = "build-" + str(len(LABELS))
EXTRA = {"forced": 1}  # used by nothing, exported because the cell is tagged vast-export
''', "vast-export"),
    code('''
SCALE = 3  # redefined: calls see the last value
'''),
    code('''
print(statistics.mean([1, 2, 3]))
results = [await measure(Point(3, 4))]
results
'''),
]

# Everything the official JSON wire cannot carry (check_wire's test; not served).
WIRE = [
    code('''
import vastnb
import numpy as np
import torch
from typing import Set

app = vastnb.Deployment("wire")
'''),
    code('''
DEBUG = True


class Explained(Exception):
    def __init__(self, detail):
        self.detail = detail

    def __str__(self):
        return self.detail


def check(x):
    if x < 0:
        raise ValueError("negative")
    return x
'''),
    code('''
@app.remote(benchmark_dataset=[{"x": 1, "flag": True, "tags": {"a"}}])
async def f(x, flag=True, tags: Set[str] = frozenset(), arr: np.ndarray = None, t: "torch.Tensor" = None,
            debug=DEBUG):
    if x > 100:
        raise Explained("too big")
    return check(x) > 0
'''),
    code('''
@app.remote()
async def g(v: list[bool]) -> np.ndarray:
    return np.zeros(3)
'''),
]

NOTEBOOKS = {"small": SMALL, "magics": MAGICS, "helpers": HELPERS, "wire": WIRE}


def build(cells: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"  # stable ids: the files only change when the cells do
    return nb


def render(name: str) -> str:
    return nbformat.writes(build(NOTEBOOKS[name])) + "\n"


def main() -> int:
    for name in NOTEBOOKS:
        with open(os.path.join(HERE, f"{name}.ipynb"), "w", encoding="utf-8") as f:
            f.write(render(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
