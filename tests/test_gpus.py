"""vastnb.gpus: the catalog, nvidia-smi parsing and name mapping, CUDA_VISIBLE_DEVICES, messages."""

from __future__ import annotations

import os
import re
import shutil
import stat

import pytest

from vastnb import gpus as g
from vastnb import query as q
from vastnb.errors import NoMatchingGpu
from vastnb.gpus import CATALOG, LocalGpu, by_name, constant_for_nvidia_name, parse_nvidia_smi, visible_gpus
from vastnb.query import H100_SXM, RTX_4090, Query, compute_cap, gpu_name, gpu_ram

UUID = "GPU-5f1e8c3a-9a41-7c2e-0b6d-3e1f2a4b5c6d"


# ----------------------------------------------------------------------------- catalog
def test_every_query_constant_has_a_complete_catalog_entry():
    assert list(CATALOG) == list(q.GPU_NAMES)
    for constant, model in CATALOG.items():
        assert model.constant == constant
        assert model.name == q.GPU_NAMES[constant] == getattr(q, constant)
        assert model.vendor in ("NVIDIA", "AMD")
        assert model.segment in (("AMD",) if model.vendor == "AMD" else ("data center", "consumer", "professional"))
        assert model.architecture
        if model.vendor == "AMD":
            assert model.compute_capability is None
        else:
            assert model.compute_capability is not None
            assert re.fullmatch(r"(3\.[57]|5\.[02]|6\.[01]|7\.[05]|8\.[069]|9\.0|10\.0|12\.0)", model.compute_capability)
        for number in (model.memory_gb, model.memory_bandwidth_gbs, model.fp16_tflops):
            assert isinstance(number, (int, float)) and not isinstance(number, bool) and number > 0
        assert isinstance(model.release_year, int) and 2012 <= model.release_year <= 2025


def test_catalog_facts_for_common_models():
    h100, rtx4090, mi250x = CATALOG["H100_SXM"], CATALOG["RTX_4090"], CATALOG["InstinctMI250X"]
    assert (h100.name, h100.memory_gb, h100.compute_capability, h100.architecture) == ("H100 SXM", 80, "9.0", "Hopper")
    assert (rtx4090.segment, rtx4090.memory_gb, rtx4090.compute_capability) == ("consumer", 24, "8.9")
    assert (mi250x.vendor, mi250x.segment, mi250x.compute_capability) == ("AMD", "AMD", None)
    assert CATALOG["H100_SXM"].fp16_tflops > CATALOG["A100_SXM4"].fp16_tflops > CATALOG["Tesla_V100"].fp16_tflops


def test_names_round_trip():
    for constant, model in CATALOG.items():
        assert by_name(model.name) is model
        assert by_name(model.name.upper().replace(" ", "_")) is model
        # A Vast name read as if nvidia-smi printed it maps back (A100 SXM is the same part as A100 SXM4).
        assert constant_for_nvidia_name(model.name) == ("A100_SXM4" if constant == "A100_SXM" else constant)
    assert by_name("rtx 4090") is CATALOG["RTX_4090"]
    assert by_name("RTX 4090 Laptop") is None


