"""The GPU picker: the code and query it stands for, applying it to an image, local GPUs, offers, prices."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from vastnb import query as q
from vastnb.deployment import Image
from vastnb.errors import ConfigurationError
from vastnb.events import WorkerState
from vastnb.gpus import LocalGpu
from vastnb.widgets import GpuPicker, picker as picker_module

from .conftest import wait_until
from .scripted import ScriptedSource

DEFAULTS = "verified=true rentable=true rented=false"
RTX4090 = LocalGpu(0, "NVIDIA GeForce RTX 4090", "RTX_4090", 24564, "8.9", "GPU-aaaa")
RTX3060 = LocalGpu(1, "NVIDIA GeForce RTX 3060", "RTX_3060", 12288, "8.6", "GPU-bbbb")


def make(**kwargs: Any) -> GpuPicker:
    kwargs.setdefault("local", [])
    return GpuPicker(kwargs.pop("image", None) or Image("vastai/pytorch:latest"), **kwargs)


CASES = [
    ((), {}, "", DEFAULTS),
    (("RTX_4090",), {}, "image.require(gpu_name == RTX_4090)", f"{DEFAULTS} gpu_name=RTX_4090"),
    (
        ("RTX_4090", "H100_SXM"), {"min_gpu_ram": 24},
        "image.require(gpu_name.in_([RTX_4090, H100_SXM]), gpu_ram >= 24)",
        f"{DEFAULTS} gpu_name in RTX_4090,H100_SXM gpu_ram>=24",
    ),
    (
        ("H100_SXM", "A100_SXM4"),
        {"min_gpu_ram": 80, "num_gpus": 2, "max_price": 3.0, "min_reliability": 0.98, "min_cpu_cores": 16, "min_disk": 100},
        "image.require(gpu_name.in_([H100_SXM, A100_SXM4]), gpu_ram >= 80, num_gpus == 2, dph_total <= 3.0, "
        "reliability >= 0.98, cpu_cores_effective >= 16, disk_space >= 100)",
        f"{DEFAULTS} gpu_name in H100_SXM,A100_SXM4 gpu_ram>=80 num_gpus=2 dph_total<=3.0 reliability>=0.98 "
        "cpu_cores_effective>=16 disk_space>=100",
    ),
    (("RX 7900 XTX",), {"min_gpu_ram": 20}, "image.require(gpu_name == RX_7900_XTX, gpu_ram >= 20)",
     f"{DEFAULTS} gpu_name=RX_7900_XTX gpu_ram>=20"),
    ((), {"min_gpu_ram": 48}, "image.require(gpu_ram >= 48)", f"{DEFAULTS} gpu_ram>=48"),
    ((), {"max_price": 0.5, "num_gpus": 1}, "image.require(num_gpus == 1, dph_total <= 0.5)", f"{DEFAULTS} num_gpus=1 dph_total<=0.5"),
    (("H100_SXM", "RTX_4090", "L40S", "RTX_A6000", "InstinctMI250X"), {},
     "image.require(gpu_name.in_([H100_SXM, RTX_4090, L40S, RTX_A6000, InstinctMI250X]))",
     f"{DEFAULTS} gpu_name in H100_SXM,RTX_4090,L40S,RTX_A6000,InstinctMI250X"),
]


@pytest.mark.parametrize("models, settings, code, query_string", CASES)
def test_code_and_query_string(models: tuple[str, ...], settings: dict[str, Any], code: str, query_string: str) -> None:
    picker = make().select(*models).set(**settings)
    assert picker.code == code
    assert picker.query_string == query_string
    assert picker.models == [_constant(m) for m in models]


def _constant(name: str) -> str:
    from vastnb.gpus import by_name

    model = by_name(name)
    assert model is not None
    return model.constant


@pytest.mark.parametrize("models, settings, code, query_string", [c for c in CASES if c[2]])
def test_running_the_generated_code_gives_the_same_query(
    models: tuple[str, ...], settings: dict[str, Any], code: str, query_string: str
) -> None:
    picker = make().select(*models).set(**settings)
    fresh = Image("vastai/pytorch:latest")  # the notebook run again, with the generated line
    exec(f"{picker.imports}\n{picker.code}", {"image": fresh})
    assert fresh.requirement.unparse_query() == query_string
    picker.apply()
    assert picker.image.requirement.unparse_query() == query_string  # Apply gives the image the same


def test_widget_controls_drive_the_query() -> None:
    picker = make()
    picker.model_lists["consumer"].value = ("RTX_4090",)
    picker.model_lists["data center"].value = ("H100_SXM",)
    picker.min_gpu_ram.value = 24
    assert picker.code == "image.require(gpu_name.in_([RTX_4090, H100_SXM]), gpu_ram >= 24)"
    picker.model_lists["consumer"].value = ()
    assert picker.code == "image.require(gpu_name == H100_SXM, gpu_ram >= 24)"
    assert "H100 SXM" in picker._chips.value and "RTX 4090" not in picker._chips.value


def test_filter_keeps_the_selection() -> None:
    picker = make().select("RTX_4090", "H100_SXM")
    picker._filter.value = "4090"
    consumer = [v for _, v in picker.model_lists["consumer"].options]
    assert "RTX_4090" in consumer and "RTX_3060" not in consumer
    assert picker.model_lists["data center"].options == ()
    assert picker.models == ["RTX_4090", "H100_SXM"]
    picker._filter.value = ""
    assert picker.model_lists["data center"].value == ("H100_SXM",)


def test_a_list_the_filter_empties_says_no_match() -> None:
    picker = make()
    picker._filter.value = "4090"
    assert "no match for “4090”" in picker._heads["data center"].value
    assert "no match" not in picker._heads["consumer"].value
    picker._filter.value = ""
    assert all("no match" not in head.value for head in picker._heads.values())


def test_model_lists_show_memory_and_speed_grouped_by_segment() -> None:
    picker = make()
    assert list(picker.model_lists) == ["data center", "consumer", "professional", "AMD"]
    labels = dict((v, label) for label, v in picker.model_lists["data center"].options)
    assert labels["H100_SXM"] == "H100 SXM · 80 GB · 989 TF"
    assert "RX_7900_XTX" in [v for _, v in picker.model_lists["AMD"].options]


def test_select_rejects_unknown_models() -> None:
    with pytest.raises(ConfigurationError) as info:
        make().select("RTX 9999")
    assert str(info.value) == (
        "GpuPicker.select(): 'RTX 9999' is not a GPU model vastnb knows; use a constant from vastnb.query "
        "such as RTX_4090 or H100_SXM."
    )


def test_apply_replaces_what_the_picker_set_before() -> None:
    changes: list[str] = []

    def on_change(what: str) -> str:
        changes.append(what)
        return "new workers will use it"

    image = Image("vastai/pytorch:latest", on_change=on_change)
    image.require(q.cuda_max_good >= 12)
    picker = make(image=image).select("RTX_4090").set(min_gpu_ram=24)
    status = picker.apply()
    assert status == ("Applied: image.require(cuda_max_good >= 12, gpu_name == RTX_4090, gpu_ram >= 24) — "
                      "new workers will use it")
    assert image.requirement.unparse_query() == f"{DEFAULTS} cuda_max_good>=12 gpu_name=RTX_4090 gpu_ram>=24"
    picker.select("H100_SXM").set(min_gpu_ram=80)
    picker.apply()  # replaces, no "Cannot redefine" conflict
    assert image.requirement.unparse_query() == f"{DEFAULTS} cuda_max_good>=12 gpu_name=H100_SXM gpu_ram>=80"
    picker.select().set(min_gpu_ram=0)
    assert picker.apply() == "Applied: image.require(cuda_max_good >= 12) — new workers will use it"
    assert image.requirement.unparse_query() == f"{DEFAULTS} cuda_max_good>=12"
    assert changes == ["requirement"] * 4  # require() once, then three applies
    assert "✓" in picker._status.value


def test_apply_replaces_the_images_own_condition_on_the_pickers_columns() -> None:
    """The quickstart's image.require(gpu_ram >= 16), then the picker moved to 24 GB: Apply replaces, never raises."""
    image = Image("vastai/pytorch:latest")
    image.require(q.gpu_ram >= 16, q.cuda_max_good >= 12)
    picker = make(image=image)
    assert picker.min_gpu_ram.value == 16  # the picker starts from what the image requires
    picker.set(min_gpu_ram=24)
    assert picker.code == "image.require(cuda_max_good >= 12, gpu_ram >= 24)"  # the requirement, rebuilt
    assert picker.apply() == "Applied: image.require(cuda_max_good >= 12, gpu_ram >= 24)"
    assert image.requirement.unparse_query() == f"{DEFAULTS} cuda_max_good>=12 gpu_ram>=24"
    assert image.declared_requirement.unparse_query() == f"{DEFAULTS} gpu_ram>=16 cuda_max_good>=12"
    fresh = Image("vastai/pytorch:latest")
    exec(f"{picker.imports}\n{picker.code}", {"image": fresh})  # the shown line, pasted in place of the old one
    assert fresh.requirement.unparse_query() == image.requirement.unparse_query()
    picker.set(min_gpu_ram=0)
    picker.apply()  # "any" removes the condition the image declared on that column
    assert image.requirement.unparse_query() == f"{DEFAULTS} cuda_max_good>=12"


