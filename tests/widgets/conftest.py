"""Fixtures for the widget tests: a scripted deployment and a way to wait for background redraws."""

from __future__ import annotations

import time
from typing import Callable

import pytest

from .scripted import ScriptedSource


@pytest.fixture
def source() -> ScriptedSource:
    return ScriptedSource("demo")


def wait_until(condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)