NVIDIA_SMI_NAMES = [
    ("NVIDIA H100 80GB HBM3", "H100_SXM"),
    ("NVIDIA H100 PCIe", "H100_PCIE"),
    ("NVIDIA H100 NVL", "H100_NVL"),
    ("NVIDIA H200", "H200"),
    ("NVIDIA H200 NVL", "H200_NVL"),
    ("NVIDIA GH200 480GB", "GH200_SXM"),
    ("NVIDIA B200", "B200"),
    ("NVIDIA A100-SXM4-80GB", "A100_SXM4"),
    ("A100-SXM4-40GB", "A100_SXM4"),
    ("NVIDIA A100-PCIE-40GB", "A100_PCIE"),
    ("NVIDIA A100 80GB PCIe", "A100_PCIE"),
    ("NVIDIA A800 80GB PCIe", "A800_PCIE"),
    ("NVIDIA A800-SXM4-80GB", None),
    ("NVIDIA A10G", "A10g"),
    ("NVIDIA A10", "A10"),
    ("NVIDIA L4", "L4"),
    ("NVIDIA L40S", "L40S"),
    ("Tesla T4", "Tesla_T4"),
    ("Tesla V100-SXM2-16GB", "Tesla_V100"),
    ("Tesla V100S-PCIE-32GB", "Tesla_V100"),
    ("Tesla P100-PCIE-16GB", "Tesla_P100"),
    ("Tesla M40 24GB", "Tesla_M40"),
    ("NVIDIA GeForce RTX 4090", "RTX_4090"),
    ("NVIDIA GeForce RTX 4090 D", "RTX_4090D"),
    ("NVIDIA GeForce RTX 4070 Ti SUPER", "RTX_4070S_Ti"),
    ("NVIDIA GeForce RTX 4080 SUPER", "RTX_4080S"),
    ("NVIDIA GeForce RTX 3060 Laptop GPU", "RTX_3060_laptop"),
    ("NVIDIA GeForce RTX 4090 Laptop GPU", None),
    ("NVIDIA GeForce RTX 5090", "RTX_5090"),
    ("NVIDIA GeForce GTX 1660 SUPER", "GTX_1660_S"),
    ("NVIDIA GeForce GTX 1650 Ti with Max-Q Design", "GTX_1650_Ti"),
    ("NVIDIA GeForce GTX 970", "GeForce_970"),
    ("NVIDIA GeForce GTX TITAN X", "GTX_TITAN_X"),
    ("NVIDIA TITAN X (Pascal)", "Titan_X"),
    ("NVIDIA TITAN Xp COLLECTORS EDITION", "Titan_Xp"),
    ("NVIDIA TITAN RTX", "Titan_RTX"),
    ("Quadro RTX 8000", "Q_RTX_8000"),
    ("Quadro P4000", "Quadro_P4000"),
    ("NVIDIA RTX A6000", "RTX_A6000"),
    ("NVIDIA RTX A2000 12GB", "RTX_A2000"),
    ("NVIDIA RTX 6000 Ada Generation", "RTX_6000Ada"),
    ("NVIDIA RTX 4000 SFF Ada Generation", "RTX_4000Ada"),
    ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "RTX_PRO_6000_WS"),
    ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "RTX_PRO_6000_S"),
    ("NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition", "RTX_PRO_6000_Max_Q"),
    ("NVIDIA CMP 170HX", "CMP_170HX"),
    ("NVIDIA P106-100", "P106_100"),
    ("NVIDIA H800", None),
    ("NVIDIA Quantum Accelerator 9000", None),
]


@pytest.mark.parametrize(("smi_name", "constant"), NVIDIA_SMI_NAMES)
def test_nvidia_smi_names_map_to_constants(smi_name, constant):
    assert constant_for_nvidia_name(smi_name) == constant


# ----------------------------------------------------------------------------- parsing
def test_parse_one_h100():
    (gpu,) = parse_nvidia_smi(f"0, NVIDIA H100 80GB HBM3, 81559, 9.0, {UUID}\n")
    assert gpu == LocalGpu(0, "NVIDIA H100 80GB HBM3", "H100_SXM", 81559, "9.0", UUID)
    assert gpu.vast_name == H100_SXM
    assert gpu.describe() == {
        "gpu_name": "H100 SXM",
        "gpu_ram": 81559,
        "gpu_total_ram": 81559,
        "num_gpus": 1,
        "gpu_arch": "nvidia",
        "compute_cap": 900,
    }


def test_parse_eight_gpus():
    text = "".join(f"{i}, NVIDIA A100-SXM4-80GB, 81920, 8.0, GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd\n" for i in range(8))
    gpus = parse_nvidia_smi(text)
    assert [gpu.index for gpu in gpus] == list(range(8))
    assert {(gpu.constant, gpu.memory_mb, gpu.compute_capability) for gpu in gpus} == {("A100_SXM4", 81920, "8.0")}
    assert gpus[7].uuid == "GPU-00000007-aaaa-bbbb-cccc-dddddddddddd"
    assert gpus[3].describe()["compute_cap"] == 800


