"""GPU catalog (one entry per ``vastnb.query`` GPU constant) and local GPU discovery.

Discovery asks ``nvidia-smi`` (never torch, so the notebook stays light) and
honours ``CUDA_VISIBLE_DEVICES``; each :class:`LocalGpu` describes itself in the
raw units of a Vast offer, so ``Query.matches`` checks ``image.require(...)``
against this machine the same way Vast checks it against offers::

    gpus = local_gpus()              # [] and gpus.reason on a machine without GPUs
    matching, report = match_local_gpus(gpu_ram >= 24, gpus)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vastnb import query as _query
from vastnb.query._core import norm_text
from vastnb.gpus._catalog import ROWS

__all__ = [
    "CATALOG",
    "GpuModel",
    "LocalGpu",
    "LocalGpuList",
    "NO_GPU_NOTICE",
    "by_name",
    "constant_for_nvidia_name",
    "local_gpus",
    "match_local_gpus",
    "no_match_message",
    "parse_nvidia_smi",
    "visible_gpus",
]

NO_GPU_NOTICE = (
    "no NVIDIA GPU found on this machine: workers run on the CPU; "
    "image.require(...) is checked when the deployment runs on Vast"
)

NVIDIA_SMI_ARGS = (
    "--query-gpu=index,name,memory.total,compute_cap,uuid",
    "--format=csv,noheader,nounits",
)


@dataclass(frozen=True)
class GpuModel:
    """Public spec facts for one Vast GPU name (conventions in ``vastnb.gpus._catalog``)."""

    constant: str  # the vastnb.query name, e.g. "H100_SXM"
    name: str  # the Vast name, e.g. "H100 SXM"
    vendor: str  # "NVIDIA" or "AMD"
    segment: str  # "data center", "consumer", "professional" or "AMD"
    memory_gb: float
    architecture: str
    compute_capability: str | None  # "9.0"; None for AMD
    memory_bandwidth_gbs: float
    fp16_tflops: float  # dense FP16/BF16 tensor (FP32 accumulate), or plain FP16/FP32 without tensor cores
    release_year: int


CATALOG: dict[str, GpuModel] = {
    row[0]: GpuModel(row[0], _query.GPU_NAMES[row[0]], *row[1:]) for row in ROWS
}


_BY_NAME = {norm_text(model.name): model for model in CATALOG.values()}


def by_name(name: str) -> GpuModel | None:
    """The catalog entry for a Vast GPU name (``"RTX 4090"``, any case, ``_`` for spaces), or None."""
    return _BY_NAME.get(norm_text(name))


# --------------------------------------------------------------------------- nvidia-smi names
# Models whose Vast name depends on a form factor or edition nvidia-smi spells its own way.
_RULES: tuple[tuple[re.Pattern[str], str | None], ...] = tuple(
    (re.compile(pattern), constant)
    for pattern, constant in (
        (r"\bA100\b.*\bSXM", "A100_SXM4"),  # "NVIDIA A100-SXM4-80GB"
        (r"\bA100\b.*\bPCIE\b", "A100_PCIE"),  # "NVIDIA A100-PCIE-40GB", "NVIDIA A100 80GB PCIe"
        (r"\bA800\b.*\bPCIE\b", "A800_PCIE"),
        (r"\bA800\b", None),  # A800 SXM4: no Vast constant
        (r"\bH100\b.*\bPCIE\b", "H100_PCIE"),
        (r"\bH100\b.*\bNVL\b", "H100_NVL"),
        (r"\bH100\b.*\b(SXM|HBM3\b)", "H100_SXM"),  # "NVIDIA H100 80GB HBM3" is the SXM5 part
        (r"\bV100S\b", "Tesla_V100"),
        (r"\bRTX PRO 6000\b.*\bMAX-Q\b", "RTX_PRO_6000_Max_Q"),
        (r"\bRTX PRO 6000\b.*\bSERVER\b", "RTX_PRO_6000_S"),
        (r"\bRTX PRO 6000\b.*\bWORKSTATION\b", "RTX_PRO_6000_WS"),
        (r"\bRTX PRO 4000\b.*\b(LAPTOP|MOBILE)\b", "RTX_PRO_4000_Mobile"),
        (r"\bGTX 970\b", "GeForce_970"),
    )
)
_STRIP = re.compile(
    r"\(.*?\)|\bWITH MAX-Q DESIGN\b|\b\d+GB?\b|\bHBM\w*|\bSXM\d?\b|\bPCIE\b"
)
_NOISE = {"NVIDIA", "GEFORCE", "TESLA", "GPU", "GENERATION", "EDITION", "BLACKWELL", "SFF", "COLLECTORS"}
_SPELLING = {"SUPER": "S", "QUADRO": "Q"}


def _tokens(name: str) -> tuple[str, ...]:
    """Order-free tokens of a GPU name: 'NVIDIA GeForce RTX 4070 Ti SUPER' ~ 'RTX 4070S Ti'."""
    words = re.findall(r"[A-Z]+|\d+", _STRIP.sub(" ", name.upper()))
    return tuple(sorted(_SPELLING.get(w, w) for w in words if w not in _NOISE))


def _token_index() -> dict[tuple[str, ...], str]:
    index: dict[tuple[str, ...], str] = {}
    ambiguous = set()
    for constant, name in _query.GPU_NAMES.items():
        key = _tokens(name)
        if key in index:
            ambiguous.add(key)  # e.g. A100 PCIE / A100 SXM4 once the form factor is stripped
        index[key] = constant
    return {key: constant for key, constant in index.items() if key not in ambiguous}


_TOKEN_INDEX = _token_index()


def constant_for_nvidia_name(name: str) -> str | None:
    """The ``vastnb.query`` constant for a name as nvidia-smi prints it, or None if Vast has none.

    ``"NVIDIA H100 80GB HBM3"`` -> ``"H100_SXM"``, ``"NVIDIA GeForce RTX 4090"`` -> ``"RTX_4090"``.
    """
    upper = " ".join(name.upper().split())
    for pattern, constant in _RULES:
        if pattern.search(upper):
            return constant
    return _TOKEN_INDEX.get(_tokens(upper))


# --------------------------------------------------------------------------- local GPUs
@dataclass(frozen=True)
class LocalGpu:
    """One GPU of this machine, as nvidia-smi reports it.

    ``index`` is nvidia-smi's (PCI order); pin a worker to this GPU with
    ``CUDA_VISIBLE_DEVICES=<uuid>``, which does not depend on CUDA's device order.
    """

    index: int
    name: str  # as nvidia-smi prints it, e.g. "NVIDIA H100 80GB HBM3"
    constant: str | None  # the vastnb.query constant, e.g. "H100_SXM"; None if Vast has no such GPU
    memory_mb: int  # MiB, the number Vast lists as gpu_ram
    compute_capability: str  # "9.0"; "" if nvidia-smi could not say
    uuid: str

    @property
    def vast_name(self) -> str | None:
        return _query.GPU_NAMES[self.constant] if self.constant is not None else None

    def describe(self) -> dict[str, Any]:
        """This GPU as a one-GPU Vast offer, in raw units, for :meth:`Query.matches`.

        ``compute_cap`` is Vast's encoding, the capability x 100 (9.0 -> 900).
        An unknown model keeps its nvidia-smi name as ``gpu_name``.
        """
        desc: dict[str, Any] = {
            "gpu_name": self.vast_name or self.name,
            "gpu_ram": self.memory_mb,
            "gpu_total_ram": self.memory_mb,
            "num_gpus": 1,
            "gpu_arch": "nvidia",
        }
        try:
            desc["compute_cap"] = round(float(self.compute_capability) * 100)
        except ValueError:
            pass
        return desc

    def label(self) -> str:
        return f"GPU {self.index} {self.name}"


class LocalGpuList(list[LocalGpu]):
    """A list of :class:`LocalGpu`; when empty, ``reason`` says why (for a notice)."""

    def __init__(self, gpus: Iterable[LocalGpu] = (), reason: str | None = None) -> None:
        super().__init__(gpus)
        self.reason = reason


def parse_nvidia_smi(text: str) -> list[LocalGpu]:
    """GPUs from ``nvidia-smi`` run with :data:`NVIDIA_SMI_ARGS` (csv, no header, no units).

    Raises ValueError naming the first line that is not ``index, name, memory, cc, uuid``.
    """
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        try:
            if len(fields) != 5 or not fields[1] or not fields[4]:
                raise ValueError
            index, memory_mb = int(fields[0]), int(fields[2])
        except ValueError:
            raise ValueError(
                f"unexpected nvidia-smi output line {line.strip()!r}: expected "
                "'index, name, memory.total, compute_cap, uuid'"
            ) from None
        name, cc, uuid = fields[1], fields[3], fields[4]
        constant = constant_for_nvidia_name(name)
        if not re.fullmatch(r"\d+\.\d+", cc):  # "[N/A]" on some drivers: take the catalog's
            model = CATALOG.get(constant) if constant is not None else None
            cc = (model.compute_capability or "") if model is not None else ""
        gpus.append(LocalGpu(index, name, constant, memory_mb, cc, uuid))
    return gpus


def visible_gpus(gpus: list[LocalGpu], cuda_visible_devices: str | None) -> tuple[list[LocalGpu], str | None]:
    """The GPUs ``CUDA_VISIBLE_DEVICES`` leaves visible, in its order, and why none are if so.

    Entries are nvidia-smi indices or (prefixes of) UUIDs. As in CUDA, an empty
    value hides every GPU and the list stops at the first entry naming no GPU.
    Integer entries assume CUDA's order matches nvidia-smi's (true for
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` or identical GPUs); UUIDs are always exact.
    """
    if cuda_visible_devices is None:
        return list(gpus), None
    chosen: list[LocalGpu] = []
    for entry in (e.strip() for e in cuda_visible_devices.split(",")):
        if entry.lstrip("-").isdigit():
            found = [g for g in gpus if g.index == int(entry)]
        elif entry.startswith("GPU-"):
            found = [g for g in gpus if g.uuid.startswith(entry)]
        else:
            found = []
        if len(found) != 1 or found[0] in chosen:
            break
        chosen.append(found[0])
    if chosen:
        return chosen, None
    return [], (
        f"CUDA_VISIBLE_DEVICES={cuda_visible_devices!r} hides all {len(gpus)} GPU(s) nvidia-smi lists"
    )


def local_gpus(timeout: float = 10.0) -> LocalGpuList:
    """This machine's NVIDIA GPUs that ``CUDA_VISIBLE_DEVICES`` leaves visible.

    Never raises: if nvidia-smi is missing, fails or hides everything, the list
    is empty and ``.reason`` says why.
    """
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return LocalGpuList(reason="nvidia-smi is not on PATH")
    try:
        done = subprocess.run(
            [exe, *NVIDIA_SMI_ARGS], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return LocalGpuList(reason=f"nvidia-smi did not answer within {timeout:g} s")
    except OSError as exc:
        return LocalGpuList(reason=f"nvidia-smi could not be run: {exc}")
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[0]
        return LocalGpuList(reason=f"nvidia-smi exited with status {done.returncode}: {said}")
    try:
        gpus = parse_nvidia_smi(done.stdout)
    except ValueError as exc:
        return LocalGpuList(reason=str(exc))
    if not gpus:
        return LocalGpuList(reason="nvidia-smi lists no GPUs")
    visible, reason = visible_gpus(gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))
    return LocalGpuList(visible, reason)


# --------------------------------------------------------------------------- matching
def match_local_gpus(query: _query.Query, gpus: Iterable[LocalGpu]) -> tuple[list[LocalGpu], list[str]]:
    """The GPUs meeting ``query``, and one report line per GPU saying whether and why not."""
    matching, report = [], []
    for gpu in gpus:
        failed = query.mismatches(gpu.describe())
        if failed:
            report.append(f"{gpu.label()}: fails {'; '.join(failed)}")
        else:
            matching.append(gpu)
            report.append(f"{gpu.label()}: matches")
    return matching, report


def no_match_message(query: _query.Query, gpus: Iterable[LocalGpu]) -> str:
    """The text of ``NoMatchingGpu``: each local GPU with why it fails, and how to fix it."""
    try:
        source = query.to_source()
    except ValueError:
        source = query.unparse_query()
    gpus = list(gpus)
    if not gpus:
        return (
            f"image.require({source}) cannot be met here: no NVIDIA GPU found on this machine. "
            'Run the deployment on Vast with Deployment(..., backend="vast"), or drop the '
            "requirement to run workers on the CPU."
        )
    _, report = match_local_gpus(query, gpus)
    lines = "\n".join(f"  {line}" for line in report)
    return (
        f"image.require({source}) matches none of this machine's GPUs:\n{lines}\n"
        "Loosen image.require(...) so one of these GPUs qualifies, or run the deployment on Vast "
        'with Deployment(..., backend="vast").'
    )
