"""GPU and offer filters with the semantics of the official ``vastai.data.query``.

``gpu_ram >= 48`` builds a :class:`Query`; ``image.require(...)`` collects them.
The names, operators, ``Query.query`` dict format (``{column: {op: value}}`` in
Vast's raw units) and ``unparse_query()`` string match the official SDK, with
one deliberate difference: the documented units are true. Vast's docs say
``gpu_ram >= 48`` means 48 GB, but the official ``Column`` stores the number as
given and ``unparse_query()`` divides it by 1000 (``gpu_ram>=0.048``). Here the
columns in :data:`RAW_UNIT_FACTORS` take the documented unit (GB for
``gpu_ram``, ``cpu_ram``, ``gpu_total_ram``; days for ``duration``) and store the
raw unit (MB; seconds), so ``(gpu_ram >= 48).unparse_query() == "gpu_ram>=48"``.

A :class:`Query` also checks itself against an offer or a local GPU described
in raw units (:meth:`Query.matches`, :meth:`Query.mismatches`).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from vastnb.errors import ConfigurationError

# Query-string spelling of each operator, as the official ``OP_TO_STR``.
OP_TO_STR: dict[str, str] = {
    "eq": "=",
    "neq": "!=",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "in": " in ",
    "notin": " notin ",
}

# Column -> factor from the documented unit to Vast's raw unit (GB -> MB, days -> s).
# These are exactly the fields Vast's query parser multiplies (vastai/api/query.py).
RAW_UNIT_FACTORS: dict[str, float] = {
    "cpu_ram": 1000,
    "gpu_ram": 1000,
    "gpu_total_ram": 1000,
    "duration": 86400,
}

_UNIT_NAMES = {"cpu_ram": "GB", "gpu_ram": "GB", "gpu_total_ram": "GB", "duration": "days"}
_PY_OPS = {"eq": "==", "neq": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_DEFAULTS = {"verified": True, "rentable": True, "rented": False}
# Column aliases Vast remaps before querying: alias -> (real column, factor to raw).
_ALIASES: dict[str, tuple[str, float]] = {
    "reliability2": ("reliability", 1),
    "dphtotal": ("dph_total", 1),
    "gpu_totalram": ("gpu_total_ram", 1),
    "gpu_totalram_GB": ("gpu_total_ram", 1000),
    "cpu_ram_GB": ("cpu_ram", 1000),
    "gpu_ram_GB": ("gpu_ram", 1000),
    "ubuntu_version": ("os_version", 1),
    "driver_version": ("driver_vers", 1),
}


def _check_scalar(column: str, op: str, value: Any) -> Any:
    """Normalize one requirement value (numpy scalars included) or explain why it can't be sent."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise ConfigurationError(
        f"{column}{OP_TO_STR[op]}{value!r}: a requirement's value must be "
        f"a bool, a number, a string or None; got {type(value).__name__}."
    )


def _to_raw(column: str, op: str, value: Any) -> Any:
    factor = RAW_UNIT_FACTORS.get(column)
    if factor is None:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(
            f"{column}{OP_TO_STR[op]}{value!r}: {column} takes a finite number "
            f"({_UNIT_NAMES[column]}); got {value!r}."
        )
    if isinstance(value, int):
        return value * int(factor)
    return round(value * factor, 6)  # drop float noise such as 0.7 * 86400 = 60479.99999999999