def test_parse_unknown_model_and_missing_compute_capability():
    gpus = parse_nvidia_smi(
        f"0, NVIDIA Quantum Accelerator 9000, 12288, 8.7, {UUID}\n"
        "1, Tesla T4, 15360, [N/A], GPU-11111111-2222-3333-4444-555555555555\n"
        "2, NVIDIA Mystery, 4096, [N/A], GPU-22222222-2222-3333-4444-555555555555\n"
    )
    assert gpus[0] == LocalGpu(0, "NVIDIA Quantum Accelerator 9000", None, 12288, "8.7", UUID)
    assert gpus[0].describe()["gpu_name"] == "NVIDIA Quantum Accelerator 9000"
    assert (gpus[1].constant, gpus[1].compute_capability) == ("Tesla_T4", "7.5")  # from the catalog
    assert gpus[2].compute_capability == ""
    assert "compute_cap" not in gpus[2].describe()


@pytest.mark.parametrize(
    "text",
    [
        "No devices were found",
        "0, NVIDIA H100 80GB HBM3, 81559 MiB, 9.0, GPU-x",
        "0, NVIDIA H100 80GB HBM3, 81559, 9.0",
        "x, NVIDIA H100 80GB HBM3, 81559, 9.0, GPU-x",
    ],
)
def test_parse_garbage_names_the_line(text):
    with pytest.raises(ValueError) as info:
        parse_nvidia_smi(f"\n{text}\n")
    assert str(info.value) == (
        f"unexpected nvidia-smi output line {text!r}: expected 'index, name, memory.total, compute_cap, uuid'"
    )
    assert parse_nvidia_smi("") == parse_nvidia_smi("\n \n") == []


# ----------------------------------------------------------------------------- CUDA_VISIBLE_DEVICES
FOUR = parse_nvidia_smi(
    "".join(f"{i}, NVIDIA GeForce RTX 4090, 24564, 8.9, GPU-{i}{i}{i}{i}-uuid\n" for i in range(4))
)


@pytest.mark.parametrize(
    ("value", "indices"),
    [
        (None, [0, 1, 2, 3]),
        ("2", [2]),
        ("3,1", [3, 1]),
        (" 0 , 2 ", [0, 2]),
        ("GPU-2222", [2]),
        ("GPU-1111-uuid,0", [1, 0]),
        ("0,7,1", [0]),  # CUDA stops at the first entry naming no device
        ("1,1", [1]),
        ("GPU-", []),  # a prefix of every UUID is ambiguous
    ],
)
def test_visible_gpus(value, indices):
    visible, reason = visible_gpus(FOUR, value)
    assert [gpu.index for gpu in visible] == indices
    assert reason == (None if indices else f"CUDA_VISIBLE_DEVICES={value!r} hides all 4 GPU(s) nvidia-smi lists")


@pytest.mark.parametrize("value", ["", "-1", "MIG-abc"])
def test_visible_gpus_hidden(value):
    assert visible_gpus(FOUR, value) == ([], f"CUDA_VISIBLE_DEVICES={value!r} hides all 4 GPU(s) nvidia-smi lists")


# ----------------------------------------------------------------------------- matching and messages
MIXED = parse_nvidia_smi(
    "0, NVIDIA H100 80GB HBM3, 81559, 9.0, GPU-aaaa\n"
    "1, Tesla T4, 15360, 7.5, GPU-bbbb\n"
    "2, NVIDIA Quantum Accelerator 9000, 12288, 8.7, GPU-cccc\n"
)


def test_match_local_gpus_reports_each_gpu():
    requirement = Query.search_defaults().extend(gpu_ram >= 40)
    matching, report = g.match_local_gpus(requirement, MIXED)
    assert matching == [MIXED[0]]
    assert report == [
        "GPU 0 NVIDIA H100 80GB HBM3: matches",
        "GPU 1 Tesla T4: fails gpu_ram>=40 (this GPU has 15.36 GB)",
        "GPU 2 NVIDIA Quantum Accelerator 9000: fails gpu_ram>=40 (this GPU has 12.29 GB)",
    ]
    assert g.match_local_gpus(compute_cap >= 750, MIXED)[0] == MIXED
    assert g.match_local_gpus(gpu_name.in_([H100_SXM, "Tesla_T4"]), MIXED)[0] == MIXED[:2]