def test_apply_never_raises_into_the_kernel() -> None:
    class Refusing:
        requirement = None

        def set_picker_requirement(self, query: Any, columns: Any = ()) -> str:
            raise RuntimeError("the image is frozen")

    picker = make(image=Refusing()).select("RTX_4090")
    assert picker.apply() == "Not applied: the image is frozen"
    assert "Not applied" in picker._status.value


def test_local_gpus_match_or_say_why_not() -> None:
    picker = make(local=[RTX4090, RTX3060]).select("RTX_4090", "H100_SXM").set(min_gpu_ram=24)
    results = {gpu.index: failed for gpu, failed in picker.local_matches()}
    assert results[0] == []
    assert results[1][0] == "gpu_name in RTX_4090,H100_SXM (this GPU has RTX 3060)"
    assert results[1][1].startswith("gpu_ram>=24 (this GPU has ")
    html = picker.to_html()
    assert "GPU 0</b> RTX 4090" in html and "— matches" in html and "fails gpu_name in RTX_4090,H100_SXM" in html
    text = picker.to_text()
    assert "  GPU 0 RTX 4090: matches" in text and "  GPU 1 RTX 3060: fails gpu_name in RTX_4090,H100_SXM" in text


def test_no_local_gpu_says_why() -> None:
    from vastnb.gpus import LocalGpuList

    picker = make(local=LocalGpuList(reason="nvidia-smi is not on PATH"))
    assert "nvidia-smi is not on PATH; workers here run on the CPU." in picker.to_html()
    assert "  this machine: nvidia-smi is not on PATH" in picker.to_text()


