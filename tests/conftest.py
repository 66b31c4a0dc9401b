"""Shared fixtures: deployments with real worker processes, torn down after each test."""

from __future__ import annotations

import itertools
import os
import signal
from typing import Any, Callable, Iterator

import pytest

import vastnb

_names = itertools.count(1)
collect_ignore_glob = ["*.ipynb"]  # notebooks under tests/ are fixtures, run by the tests that use them


@pytest.fixture
def make_app() -> Iterator[Callable[..., vastnb.Deployment]]:
    """Create deployments (backend local); every one is shut down at the end of the test."""
    apps: list[vastnb.Deployment] = []

    def make(name: str | None = None, **kwargs: Any) -> vastnb.Deployment:
        app = vastnb.Deployment(name or f"test{next(_names)}", **kwargs)
        apps.append(app)
        return app

    yield make
    for app in apps:
        pids = [w.pid for w in app.snapshot().workers if w.pid]
        app.shutdown()
        for pid in pids:  # belt and braces: nothing may outlive a test
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` passes (False): waiting on a condition, not a clock."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def worker_port(app: vastnb.Deployment, worker_id: str) -> int:
    """The loopback port a local worker listens on, as its log announces it."""
    import re

    for line in app.logs(worker_id)[worker_id]:
        found = re.search(r"serving on 127\.0\.0\.1:(\d+)", line)
        if found:
            return int(found.group(1))
    raise AssertionError(f"worker {worker_id} has not announced its port: {app.logs(worker_id)}")
