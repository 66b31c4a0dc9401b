"""``Query`` and ``Column``: GPU and offer filters with the semantics of the official ``vastai.data.query``.

``gpu_ram >= 48`` builds a :class:`Query`; ``image.require(...)`` collects them.
The names, operators, ``Query.query`` dict format (``{column: {op: value}}`` in
Vast's raw units) and ``unparse_query()`` string match the official SDK, with
one deliberate difference: the documented units are true. Vast's docs say
``gpu_ram >= 48`` means 48 GB, but the official ``Column`` stores the number as
given and ``unparse_query()`` divides it by 1000 (``gpu_ram>=0.048``). Here the
columns in :data:`RAW_UNIT_FACTORS` take the documented unit (GB for
``gpu_ram``, ``cpu_ram``, ``gpu_total_ram``; days for ``duration``) and store the
raw unit (MB; seconds), so ``(gpu_ram >= 48).unparse_query() == "gpu_ram>=48"``.
``image.require(...)`` also takes the official SDK's own ``Query`` objects (the docs'
``from vastai.data.query import gpu_ram``) and reads them in the same documented
units (:meth:`Query.from_vast`): ``vq.gpu_ram >= 48`` means 48 GB there too.

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
_RAW_UNITS = "_vastnb_raw_units"  # set on the official Queries to_vast() makes
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


def norm_text(value: str) -> str:
    """Case-, space- and underscore-insensitive form used to compare names."""
    return " ".join(value.replace("_", " ").split()).casefold()


def _same(actual: Any, wanted: Any) -> bool:
    if isinstance(actual, str) and isinstance(wanted, str):
        return norm_text(actual) == norm_text(wanted)
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
        """vastnb's Query for an official ``vastai.data.query.Query``, meaning what it means written with vastnb.query.

        ``vq.gpu_ram >= 48`` is read in the unit Vast's docs give it, 48 GB, as vastnb's ``gpu_ram >= 48``
        (``{"gpu_ram": {"gte": 48000}}``), although the official Column stores 48 and its ``unparse_query()``
        asks Vast for 0.048 GB. Each value goes through vastnb's Column checks (value types; no ``in_`` on
        ``gpu_ram``). A Query made by :meth:`to_vast` holds raw units already and comes back as it is.
        """
        query_dict = getattr(query, "query", None)
        if not isinstance(query_dict, dict):
            raise ConfigurationError(
                f"Query.from_vast(...) takes a vastai.data.query.Query (its .query is a dict). Instead got {query!r}."
            )
        if getattr(query, _RAW_UNITS, False):
            return cls(copy.deepcopy(query_dict))
        converted = cls({})
        for column, ops in query_dict.items():
            if not isinstance(ops, dict):
                raise ConfigurationError(
                    f"Query(...): the ops for column {column!r} must be a dict {{op: value}}; got {ops!r}."
                )
            for op, value in ops.items():
                if op in ("in", "notin"):
                    converted.extend(Column(column)._list(op, value))
                elif op in _PY_OPS:
                    converted.extend(Column(column)._query(op, value))
                else:
                    raise ConfigurationError(
                        f"Query(...): unknown op {op!r} for column {column!r}; use one of {', '.join(OP_TO_STR)}."
                    )
        return converted

    @classmethod
    def coerce(cls, query: Any, where: str = "require()") -> Query:
        """``query`` as vastnb's Query: vastnb's as it is, the official SDK's through :meth:`from_vast`."""
        if isinstance(query, Query):
            return query
        if _is_official(query, "Query"):
            return cls.from_vast(query)
        alone, shown = "", repr(query)
        if isinstance(query, Column) or _is_official(query, "Column"):
            name = getattr(query, "name", "?")
            alone = f" A column alone is no requirement: compare it, e.g. `{name} == ...` or `{name} >= ...`."
            shown = repr(query) if isinstance(query, Column) else f"vastai.data.query.Column({name!r})"
        raise ConfigurationError(
            f"{where} takes GPU filters such as `gpu_ram >= 16` or `gpu_name == RTX_4090` (from vastnb.query or "
            f"vastai.data.query). Instead got {shown}.{alone}"
        )

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

    def without(self, columns: Iterable[str]) -> Query:
        """A copy without any requirement on ``columns`` (e.g. the ones a GPU picker sets anew)."""
        drop = set(columns)
        return Query({c: copy.deepcopy(ops) for c, ops in self.query.items() if c not in drop})

    def to_vast(self) -> Any:
        """The same requirements as an official ``vastai.data.query.Query`` (dict deep-copied, raw units, so its
        ``unparse_query()`` is this one's)."""
        try:
            from vastai.data import query as vast_query
        except ImportError as exc:
            raise ImportError(
                "Query.to_vast() needs the official Vast SDK, which is not installed. "
                "Install it with `pip install vastnb[vast]`."
            ) from exc
        official = vast_query.Query(copy.deepcopy(self.query))
        setattr(official, _RAW_UNITS, True)  # Query.from_vast takes it back as it is, not as documented units
        return official

    def to_source(self) -> str:
        """Python source for these requirements in vastnb's units, without the search defaults.

        ``Query({"gpu_name": {"in": ["RTX 4090"]}, "gpu_ram": {"gte": 24000}}).to_source()``
        is ``"gpu_name.in_([RTX_4090]), gpu_ram >= 24"``: paste it into ``image.require(...)``.
        """
        terms = []
        for column, ops in self.query.items():
            target = _names.PY_COLUMNS.get(column, f"Column({column!r})")
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


def _is_official(obj: Any, class_name: str) -> bool:
    """Whether ``obj`` is a ``vastai.data.query.<class_name>`` (or a subclass), without importing the SDK."""
    return any(k.__module__ == "vastai.data.query" and k.__name__ == class_name for k in type(obj).__mro__)


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
    if column == "gpu_name" and isinstance(value, str) and value in _names.GPU_CONSTANT_FOR_NAME:
        return _names.GPU_CONSTANT_FOR_NAME[value]
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


from . import _names  # noqa: E402  # the constants are Columns: defined after the class