OFFERS = [
    {"gpu_name": "RTX 4090", "num_gpus": 1, "dph_total": 0.35, "reliability": 0.99, "gpu_ram": 24564},
    {"gpu_name": "RTX 4090", "num_gpus": 2, "dph_total": 0.74, "reliability": 0.98, "gpu_ram": 24564},
    {"gpu_name": "H100 SXM", "num_gpus": 1, "dph_total": 2.19, "reliability": 0.995, "gpu_ram": 81559},
    {"gpu_name": "RTX 3060", "num_gpus": 1, "dph_total": 0.08, "reliability": 0.97, "gpu_ram": 12288},
]


def test_offers_count_and_cheapest() -> None:
    seen: list[str] = []

    def offers(query: q.Query) -> list[dict[str, Any]]:
        seen.append(query.unparse_query())
        return [o for o in OFFERS if query.matches(o)]

    picker = make(offers=offers)
    assert len(picker.wait_offers() or []) == 4
    picker.select("RTX_4090", "H100_SXM")
    found = picker.wait_offers()
    assert found is not None and len(found) == 3
    html = picker.to_html()
    assert "<b>3</b> matching offers · cheapest <b>$0.35/h</b>" in html and "(RTX 4090 ×1)" in html
    picker.set(max_price=0.3)
    assert picker.wait_offers() == []
    assert "no offer matches: loosen the requirement" in picker.to_html()
    assert seen[-1] == "gpu_name in RTX_4090,H100_SXM dph_total<=0.3"  # the picker's query, without search defaults
    picker.close()


