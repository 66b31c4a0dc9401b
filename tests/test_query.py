"""vastnb.query against the official vastai.data.query: names, dicts, query strings, errors, matching."""

from __future__ import annotations

import copy
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vastai.data import query as vq

import vastnb.query as q
from vastnb.errors import ConfigurationError
from vastnb.query import (
    H100_SXM,
    RAW_UNIT_FACTORS,
    RTX_3090,
    RTX_4090,
    Column,
    Query,
    compute_cap,
    cpu_cores,
    cpu_ram,
    dph_total,
    duration,
    geolocation,
    gpu_name,
    gpu_ram,
    gpu_ram_GB,
    gpu_total_ram,
    num_gpus,
    reliability,
    verified,
)

OPS = ["__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"]


# ----------------------------------------------------------------------------- names
def test_every_official_column_exists_with_the_same_name():
    official = {k: v.name for k, v in vars(vq).items() if isinstance(v, vq.Column)}
    ours = {k: v.name for k, v in vars(q).items() if isinstance(v, Column)}
    assert ours == official
    assert q.COLUMNS.keys() == official.keys()
    assert len(official) == 96


def test_every_official_gpu_constant_exists_with_the_same_value():
    official = {k: v for k, v in vars(vq).items() if isinstance(v, str) and not k.startswith("_")}
    assert q.GPU_NAMES == official
    assert all(getattr(q, k) == v for k, v in official.items())
    assert (q.RTX_4090, q.H100_SXM, q.InstinctMI250X) == ("RTX 4090", "H100 SXM", "InstinctMI250X")
    assert len(set(official.values())) == len(official)  # to_source can map names back


def test_all_lists_the_public_names():
    assert set(q.__all__) == {"COLUMNS", "Column", "GPU_NAMES", "OP_TO_STR", "Query", "RAW_UNIT_FACTORS"} | set(
        q.COLUMNS
    ) | set(q.GPU_NAMES)
    assert all(hasattr(q, name) for name in q.__all__)
    assert q.OP_TO_STR == vq.OP_TO_STR


# ----------------------------------------------------------------------------- parity
RAW_CASES = [  # (column, value in vastnb's unit, value in Vast's raw unit)
    ("gpu_ram", 48, 48000),
    ("gpu_ram", 23.9, 23900.0),
    ("gpu_ram", 0.5, 500.0),
    ("cpu_ram", 64, 64000),
    ("gpu_total_ram", 160, 160000),
    ("duration", 3, 259200),
    ("duration", 0.7, 60480.0),
    ("duration", 1.5, 129600.0),
    ("cpu_cores", 16, 16),
    ("dph_total", 2.0, 2.0),
    ("reliability", 0.99, 0.99),
    ("compute_cap", 800, 800),
    ("gpu_name", RTX_4090, RTX_4090),
    ("gpu_name", "RTX_4090", "RTX_4090"),
    ("verified", False, False),
    ("static_ip", True, True),
    ("geolocation", "US", "US"),
    ("cpu_name", "AMD EPYC 7B13", "AMD EPYC 7B13"),
    ("driver_version", None, None),
    ("gpu_ram_GB", 24, 24),  # the *_GB aliases already take GB: Vast scales them itself
]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(("column", "ours", "raw"), RAW_CASES)
def test_operators_build_the_official_dict_in_raw_units(column, ours, raw, op):
    mine = getattr(Column(column), op)(ours)
    official = getattr(vq.Column(column), op)(raw)
    assert mine.query == official.query
    assert mine.unparse_query() == official.unparse_query()


def test_documented_units_hold():
    assert (gpu_ram >= 48).query == {"gpu_ram": {"gte": 48000}}
    assert (gpu_ram >= 48).unparse_query() == "gpu_ram>=48" == (vq.gpu_ram >= 48000).unparse_query()
    assert (vq.gpu_ram >= 48).unparse_query() == "gpu_ram>=0.048"  # the official pitfall we avoid
    assert (duration >= 7).query == {"duration": {"gte": 604800}}
    assert (duration >= 7).unparse_query() == "duration>=7"
    assert (cpu_ram > 31.5).unparse_query() == "cpu_ram>31.5"
    assert RAW_UNIT_FACTORS == {"cpu_ram": 1000, "gpu_ram": 1000, "gpu_total_ram": 1000, "duration": 86400}