def _from_raw(column: str, value: Any) -> Any:
    """Raw unit -> documented unit, the way the official ``unparse_query`` does it."""
    factor = RAW_UNIT_FACTORS.get(column)
    if factor is None:
        return value
    if isinstance(value, list):
        raise ConfigurationError(
            f"{column} cannot be used with in/notin: Vast scales {column} by {factor:g} and its "
            f"query parser cannot scale a list. Use {column} >= low and {column} <= high instead."
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(f"{column} takes a finite number; the query holds {value!r}.")
    value = value / factor
    return int(value) if value == int(value) else value


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "None"
    if isinstance(value, list):
        return ",".join(str(v).replace(" ", "_") for v in value)
    if isinstance(value, str):
        return value.replace(" ", "_")
    return str(value)


def _clause(column: str, op: str, value: Any) -> str:
    """One ``field op value`` term of the query string, exactly as the official SDK writes it."""
    return f"{column}{OP_TO_STR[op]}{_format_value(_from_raw(column, value))}"


def _norm_text(value: str) -> str:
    """Case-, space- and underscore-insensitive form used to compare names."""
    return " ".join(value.replace("_", " ").split()).casefold()


def _same(actual: Any, wanted: Any) -> bool:
    if isinstance(actual, str) and isinstance(wanted, str):
        return _norm_text(actual) == _norm_text(wanted)
    return bool(actual == wanted)


def _holds(op: str, actual: Any, wanted: Any) -> bool:
    if op == "eq":
        return _same(actual, wanted)
    if op == "neq":
        return not _same(actual, wanted)
    if op == "in":
        return any(_same(actual, w) for w in wanted)
    if op == "notin":
        return not any(_same(actual, w) for w in wanted)
    try:
        if op == "gt":
            return bool(actual > wanted)
        if op == "gte":
            return bool(actual >= wanted)
        if op == "lt":
            return bool(actual < wanted)
        return bool(actual <= wanted)
    except TypeError:  # e.g. a string compared with a number: the requirement cannot hold
        return False


class Query:
    """Requirements on offers, as ``{column: {op: value}}`` in Vast's raw units.

    Built by comparing a :class:`Column` (``gpu_ram >= 24``); several are merged
    with :meth:`extend`. A Query has no truth value, so a chained comparison such
    as ``16 <= gpu_ram <= 48`` (which Python would silently cut to its last half)
    raises instead.
    """

    def __init__(self, query_dict: dict[str, dict[str, Any]] | None = None) -> None:
        query_dict = {} if query_dict is None else query_dict
        if not isinstance(query_dict, dict):
            raise ConfigurationError(
                f"Query(...) takes a dict {{column: {{op: value}}}}; got {type(query_dict).__name__}."
            )
        for column, ops in query_dict.items():
            if not isinstance(ops, dict):
                raise ConfigurationError(
                    f"Query(...): the ops for column {column!r} must be a dict {{op: value}}; got {ops!r}."
                )
            unknown = sorted(set(ops) - set(OP_TO_STR))
            if unknown:
                raise ConfigurationError(
                    f"Query(...): unknown op(s) {unknown} for column {column!r}; "
                    f"use one of {', '.join(OP_TO_STR)}."
                )
        # Kept as given (not copied), like the official Query.
        self.query: dict[str, dict[str, Any]] = query_dict

    @classmethod
    def search_defaults(
        cls,
        verified: bool | None = True,
        rentable: bool | None = True,
        rented: bool | None = False,
    ) -> Query:
        """The filters every search starts from; ``None`` leaves one out."""
        query = cls({})
        for name, value in (("verified", verified), ("rentable", rentable), ("rented", rented)):
            if value is not None:
                query.query[name] = {"eq": value}
        return query

    @classmethod
    def from_vast(cls, query: Any) -> Query:
        """A vastnb Query holding a deep copy of an official ``vastai.data.query.Query``'s dict."""
        return cls(copy.deepcopy(query.query))

    def unparse_query(self) -> str:
        """The query string Vast's parser reads back into this dict (the official format)."""
        return " ".join(
            _clause(column, op, value) for column, ops in self.query.items() for op, value in ops.items()
        )

    def extend(self, other: Query) -> Query:
        """Add ``other``'s requirements to this query (in place) and return it.

        A column may carry several ops (``gpu_ram >= 16`` and ``gpu_ram <= 48``),
        but not the same op twice; then nothing is changed and ConfigurationError
        (a ValueError) is raised.
        """
        conflicts = [
            (column, op, value)
            for column, ops in other.query.items()
            for op, value in ops.items()
            if op in self.query.get(column, {})
        ]
        if conflicts:
            details = "; ".join(
                f"op '{op}' for column '{column}': the query already requires "
                f"{_clause(column, op, self.query[column][op])}, and the new requirement is "
                f"{_clause(column, op, value)}"
                for column, op, value in conflicts
            )
            raise ConfigurationError(
                f"Cannot redefine {details}. Replace the earlier requirement instead of adding a "
                "second one with the same column and op (one column may carry different ops, "
                "e.g. gpu_ram >= 16, gpu_ram <= 48)."
            )
        for column, ops in other.query.items():
            self.query.setdefault(column, {}).update(copy.deepcopy(ops))
        return self

    def copy(self) -> Query:
        """An independent copy (the dict is deep-copied)."""
        return Query(copy.deepcopy(self.query))

    def to_vast(self) -> Any:
        """The same requirements as an official ``vastai.data.query.Query`` (dict deep-copied)."""
        try:
            from vastai.data import query as vast_query
        except ImportError as exc:
            raise ImportError(
                "Query.to_vast() needs the official Vast SDK, which is not installed. "
                "Install it with `pip install vastnb[vast]`."
            ) from exc
        return vast_query.Query(copy.deepcopy(self.query))

    def to_source(self) -> str:
        """Python source for these requirements in vastnb's units, without the search defaults.

        ``Query({"gpu_name": {"in": ["RTX 4090"]}, "gpu_ram": {"gte": 24000}}).to_source()``
        is ``"gpu_name.in_([RTX_4090]), gpu_ram >= 24"``: paste it into ``image.require(...)``.
        """
        terms = []
        for column, ops in self.query.items():
            target = _PY_COLUMNS.get(column, f"Column({column!r})")
            for op, value in ops.items():
                if column in _DEFAULTS and op == "eq" and value is _DEFAULTS[column]:
                    continue
                if op in ("in", "notin"):
                    if not isinstance(value, list):
                        raise ConfigurationError(
                            f"{column}{OP_TO_STR[op]}{value!r}: in/notin take a list of values."
                        )
                    items = ", ".join(_source_value(column, v) for v in value)
                    terms.append(f"{target}.{op}_([{items}])")
                else:
                    terms.append(f"{target} {_PY_OPS[op]} {_source_value(column, value)}")
        return ", ".join(terms)

    def mismatches(self, desc: Mapping[str, Any]) -> list[str]:
        """Each requirement ``desc`` fails, as ``gpu_ram>=48 (this GPU has 24)``.

        ``desc`` is an offer or local-GPU description in raw units (``gpu_ram`` in
        MB). Columns it lacks do not apply and pass: a local GPU has no price.
        Strings compare ignoring case and treating ``_`` as a space.
        """
        failed = []
        for column, ops in self.query.items():
            found = _lookup(desc, column)
            if found is None:
                continue
            for op, value in ops.items():
                if op in ("in", "notin") and not isinstance(value, list):
                    raise ConfigurationError(
                        f"{column}{OP_TO_STR[op]}{value!r}: in/notin take a list of values."
                    )
                if not _holds(op, found, value):
                    failed.append(f"{_clause(column, op, value)} (this GPU has {_shown(column, found)})")
        return failed

    def matches(self, desc: Mapping[str, Any]) -> bool:
        """Whether ``desc`` (raw units) meets every requirement that applies to it."""
        return not self.mismatches(desc)

    def __bool__(self) -> bool:
        raise ConfigurationError(
            f"A Query has no truth value ({self.unparse_query()}). A chained comparison such as "
            "`16 <= gpu_ram <= 48` keeps only its last half: write `gpu_ram >= 16, gpu_ram <= 48`."
        )

    def __repr__(self) -> str:
        return f"Query({self.unparse_query()!r})"


def _lookup(desc: Mapping[str, Any], column: str) -> Any:
    """``column``'s value in ``desc`` (None if absent); an alias reads its real column."""
    if desc.get(column) is not None:
        return desc[column]
    real, factor = _ALIASES.get(column, (None, 1))
    value = desc.get(real) if real is not None else None
    if factor != 1 and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value / factor
    return value


def _shown(column: str, raw: Any) -> Any:
    """A described value in the documented unit, for messages (MB -> GB)."""
    if column in RAW_UNIT_FACTORS and isinstance(raw, (int, float)) and not isinstance(raw, bool) \
            and math.isfinite(raw):
        return f"{_from_raw(column, raw):.4g} {_UNIT_NAMES[column]}"  # 12.29 GB, not 12.288
    return raw


def _source_value(column: str, value: Any) -> str:
    if column == "gpu_name" and isinstance(value, str) and value in _GPU_CONSTANT_FOR_NAME:
        return _GPU_CONSTANT_FOR_NAME[value]
    value = _from_raw(column, value)
    return repr(value)


class Column:
    """A searchable offer field; comparing it builds a :class:`Query`.

    ``gpu_ram``, ``cpu_ram`` and ``gpu_total_ram`` take GB and ``duration`` days
    (see :data:`RAW_UNIT_FACTORS`); every other column takes Vast's own unit.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def _query(self, op: str, value: Any) -> Query:
        value = _check_scalar(self.name, op, value)
        return Query({self.name: {op: _to_raw(self.name, op, value)}})

    def __eq__(self, value: Any) -> Query:  # type: ignore[override]
        return self._query("eq", value)

    def __ne__(self, value: Any) -> Query:  # type: ignore[override]
        return self._query("neq", value)

    def __lt__(self, value: Any) -> Query:
        return self._query("lt", value)

    def __le__(self, value: Any) -> Query:
        return self._query("lte", value)

    def __gt__(self, value: Any) -> Query:
        return self._query("gt", value)

    def __ge__(self, value: Any) -> Query:
        return self._query("gte", value)

    __hash__ = None  # type: ignore[assignment]  # == builds a Query, so a Column cannot be a dict key

    def _list(self, op: str, values: Iterable[Any]) -> Query:
        call = f"{self.name}.{op}_({values!r})"
        if self.name in RAW_UNIT_FACTORS:
            raise ConfigurationError(
                f"{call}: Vast cannot match {self.name} against a list (its parser scales "
                f"{self.name} to {'MB' if self.name != 'duration' else 'seconds'} one number at a "
                f"time). Use {self.name} >= low, {self.name} <= high instead."
            )
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ConfigurationError(
                f"{call}: {op}_ takes a list of values, e.g. gpu_name.{op}_([RTX_4090, H100_SXM])."
            )
        items = [_check_scalar(self.name, op, v) for v in values]
        if not items:
            raise ConfigurationError(
                f"{call}: the list is empty; Vast refuses a blank value. Give at least one value."
            )
        return Query({self.name: {op: items}})

    def in_(self, values: Iterable[Any]) -> Query:
        """Requires the column's value to be one of ``values`` (a list)."""
        return self._list("in", values)

    def notin_(self, values: Iterable[Any]) -> Query:
        """Requires the column's value to be none of ``values`` (a list)."""
        return self._list("notin", values)

    def __repr__(self) -> str:
        return f"Column({self.name!r})"


_COLUMNS_START = set(globals())

# Columns of Vast's offers (ask_contract_offers), the same names as the official module.
id_ = Column("id")
ask_contract_id = Column("ask_contract_id")
bundle_id = Column("bundle_id")
bundled_results = Column("bundled_results")
bw_nvlink = Column("bw_nvlink")
compute_cap = Column("compute_cap")  # compute capability x 100: 860 for 8.6, 900 for 9.0
cpu_arch = Column("cpu_arch")
cpu_cores = Column("cpu_cores")
cpu_cores_effective = Column("cpu_cores_effective")
cpu_ghz = Column("cpu_ghz")
cpu_name = Column("cpu_name")
cpu_ram = Column("cpu_ram")  # GB here; MB in Query.query
credit_discount_max = Column("credit_discount_max")
cuda_max_good = Column("cuda_max_good")
direct_port_count = Column("direct_port_count")
disk_bw = Column("disk_bw")
disk_name = Column("disk_name")
disk_space = Column("disk_space")
dlperf = Column("dlperf")
dlperf_per_dphtotal = Column("dlperf_per_dphtotal")
dph_base = Column("dph_base")
dph_total = Column("dph_total")
driver_vers = Column("driver_vers")
end_date = Column("end_date")
external = Column("external")
flops_per_dphtotal = Column("flops_per_dphtotal")
geolocode = Column("geolocode")
gpu_arch = Column("gpu_arch")
gpu_display_active = Column("gpu_display_active")
gpu_frac = Column("gpu_frac")
gpu_ids = Column("gpu_ids")
gpu_lanes = Column("gpu_lanes")
gpu_mem_bw = Column("gpu_mem_bw")
gpu_name = Column("gpu_name")
gpu_ram = Column("gpu_ram")  # GB here; MB in Query.query
gpu_total_ram = Column("gpu_total_ram")  # GB here; MB in Query.query
gpu_max_power = Column("gpu_max_power")
gpu_max_temp = Column("gpu_max_temp")
has_avx = Column("has_avx")
host_id = Column("host_id")
hosting_type = Column("hosting_type")
hostname = Column("hostname")
inet_down = Column("inet_down")
inet_down_cost = Column("inet_down_cost")
inet_up = Column("inet_up")
inet_up_cost = Column("inet_up_cost")
is_bid = Column("is_bid")
logo = Column("logo")
machine_id = Column("machine_id")
min_bid = Column("min_bid")
mobo_name = Column("mobo_name")
num_gpus = Column("num_gpus")
os_version = Column("os_version")
pci_gen = Column("pci_gen")
pcie_bw = Column("pcie_bw")
public_ipaddr = Column("public_ipaddr")
reliability = Column("reliability")
reliability_mult = Column("reliability_mult")
rentable = Column("rentable")
rented = Column("rented")
score = Column("score")
start_date = Column("start_date")
static_ip = Column("static_ip")
storage_cost = Column("storage_cost")
storage_total_cost = Column("storage_total_cost")
total_flops = Column("total_flops")
verification = Column("verification")
vericode = Column("vericode")
vram_costperhour = Column("vram_costperhour")
webpage = Column("webpage")
vms_enabled = Column("vms_enabled")
expected_reliability = Column("expected_reliability")
is_vm_deverified = Column("is_vm_deverified")
resource_type = Column("resource_type")
cluster_id = Column("cluster_id")
avail_vol_ask_id = Column("avail_vol_ask_id")
avail_vol_dph = Column("avail_vol_dph")
avail_vol_size = Column("avail_vol_size")
nw_disk_min_bw = Column("nw_disk_min_bw")
nw_disk_max_bw = Column("nw_disk_max_bw")
nw_disk_avg_bw = Column("nw_disk_avg_bw")
platform_fee = Column("platform_fee")

# Virtual columns: Vast turns them into real columns before searching.
geolocation = Column("geolocation")  # two-letter country code -> geolocode
datacenter = Column("datacenter")  # bool -> hosting_type
duration = Column("duration")  # days here (seconds in Query.query) -> end_date
verified = Column("verified")  # bool -> vericode
allocated_storage = Column("allocated_storage")  # GB -> disk_space >= value
target_reliability = Column("target_reliability")  # -> expected_reliability >= value

# Aliases Vast remaps to real columns. The *_GB ones already take GB (Vast scales them).
reliability2 = Column("reliability2")  # -> reliability
dphtotal = Column("dphtotal")  # -> dph_total
gpu_totalram = Column("gpu_totalram")  # -> gpu_total_ram, raw MB
gpu_totalram_GB = Column("gpu_totalram_GB")  # -> gpu_total_ram
cpu_ram_GB = Column("cpu_ram_GB")  # -> cpu_ram
gpu_ram_GB = Column("gpu_ram_GB")  # -> gpu_ram
ubuntu_version = Column("ubuntu_version")  # -> os_version
driver_version = Column("driver_version")  # -> driver_vers

_GPUS_START = set(globals())

# GPU names as Vast writes them (gpu_name == RTX_4090); the same constants as the official module.
# NVIDIA data center
A10 = "A10"
A10g = "A10g"
A16 = "A16"
A30 = "A30"
A40 = "A40"
A100_PCIE = "A100 PCIE"
A100_SXM4 = "A100 SXM4"
A100_SXM = "A100 SXM"
A100X = "A100X"
A800_PCIE = "A800 PCIE"
B200 = "B200"
GH200_SXM = "GH200 SXM"
H100_PCIE = "H100 PCIE"
H100_SXM = "H100 SXM"
H100_NVL = "H100 NVL"
H200 = "H200"
H200_NVL = "H200 NVL"
L4 = "L4"
L40 = "L40"
L40S = "L40S"
Tesla_K20c = "Tesla K20c"
Tesla_K80 = "Tesla K80"
Tesla_M40 = "Tesla M40"
Tesla_P4 = "Tesla P4"
Tesla_P6 = "Tesla P6"
Tesla_P40 = "Tesla P40"
Tesla_P100 = "Tesla P100"
Tesla_T4 = "Tesla T4"
Tesla_V100 = "Tesla V100"
# NVIDIA consumer: GeForce GTX
GeForce_970 = "GeForce 970"
GTX_750_Ti = "GTX 750 Ti"
GTX_1050 = "GTX 1050"
GTX_1050_Ti = "GTX 1050 Ti"
GTX_1060 = "GTX 1060"
GTX_1070 = "GTX 1070"
GTX_1070_Ti = "GTX 1070 Ti"
GTX_1080 = "GTX 1080"
GTX_1080_Ti = "GTX 1080 Ti"
GTX_1650 = "GTX 1650"
GTX_1650_S = "GTX 1650 S"
GTX_1650_Ti = "GTX 1650 Ti"
GTX_1660 = "GTX 1660"
GTX_1660_S = "GTX 1660 S"
GTX_1660_Ti = "GTX 1660 Ti"
GTX_TITAN_X = "GTX TITAN X"
# NVIDIA consumer: RTX 20, 30, 40, 50 series
RTX_2060 = "RTX 2060"
RTX_2060S = "RTX 2060S"
RTX_2070 = "RTX 2070"
RTX_2070S = "RTX 2070S"
RTX_2080 = "RTX 2080"
RTX_2080S = "RTX 2080S"
RTX_2080_Ti = "RTX 2080 Ti"
RTX_3050 = "RTX 3050"
RTX_3060 = "RTX 3060"
RTX_3060_laptop = "RTX 3060 laptop"
RTX_3060_Ti = "RTX 3060 Ti"
RTX_3070 = "RTX 3070"
RTX_3070_laptop = "RTX 3070 laptop"
RTX_3070_Ti = "RTX 3070 Ti"
RTX_3080 = "RTX 3080"
RTX_3080_Ti = "RTX 3080 Ti"
RTX_3090 = "RTX 3090"
RTX_3090_Ti = "RTX 3090 Ti"
RTX_4060 = "RTX 4060"
RTX_4060_laptop = "RTX 4060 laptop"
RTX_4060_Ti = "RTX 4060 Ti"
RTX_4070 = "RTX 4070"
RTX_4070_laptop = "RTX 4070 laptop"
RTX_4070S = "RTX 4070S"
RTX_4070S_Ti = "RTX 4070S Ti"
RTX_4070_Ti = "RTX 4070 Ti"
RTX_4080 = "RTX 4080"
RTX_4080_laptop = "RTX 4080 laptop"
RTX_4080S = "RTX 4080S"
RTX_4090 = "RTX 4090"
RTX_4090D = "RTX 4090D"
RTX_4090_Ti = "RTX 4090 Ti"
RTX_5060 = "RTX 5060"
RTX_5060_Ti = "RTX 5060 Ti"
RTX_5070 = "RTX 5070"
RTX_5070_Ti = "RTX 5070 Ti"
RTX_5080 = "RTX 5080"
RTX_5090 = "RTX 5090"
RTX_5090_Ti = "RTX 5090 Ti"
# NVIDIA consumer: Titan
Titan_RTX = "Titan RTX"
Titan_V = "Titan V"
TITAN_V_CEO = "TITAN V CEO"
Titan_X = "Titan X"
Titan_Xp = "Titan Xp"
# NVIDIA professional: Quadro, RTX A, RTX Ada, RTX PRO (Blackwell)
Quadro_K620 = "Quadro K620"
Quadro_K2200 = "Quadro K2200"
Quadro_P2000 = "Quadro P2000"
Quadro_P4000 = "Quadro P4000"
Quadro_P5000 = "Quadro P5000"
Quadro_P6000 = "Quadro P6000"
Quadro_GP100 = "Quadro GP100"
Quadro_GV100 = "Quadro GV100"
Q_RTX_4000 = "Q RTX 4000"
Q_RTX_5000 = "Q RTX 5000"
Q_RTX_6000 = "Q RTX 6000"
Q_RTX_8000 = "Q RTX 8000"
RTX_A2000 = "RTX A2000"
RTX_A4000 = "RTX A4000"
RTX_A4500 = "RTX A4500"
RTX_A5000 = "RTX A5000"
RTX_A6000 = "RTX A6000"
RTX_2000Ada = "RTX 2000Ada"
RTX_4000Ada = "RTX 4000Ada"
RTX_4500Ada = "RTX 4500Ada"
RTX_5000Ada = "RTX 5000Ada"
RTX_5880Ada = "RTX 5880Ada"
RTX_6000Ada = "RTX 6000Ada"
RTX_PRO_4000 = "RTX PRO 4000"
RTX_PRO_4000_Mobile = "RTX PRO 4000 Mobile"
RTX_PRO_4500 = "RTX PRO 4500"
RTX_PRO_5000 = "RTX PRO 5000"
RTX_PRO_6000 = "RTX PRO 6000"
RTX_PRO_6000_S = "RTX PRO 6000 S"
RTX_PRO_6000_WS = "RTX PRO 6000 WS"
RTX_PRO_6000_Max_Q = "RTX PRO 6000 Max-Q"
# NVIDIA mining and other
CMP_50HX = "CMP 50HX"
CMP_170HX = "CMP 170HX"
P104_100 = "P104-100"
P106_100 = "P106-100"
# AMD Instinct, Radeon Pro, Radeon RX
InstinctMI50 = "InstinctMI50"
InstinctMI100 = "InstinctMI100"
InstinctMI210 = "InstinctMI210"
InstinctMI250X = "InstinctMI250X"
PRO_W6800 = "PRO W6800"
PRO_W7800 = "PRO W7800"
PRO_W7900 = "PRO W7900"
Pro_V620 = "Pro V620"
Radeon_VII = "Radeon VII"
Radeon_Pro_VII = "Radeon Pro VII"
RX_6800 = "RX 6800"
RX_6800_XT = "RX 6800 XT"
RX_6900_XT = "RX 6900 XT"
RX_6950_XT = "RX 6950 XT"
RX_7600 = "RX 7600"
RX_7700_XT = "RX 7700 XT"
RX_7800_XT = "RX 7800 XT"
RX_7900_GRE = "RX 7900 GRE"
RX_7900_XT = "RX 7900 XT"
RX_7900_XTX = "RX 7900 XTX"

#: Every GPU constant: Python name -> the Vast name (``"H100_SXM": "H100 SXM"``).
GPU_NAMES: dict[str, str] = {
    k: v for k, v in globals().items() if k not in _GPUS_START and isinstance(v, str) and k[0] != "_"
}
#: Every column constant: Python name -> Column (``"id_": Column("id")``).
COLUMNS: dict[str, Column] = {
    k: v for k, v in globals().items() if k not in _COLUMNS_START and isinstance(v, Column)
}
_PY_COLUMNS = {column.name: py_name for py_name, column in COLUMNS.items()}
_GPU_CONSTANT_FOR_NAME = {name: constant for constant, name in GPU_NAMES.items()}
del _COLUMNS_START, _GPUS_START

__all__ = [
    "COLUMNS",
    "Column",
    "GPU_NAMES",
    "OP_TO_STR",
    "Query",
    "RAW_UNIT_FACTORS",
    *COLUMNS,
    *GPU_NAMES,
]
