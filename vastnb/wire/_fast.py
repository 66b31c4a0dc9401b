"""Pickling small plain calls and results fast: the C pickler alone, when nothing in them needs cloudpickle.

:func:`~vastnb.wire.dumps_payload` pickles with cloudpickle, whose per-object hook runs in Python; for the
tiny calls of a map (a string, a number, a few bytes) that hook costs more than the pickling itself. A message
whose values are built only from plain data (``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``,
``bytes``, tuples, lists and dicts of them, and vastnb's own messages) pickles the same with the C pickler alone, so
:func:`dumps_small` does that and hands anything else (notebook objects, arrays, tensors, exceptions, large
values) to ``dumps_payload``. The bytes it writes load with the ordinary loaders.
"""

from __future__ import annotations

import pickle
from typing import Any

from . import messages as m
from ._pickle import Payload, dumps_payload

__all__ = ["dumps_small"]

_ATOMS = frozenset({type(None), bool, int, float, complex, str})
_BUDGET = 64  # values looked at before giving up on the fast path
_MAX_BYTES = 64 * 1024  # larger str and bytes values take the ordinary path (shared memory when large)


def _plain(value: Any, budget: list[int]) -> bool:
    budget[0] -= 1
    if budget[0] < 0:
        return False
    kind = type(value)
    if kind in _ATOMS:
        return kind is not str or len(value) <= _MAX_BYTES
    if kind is bytes:
        return len(value) <= _MAX_BYTES
    if kind is tuple or kind is list:
        return all(_plain(item, budget) for item in value)
    if kind is dict:
        return all(type(k) is str and _plain(v, budget) for k, v in value.items())
    if isinstance(value, m.Message):  # vastnb's own messages pickle by reference to this module, as cloudpickle does
        return all(_plain(getattr(value, name), budget) for name in kind.__match_args__)  # type: ignore[attr-defined]
    return False


def dumps_small(msg: m.Message, what: str = "value") -> Payload:
    """Pickle a message for the wire, as :func:`dumps_payload` does, faster when its values are plain."""
    if isinstance(msg, m.CallBatch):  # request ids and calls already pickled: plain by construction
        return _dumps_plain(msg)
    many = msg.results if isinstance(msg, m.ResultBatch) else ()
    if not _plain(msg, [_BUDGET * (1 + len(many))]):
        return dumps_payload(msg, what)
    return _dumps_plain(msg)


def _dumps_plain(msg: m.Message) -> Payload:
    data = pickle.dumps(msg, protocol=5)
    return Payload([data], len(data), [])