LIST_CASES = [
    ("gpu_name", [RTX_4090, H100_SXM]),
    ("gpu_name", ["RTX 4090"]),
    ("gpu_name", [q.RTX_PRO_6000_Max_Q, q.P104_100, q.RTX_3060_laptop]),
    ("geolocation", ["TW", "SE"]),
    ("cpu_cores", [8, 16, 32]),
    ("reliability", [0.9, 0.99]),
    ("static_ip", [True, False]),
]


@pytest.mark.parametrize(("column", "values"), LIST_CASES)
@pytest.mark.parametrize("method", ["in_", "notin_"])
def test_in_and_notin_match_the_official(column, values, method):
    mine = getattr(Column(column), method)(values)
    official = getattr(vq.Column(column), method)(list(values))
    assert mine.query == official.query
    assert mine.unparse_query() == official.unparse_query()


def test_in_formatting_examples():
    assert gpu_name.in_([RTX_4090, H100_SXM]).unparse_query() == "gpu_name in RTX_4090,H100_SXM"
    assert geolocation.notin_(("CN", "VN")).unparse_query() == "geolocation notin CN,VN"
    assert geolocation.notin_(("CN", "VN")).query == {"geolocation": {"notin": ["CN", "VN"]}}  # a list


def test_search_defaults_match_the_official():
    for kwargs in [{}, {"verified": False}, {"rented": None}, {"verified": None, "rentable": None, "rented": None}]:
        mine, official = Query.search_defaults(**kwargs), vq.Query.search_defaults(**kwargs)
        assert mine.query == official.query
        assert mine.unparse_query() == official.unparse_query()
    assert Query.search_defaults().unparse_query() == "verified=true rentable=true rented=false"


def test_combined_query_matches_the_official_string():
    mine = Query.search_defaults()
    for part in [gpu_name.in_([RTX_4090, H100_SXM]), gpu_ram >= 24, gpu_ram <= 80, cpu_cores >= 16, dph_total < 2.5]:
        mine.extend(part)
    official = vq.Query.search_defaults()
    for part in [
        vq.gpu_name.in_([vq.RTX_4090, vq.H100_SXM]),
        vq.gpu_ram >= 24000,
        vq.gpu_ram <= 80000,
        vq.cpu_cores >= 16,
        vq.dph_total < 2.5,
    ]:
        official.extend(part)
    assert mine.query == official.query
    assert mine.unparse_query() == official.unparse_query() == (
        "verified=true rentable=true rented=false gpu_name in RTX_4090,H100_SXM "
        "gpu_ram>=24 gpu_ram<=80 cpu_cores>=16 dph_total<2.5"
    )


