"""GPU and offer filters with the semantics of the official ``vastai.data.query``.

``gpu_ram >= 48`` builds a :class:`Query`; ``image.require(...)`` collects them.
The names, operators, ``Query.query`` dict format and ``unparse_query()`` string
match the official SDK (``_core`` has the details and the one deliberate
difference: documented units are true); ``_names`` holds the column and GPU
name constants, re-exported here.
"""

from __future__ import annotations

from ._core import OP_TO_STR, RAW_UNIT_FACTORS, Column, Query
from ._names import *  # noqa: F403  # every column and GPU constant, as the official module has them
from ._names import COLUMNS, GPU_NAMES

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