def test_no_match_message_lists_every_gpu_and_the_fix():
    requirement = Query.search_defaults().extend(gpu_name == RTX_4090).extend(gpu_ram >= 96)
    message = g.no_match_message(requirement, MIXED)
    assert message == (
        "image.require(gpu_name == RTX_4090, gpu_ram >= 96) matches none of this machine's GPUs:\n"
        "  GPU 0 NVIDIA H100 80GB HBM3: fails gpu_name=RTX_4090 (this GPU has H100 SXM); "
        "gpu_ram>=96 (this GPU has 81.56 GB)\n"
        "  GPU 1 Tesla T4: fails gpu_name=RTX_4090 (this GPU has Tesla T4); gpu_ram>=96 (this GPU has 15.36 GB)\n"
        "  GPU 2 NVIDIA Quantum Accelerator 9000: fails gpu_name=RTX_4090 "
        "(this GPU has NVIDIA Quantum Accelerator 9000); gpu_ram>=96 (this GPU has 12.29 GB)\n"
        "Loosen image.require(...) so one of these GPUs qualifies, or run the deployment on Vast "
        'with Deployment(..., backend="vast").'
    )
    error = NoMatchingGpu(message)
    assert isinstance(error, ValueError) and str(error) == message
    assert g.no_match_message(gpu_ram >= 8, []) == (
        "image.require(gpu_ram >= 8) cannot be met here: no NVIDIA GPU found on this machine. "
        'Run the deployment on Vast with Deployment(..., backend="vast"), or drop the requirement '
        "to run workers on the CPU."
    )


def test_no_gpu_notice():
    assert g.NO_GPU_NOTICE == (
        "no NVIDIA GPU found on this machine: workers run on the CPU; "
        "image.require(...) is checked when the deployment runs on Vast"
    )


# ----------------------------------------------------------------------------- running nvidia-smi
def test_local_gpus_for_real_on_this_machine():
    gpus = g.local_gpus()
    if shutil.which("nvidia-smi") is None:
        assert gpus == [] and isinstance(gpus, g.LocalGpuList)
        assert gpus.reason == "nvidia-smi is not on PATH"
    else:  # a GPU machine: whatever it has parses
        assert all(isinstance(gpu, LocalGpu) and gpu.memory_mb > 0 for gpu in gpus)
        assert (gpus.reason is None) == bool(gpus)


@pytest.fixture
def fake_smi(tmp_path, monkeypatch):
    """Put an ``nvidia-smi`` on PATH that runs the given shell body."""

    def install(body: str) -> None:
        script = tmp_path / "nvidia-smi"
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return install


def test_local_gpus_runs_nvidia_smi_with_the_query(fake_smi, tmp_path, monkeypatch):
    fake_smi(
        f'echo "$@" > {tmp_path}/args\n'
        "echo '0, NVIDIA H100 80GB HBM3, 81559, 9.0, GPU-aaaa'\n"
        "echo '1, NVIDIA H100 80GB HBM3, 81559, 9.0, GPU-bbbb'"
    )
    gpus = g.local_gpus()
    assert [gpu.uuid for gpu in gpus] == ["GPU-aaaa", "GPU-bbbb"] and gpus.reason is None
    assert (tmp_path / "args").read_text() == (
        "--query-gpu=index,name,memory.total,compute_cap,uuid --format=csv,noheader,nounits\n"
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert [gpu.uuid for gpu in g.local_gpus()] == ["GPU-bbbb"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    hidden = g.local_gpus()
    assert hidden == [] and hidden.reason == "CUDA_VISIBLE_DEVICES='' hides all 2 GPU(s) nvidia-smi lists"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\" >&2; exit 9",
            "nvidia-smi exited with status 9: NVIDIA-SMI has failed because it couldn't communicate "
            "with the NVIDIA driver.",
        ),
        ("exit 3", "nvidia-smi exited with status 3: no output"),
        ("echo 'No devices were found'", "unexpected nvidia-smi output line 'No devices were found': "
         "expected 'index, name, memory.total, compute_cap, uuid'"),
        ("true", "nvidia-smi lists no GPUs"),
    ],
)
def test_local_gpus_failures_become_reasons(fake_smi, body, reason):
    fake_smi(body)
    gpus = g.local_gpus()
    assert gpus == [] and gpus.reason == reason


def test_local_gpus_times_out(fake_smi):
    fake_smi("exec sleep 5")
    gpus = g.local_gpus(timeout=0.3)
    assert gpus == [] and gpus.reason == "nvidia-smi did not answer within 0.3 s"