_scalar = st.one_of(
    st.booleans(),
    st.none(),
    st.integers(-10**6, 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(alphabet="abcXYZ _-019", max_size=12),
)
_number = st.one_of(st.integers(0, 10**7), st.floats(0, 1e7, allow_nan=False))
_plain_ops = st.dictionaries(
    st.sampled_from(["eq", "neq", "lt", "lte", "gt", "gte"]), _scalar, min_size=1
) | st.dictionaries(st.sampled_from(["in", "notin"]), st.lists(_scalar, min_size=1, max_size=4), min_size=1)
_query_dicts = st.dictionaries(
    st.sampled_from(["gpu_name", "cpu_cores", "verified", "geolocation", "dph_total", "cpu_name"]), _plain_ops
).flatmap(
    lambda plain: st.dictionaries(
        st.sampled_from(sorted(RAW_UNIT_FACTORS)),
        st.dictionaries(st.sampled_from(["eq", "neq", "lt", "lte", "gt", "gte"]), _number, min_size=1),
    ).map(lambda scaled: {**plain, **scaled})
)


@settings(max_examples=300, deadline=None)
@given(_query_dicts)
def test_unparse_is_the_official_for_any_dict(query_dict):
    assert Query(copy.deepcopy(query_dict)).unparse_query() == vq.Query(copy.deepcopy(query_dict)).unparse_query()


@settings(max_examples=300, deadline=None)
@given(_query_dicts)
def test_to_source_evaluates_back_to_the_same_dict(query_dict):
    source = Query(copy.deepcopy(query_dict)).to_source()
    rebuilt = Query({})
    for part in eval(f"({source},)", vars(q)) if source else ():
        rebuilt.extend(part)
    defaults = {"verified": True, "rentable": True, "rented": False}
    expected = {
        column: {op: v for op, v in ops.items() if not (op == "eq" and v is defaults.get(column, ...))}
        for column, ops in query_dict.items()
    }
    _assert_same(rebuilt.query, {column: ops for column, ops in expected.items() if ops})


def _assert_same(got, want):
    """Equal, with floats in scaled columns equal to the 6 decimals vastnb keeps of raw MB/s."""
    assert got.keys() == want.keys()
    for column, ops in want.items():
        assert got[column].keys() == ops.keys()
        for op, value in ops.items():
            if column in RAW_UNIT_FACTORS:
                assert got[column][op] == pytest.approx(value, rel=1e-12, abs=1e-6)
            else:
                assert got[column][op] == value and type(got[column][op]) is type(value)


# ----------------------------------------------------------------------------- Query API
def test_extend_conflict_names_column_and_op_and_the_fix():
    query = Query.search_defaults().extend(gpu_ram >= 48)
    with pytest.raises(ConfigurationError) as info:
        query.extend(gpu_ram >= 24)
    assert isinstance(info.value, ValueError)
    assert str(info.value) == (
        "Cannot redefine op 'gte' for column 'gpu_ram': the query already requires gpu_ram>=48, "
        "and the new requirement is gpu_ram>=24. Replace the earlier requirement instead of adding "
        "a second one with the same column and op (one column may carry different ops, e.g. "
        "gpu_ram >= 16, gpu_ram <= 48)."
    )
    assert query.query["gpu_ram"] == {"gte": 48000}  # unchanged
    with pytest.raises(ValueError, match=r"^Cannot redefine op\(s\) \{'eq'\} for column 'verified'$"):
        vq.Query.search_defaults().extend(vq.verified == True)  # noqa: E712  (the official raises too)
    with pytest.raises(ConfigurationError, match="^Cannot redefine op 'eq' for column 'verified'"):
        Query.search_defaults().extend(verified == True)  # noqa: E712


def test_extend_is_all_or_nothing_and_copies_values():
    names = [RTX_4090]
    query = Query.search_defaults().extend(cpu_cores >= 8)
    with pytest.raises(ConfigurationError):
        query.extend(Query({"num_gpus": {"eq": 2}, "cpu_cores": {"gte": 4}}))
    assert "num_gpus" not in query.query
    query.extend(gpu_name.in_(names)).extend(gpu_ram >= 16).extend(gpu_ram <= 48)
    names.append(RTX_3090)
    assert query.query["gpu_name"] == {"in": [RTX_4090]}
    assert query.query["gpu_ram"] == {"gte": 16000, "lte": 48000}


def test_copy_repr_equality_and_truth():
    query = Query.search_defaults().extend(gpu_name.in_([RTX_4090]))
    clone = query.copy()
    clone.query["gpu_name"]["in"].append(RTX_3090)
    assert query.query["gpu_name"]["in"] == [RTX_4090]
    assert repr(query) == "Query('verified=true rentable=true rented=false gpu_name in RTX_4090')"
    assert (query == query.copy()) is False  # identity, like the official Query
    with pytest.raises(ConfigurationError) as info:
        16 <= gpu_ram <= 48  # noqa: B015
    assert str(info.value) == (
        "A Query has no truth value (gpu_ram>=16). A chained comparison such as `16 <= gpu_ram <= 48` "
        "keeps only its last half: write `gpu_ram >= 16, gpu_ram <= 48`."
    )
    assert repr(gpu_ram) == "Column('gpu_ram')"


def test_to_source_uses_constants_units_and_skips_defaults():
    query = Query.search_defaults().extend(gpu_name.in_([RTX_4090, H100_SXM])).extend(gpu_ram >= 24)
    assert query.to_source() == "gpu_name.in_([RTX_4090, H100_SXM]), gpu_ram >= 24"
    query.extend(Query({"id": {"neq": 7}, "duration": {"gt": 60480.0}, "geolocation": {"eq": "US"}}))
    query.extend(Query({"custom_field": {"lt": 1.5}, "gpu_name": {"neq": "Mystery GPU"}}))
    source = query.to_source()
    assert source == (
        "gpu_name.in_([RTX_4090, H100_SXM]), gpu_name != 'Mystery GPU', gpu_ram >= 24, id_ != 7, "
        "duration > 0.7, geolocation == 'US', Column('custom_field') < 1.5"
    )
    rebuilt = Query.search_defaults()
    for part in eval(f"({source},)", vars(q)):
        rebuilt.extend(part)
    assert rebuilt.query == query.query
    assert Query.search_defaults(verified=False).to_source() == "verified == False"
    assert Query.search_defaults().to_source() == ""


def test_to_vast_and_from_vast():
    query = Query.search_defaults().extend(gpu_name.in_([RTX_4090])).extend(gpu_ram >= 24)
    official = query.to_vast()
    assert type(official) is vq.Query
    assert official.query == query.query
    official.query["gpu_name"]["in"].append(RTX_3090)
    assert query.query["gpu_name"]["in"] == [RTX_4090]
    assert official.unparse_query() == "verified=true rentable=true rented=false gpu_name in RTX_4090,RTX_3090 gpu_ram>=24"
    assert Query.from_vast(official).query == official.query  # made by to_vast(): raw units already, kept
    assert Query.from_vast(official).query is not official.query


# ----------------------------------------------------------------------------- the official SDK's own Query objects
@pytest.mark.parametrize("official, ours", [
    (vq.gpu_ram >= 48, gpu_ram >= 48),  # the docs: "Require minimum GPU RAM (in GB)"
    (vq.gpu_name.in_([vq.RTX_4090, vq.RTX_5090]), gpu_name.in_([RTX_4090, q.RTX_5090])),
    (vq.gpu_name == vq.H100_SXM, gpu_name == H100_SXM),
    (vq.cpu_cores >= 16, cpu_cores >= 16),
    (vq.cpu_ram > 15.5, cpu_ram > 15.5),
    (vq.duration >= 0.7, duration >= 0.7),
    (vq.dph_total < 2.0, dph_total < 2.0),
    (vq.gpu_name.notin_((vq.RTX_3090,)), gpu_name.notin_([RTX_3090])),
    (vq.Query.search_defaults(rented=None), Query.search_defaults(rented=None)),
])
def test_an_official_query_means_what_the_same_vastnb_query_means(official, ours):
    assert Query.from_vast(official).query == ours.query
    assert Query.coerce(official).unparse_query() == ours.unparse_query()


def test_the_docs_gpu_ram_is_gb_not_what_the_official_column_sends():
    official = vq.gpu_ram >= 48
    assert official.unparse_query() == "gpu_ram>=0.048"  # the SDK's own string: 48 MB
    converted = Query.from_vast(official)
    assert converted.query == {"gpu_ram": {"gte": 48_000}} and converted.unparse_query() == "gpu_ram>=48"
    assert converted.to_vast().unparse_query() == "gpu_ram>=48"  # what the Vast backend then sends


@pytest.mark.parametrize("official, message", [
    (vq.gpu_ram.in_([24, 48]), "gpu_ram.in_([24, 48]): Vast cannot match gpu_ram against a list (its parser "
                               "scales gpu_ram to MB one number at a time). Use gpu_ram >= low, gpu_ram <= high instead."),
    (vq.gpu_name.in_([]), "gpu_name.in_([]): the list is empty; Vast refuses a blank value. Give at least one value."),
    (vq.gpu_name == [vq.RTX_4090], "gpu_name=['RTX 4090']: a requirement's value must be a bool, a number, a "
                                   "string or None; got list."),
    (vq.gpu_ram >= "48", "gpu_ram>='48': gpu_ram takes a finite number (GB); got '48'."),
    (vq.Query({"gpu_ram": {"approx": 48}}), "Query(...): unknown op 'approx' for column 'gpu_ram'; use one of "
                                            "eq, neq, gt, gte, lt, lte, in, notin."),
])
def test_an_official_query_gets_vastnbs_checks(official, message):
    with pytest.raises(ConfigurationError) as info:
        Query.from_vast(official)
    assert str(info.value) == message


@pytest.mark.parametrize("value, shown", [
    (vq.gpu_ram, "vastai.data.query.Column('gpu_ram'). A column alone is no requirement: compare it, e.g. "
                 "`gpu_ram == ...` or `gpu_ram >= ...`."),
    (gpu_ram, "Column('gpu_ram'). A column alone is no requirement: compare it, e.g. `gpu_ram == ...` or "
              "`gpu_ram >= ...`."),
    ("gpu_ram >= 48", "'gpu_ram >= 48'."),
])
def test_coerce_refuses_what_is_not_a_filter(value, shown):
    with pytest.raises(ConfigurationError) as info:
        Query.coerce(value)
    assert str(info.value) == ("require() takes GPU filters such as `gpu_ram >= 16` or `gpu_name == RTX_4090` (from "
                               f"vastnb.query or vastai.data.query). Instead got {shown}")


def test_image_require_takes_the_docs_official_queries():
    import vastnb

    app = vastnb.Deployment("official-queries")
    image = app.image("vastai/base-image:@vastai-automatic-tag", 16)
    image.require(vq.gpu_name.in_([vq.RTX_4090, vq.RTX_5090]))
    image.require(vq.gpu_ram >= 24, vq.cpu_cores >= 16)
    assert image.requirement.unparse_query() == (
        "verified=true rentable=true rented=false gpu_name in RTX_4090,RTX_5090 gpu_ram>=24 cpu_cores>=16")
    assert image.requirement.query == Query.search_defaults().extend(gpu_name.in_([RTX_4090, q.RTX_5090])).extend(
        gpu_ram >= 24).extend(cpu_cores >= 16).query
    with pytest.raises(ConfigurationError) as info:
        image.require(vq.gpu_ram >= 48)  # the same column and op twice, as with vastnb's own
    assert str(info.value).startswith("Cannot redefine op 'gte' for column 'gpu_ram': the query already requires "
                                      "gpu_ram>=24, and the new requirement is gpu_ram>=48.")


def test_to_vast_without_the_sdk(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "vastai.data", None)
    with pytest.raises(ImportError) as info:
        (gpu_ram >= 24).to_vast()
    assert str(info.value) == (
        "Query.to_vast() needs the official Vast SDK, which is not installed. "
        "Install it with `pip install vastnb[vast]`."
    )


# ----------------------------------------------------------------------------- validation
def test_bad_values_are_refused_with_the_fix():
    with pytest.raises(ConfigurationError) as info:
        gpu_name.in_(RTX_4090)
    assert str(info.value) == (
        "gpu_name.in_('RTX 4090'): in_ takes a list of values, e.g. gpu_name.in_([RTX_4090, H100_SXM])."
    )
    with pytest.raises(ConfigurationError) as info:
        gpu_name.notin_([])
    assert str(info.value) == "gpu_name.notin_([]): the list is empty; Vast refuses a blank value. Give at least one value."
    with pytest.raises(ConfigurationError) as info:
        gpu_ram.in_([24, 48])
    assert str(info.value) == (
        "gpu_ram.in_([24, 48]): Vast cannot match gpu_ram against a list (its parser scales gpu_ram "
        "to MB one number at a time). Use gpu_ram >= low, gpu_ram <= high instead."
    )
    with pytest.raises(ConfigurationError) as info:
        gpu_ram >= "24"
    assert str(info.value) == "gpu_ram>='24': gpu_ram takes a finite number (GB); got '24'."
    with pytest.raises(ConfigurationError) as info:
        duration > float("inf")
    assert str(info.value) == "duration>inf: duration takes a finite number (days); got inf."
    with pytest.raises(ConfigurationError) as info:
        num_gpus == [1, 2]
    assert str(info.value) == "num_gpus=[1, 2]: a requirement's value must be a bool, a number, a string or None; got list."
    with pytest.raises(ConfigurationError) as info:
        Query({"gpu_ram": {"atleast": 5}})
    assert str(info.value) == (
        "Query(...): unknown op(s) ['atleast'] for column 'gpu_ram'; use one of eq, neq, gt, gte, lt, lte, in, notin."
    )
    with pytest.raises(ConfigurationError, match=re.escape("the ops for column 'gpu_ram' must be a dict")):
        Query({"gpu_ram": 5})


def test_numpy_scalars_become_plain_numbers():
    import numpy as np
    assert (gpu_ram >= np.int64(24)).query == {"gpu_ram": {"gte": 24000}}
    assert type((cpu_cores >= np.int64(8)).query["cpu_cores"]["gte"]) is int
    assert (reliability > np.float32(0.5)).query == {"reliability": {"gt": 0.5}}


# ----------------------------------------------------------------------------- matching
H100 = {"gpu_name": "H100 SXM", "gpu_ram": 81559, "gpu_total_ram": 81559, "compute_cap": 900, "num_gpus": 1}
T4 = {"gpu_name": "Tesla T4", "gpu_ram": 15360, "gpu_total_ram": 15360, "compute_cap": 750, "num_gpus": 1}


def test_matches_a_local_gpu_and_skips_what_it_lacks():
    query = Query.search_defaults().extend(gpu_ram >= 48).extend(dph_total < 2).extend(compute_cap >= 800)
    assert query.matches(H100)
    assert not query.matches(T4)
    assert query.mismatches(T4) == ["gpu_ram>=48 (this GPU has 15.36 GB)", "compute_cap>=800 (this GPU has 750)"]
    assert (gpu_ram >= 81.559).matches(H100) and not (gpu_ram > 81.559).matches(H100)


def test_gpu_names_compare_ignoring_case_spaces_and_underscores():
    assert (gpu_name == H100_SXM).matches(H100)
    assert (gpu_name == "h100_sxm").matches(H100)
    assert (gpu_name.in_(["RTX_4090", "H100  SXM"])).matches(H100)
    assert (gpu_name.notin_([RTX_4090])).matches(H100)
    assert (gpu_name != "H100 SXM").mismatches(H100) == ["gpu_name!=H100_SXM (this GPU has H100 SXM)"]
    assert gpu_name.in_([RTX_4090, RTX_3090]).mismatches(T4) == [
        "gpu_name in RTX_4090,RTX_3090 (this GPU has Tesla T4)"
    ]


def test_matching_offers_with_every_op_and_aliases():
    offer = {"gpu_name": "RTX 4090", "gpu_ram": 24564, "dph_total": 0.4, "verified": True, "rented": False,
             "reliability": 0.995, "geolocation": "US", "num_gpus": 2}
    assert Query.search_defaults().extend(num_gpus == 2).extend(reliability > 0.99).matches(offer)
    assert (num_gpus != 2).mismatches(offer) == ["num_gpus!=2 (this GPU has 2)"]
    assert (dph_total <= 0.3).mismatches(offer) == ["dph_total<=0.3 (this GPU has 0.4)"]
    assert (gpu_ram_GB >= 24).matches(offer) and (gpu_ram_GB > 24.6).mismatches(offer) == [
        "gpu_ram_GB>24.6 (this GPU has 24.564)"
    ]
    assert (gpu_total_ram >= 40).matches(offer)  # not described: not applicable
    assert (geolocation.notin_(["CN", "VN"])).matches(offer)
    assert (geolocation == "us").matches(offer)
    assert (verified == False).mismatches(offer) == ["verified=false (this GPU has True)"]  # noqa: E712
    assert (cpu_cores >= 8).matches({"cpu_cores": None})
    assert (gpu_name > 5).mismatches(offer) == ["gpu_name>5 (this GPU has RTX 4090)"]


def test_every_constant_is_exported_by_name():
    from vastnb.query import _names

    assert _names.__all__ == [*_names.COLUMNS, *_names.GPU_NAMES]