def test_a_failing_offer_search_is_shown() -> None:
    def offers(query: q.Query) -> list[Any]:
        raise ConnectionError("api.vast.ai unreachable")

    picker = make(offers=offers)
    assert picker.wait_offers() is None
    assert "search failed: ConnectionError: api.vast.ai unreachable" in picker.to_html()
    picker.close()


def test_offer_searches_coalesce() -> None:
    """Eight slider moves while a search runs make one more search, with the last selection."""
    calls: list[str] = []
    searching, release = threading.Event(), threading.Event()

    def offers(query: q.Query) -> list[Any]:
        calls.append(query.unparse_query())
        searching.set()
        release.wait(10)
        return []

    picker = make(offers=offers)
    wait_until(searching.is_set, what="the first search")
    for gb in (8, 12, 16, 24, 32, 40, 48, 80):
        picker.set(min_gpu_ram=gb)
    release.set()
    picker.wait_offers()
    assert calls == ["", "gpu_ram>=80"]
    assert picker._offers_for == picker.query.unparse_query()  # the last selection was searched
    picker.close()


def test_price_performance_from_benchmarked_workers() -> None:
    src = ScriptedSource()
    src.worker("w-0", gpu="RTX_4090 #0", state=WorkerState.READY, perf_score=1800.0, price_per_hour=0.40)
    src.worker("w-1", gpu="RTX_4090 #1", state=WorkerState.READY, perf_score=2000.0, price_per_hour=0.36)
    src.worker("w-2", gpu="H100_SXM #2", state=WorkerState.READY, perf_score=5600.0)  # local: price from offers
    src.worker("w-3", gpu="L4 #3", state=WorkerState.LOADING)  # not benchmarked
    src.worker("w-4", gpu="RTX_4090 #4", state=WorkerState.STOPPED, perf_score=100.0, price_per_hour=9.0)  # gone: not counted
    picker = make(source=src, offers=lambda query: [o for o in OFFERS if query.matches(o)])
    picker.wait_offers()
    rows = picker.measured()
    assert [(r["model"], r["workers"], r["perf"], r["price"]) for r in rows] == [
        ("RTX 4090", 2, 1900.0, pytest.approx(0.38)),
        ("H100 SXM", 1, 5600.0, 2.19),
    ]
    assert rows[0]["per_dollar"] == pytest.approx(1900 * 3600 / 0.38)
    html = picker.to_html()
    assert "Measured price · performance" in html and "18M" in html and "9.21M" in html
    picker.close()


def test_price_performance_follows_the_source() -> None:
    src = ScriptedSource()
    picker = make(source=src)
    assert "Measured price" not in picker._out.value
    src.worker("w-0", gpu="RTX_4090 #0", state=WorkerState.READY, perf_score=1800.0, price_per_hour=0.40)
    wait_until(lambda: "Measured price" in picker._out.value, what="the price-performance table")
    picker.close()
    assert src.events._subscribers == []


def test_fallbacks_and_mimebundle(monkeypatch: pytest.MonkeyPatch) -> None:
    picker = make().select("RTX_4090")
    assert repr(picker) == picker.to_text()
    assert picker.to_text().splitlines()[:3] == [
        "GPU picker", "  code:  image.require(gpu_name == RTX_4090)", f"  query: {DEFAULTS} gpu_name=RTX_4090",
    ]
    assert set(picker._repr_mimebundle_()) == {"text/plain", "text/html"}
    monkeypatch.setattr(picker_module.h, "widget_frontend", lambda: True)
    bundle = picker._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == picker.widget.model_id
