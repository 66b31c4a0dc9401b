"""Workers and GPUs: pinning, sharing, matching, and the real GPUs of this machine (if any).

Most tests here put a stand-in ``nvidia-smi`` on PATH (a shell script printing what the
real one prints on a two-H100 machine): the GPU boundary cannot be reached from a
machine without GPUs. The last test uses the real machine: on a GPU machine it checks
the workers really see their GPU; without one, that workers run on the CPU.
"""

from __future__ import annotations

import os
import stat

import pytest

from vastnb.backends.local import LocalBackend
from vastnb.errors import NoMatchingGpu
from vastnb.gpus import local_gpus
from vastnb.query import H100_SXM, RTX_4090, gpu_name, gpu_ram

FAKE_SMI = """#!/bin/sh
echo "0, NVIDIA H100 80GB HBM3, 81559, 9.0, GPU-aaaaaaaa-0000-0000-0000-000000000000"
echo "1, NVIDIA H100 80GB HBM3, 81559, 9.0, GPU-bbbbbbbb-0000-0000-0000-000000000000"
"""


@pytest.fixture
def two_h100s(tmp_path, monkeypatch):
    """A stand-in nvidia-smi (named as such) that reports two H100 SXM GPUs."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert [g.constant for g in local_gpus()] == ["H100_SXM", "H100_SXM"]


def _visible(app):
    @app.remote()
    async def visible():
        return os.environ.get("CUDA_VISIBLE_DEVICES")

    return visible


def test_each_worker_pinned_to_its_own_gpu(make_app, two_h100s):
    backend = LocalBackend()
    app = make_app(backend=backend)
    app.image("vastai/pytorch:@vastai-automatic-tag", 16).require(gpu_name == H100_SXM, gpu_ram >= 80)
    app.configure_autoscaling(cold_workers=2, max_workers=4)
    visible = _visible(app)
    app.ensure_ready(progress=False)
    workers = app.snapshot().workers
    assert sorted(w.gpu for w in workers) == ["H100_SXM #0", "H100_SXM #1"]
    seen = set(visible.map([() for _ in range(40)], progress=False))
    assert seen == {"GPU-aaaaaaaa-0000-0000-0000-000000000000", "GPU-bbbbbbbb-0000-0000-0000-000000000000"}
    assert backend.machine_max_workers() == 2  # max_workers 4 is capped by the GPUs


def test_workers_share_a_gpu_when_asked(make_app, two_h100s):
    app = make_app(workers_per_gpu=2)
    app.configure_autoscaling(cold_workers=4, max_workers=4)
    _visible(app)
    app.ensure_ready(progress=False)
    gpus = sorted(w.gpu for w in app.snapshot().workers)
    assert gpus == ["H100_SXM #0", "H100_SXM #0", "H100_SXM #1", "H100_SXM #1"]


def test_requirement_no_local_gpu_meets_is_a_clear_error(make_app, two_h100s):
    app = make_app()
    app.image("vastai/pytorch:@vastai-automatic-tag", 16).require(gpu_name == RTX_4090)
    _visible(app)
    with pytest.raises(NoMatchingGpu) as info:
        app.ensure_ready(progress=False)
    text = str(info.value)
    assert "H100" in text and "RTX 4090" in text.replace("_", " ")
    assert app.snapshot().workers == ()  # refused before anything started


def test_this_machines_real_gpus(make_app, capsys):
    gpus = local_gpus()
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote()
    async def device_report():
        import torch

        return torch.cuda.device_count(), (torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)

    count, name = device_report.call()
    if not gpus:  # no GPU here: detected, announced once, workers on the CPU
        assert gpus.reason
        assert (count, name) == (0, None)
        assert "vastnb: no NVIDIA GPU found" in capsys.readouterr().err
        assert app.snapshot().workers[0].gpu is None
    else:  # a GPU machine: the worker sees exactly its one GPU
        assert count == 1 and name == gpus[0].name
        assert app.snapshot().workers[0].gpu == f"{gpus[0].constant or gpus[0].name} #{gpus[0].index}"
