"""The public surface is exactly __all__ (httpx's tests/test_exported_members.py is the model)."""

from __future__ import annotations

import types

import vastnb


def test_all_is_sorted_and_is_the_public_surface():
    assert vastnb.__all__ == sorted(vastnb.__all__)
    public = {
        name for name in dir(vastnb)
        if not name.startswith("_") and name != "annotations"
        and (name == "query" or not isinstance(getattr(vastnb, name), types.ModuleType))
    }
    assert set(vastnb.__all__) - {"__version__"} == public
