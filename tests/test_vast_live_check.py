"""``scripts/vast-live-check``: it cannot reach Vast here, so it is run against the STAND-IN of Vast's control plane.

It must refuse clearly without a key or a spending cap; its teardown (delete by
name, then list the endpoints to prove nothing is left) is checked on the
stand-in, and so is the whole check, with official worker runtimes playing the
rented GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Iterator

import pytest

from vastnb.backends.vast import VastBackend
from tests.vast_standin import Realism, VastStandIn, WorkerLauncher

pytestmark = pytest.mark.timeout(300)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "vast-live-check")
IMAGE = "vastai/base-image:@vastai-automatic-tag"


def live_check(*args: str, key: str | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VAST_API_KEY", "PYTHONPATH")}
    env["PYTHONPATH"] = ROOT
    if key is not None:
        env["VAST_API_KEY"] = key
    return subprocess.run([sys.executable, SCRIPT, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def standin() -> Iterator[VastStandIn]:
    with VastStandIn() as s:
        yield s


@pytest.fixture(scope="module")
def launcher(standin: VastStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerLauncher]:
    lw = WorkerLauncher(standin, str(tmp_path_factory.mktemp("workers")))
    yield lw
    lw.stop()


def test_it_refuses_without_a_key() -> None:
    done = live_check("--max-dollars", "2")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        "vast-live-check: VAST_API_KEY is not set. This check rents a real GPU on Vast and needs your key: create one "
        "at https://cloud.vast.ai/manage-keys/ and run `VAST_API_KEY=... python scripts/vast-live-check "
        "--max-dollars 2`.\n")


def test_it_refuses_without_a_spending_cap() -> None:
    done = live_check(key="some-key")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        "vast-live-check: --max-dollars is required: it caps what this check may spend (e.g. --max-dollars 2); the run "
        "stops and deletes everything it made before the estimate reaches it.\n")
    assert live_check("--max-dollars", "-1", key="some-key").stderr == (
        "vast-live-check: --max-dollars must be a positive number of US dollars. Instead got -1.0.\n")


def _leave(standin: VastStandIn, name: str) -> int:
    """A deployment left behind (kept endpoint), as a killed run would leave it; its endpoint id."""
    from vastnb import Deployment

    app = Deployment(name, backend=VastBackend(**standin.backend_options()))
    app.image(IMAGE, storage=16)
    backend = VastBackend(**standin.backend_options())
    backend.start(app.spec())
    endpoint = backend.wait_deployed(30).endpoint_id
    backend.shutdown(keep_endpoint=True)
    return endpoint


def test_teardown_deletes_by_name_and_proves_nothing_is_left(standin: VastStandIn) -> None:
    left = [_leave(standin, f"vastnb-live-check-{n}") for n in (1, 2)]
    other = _leave(standin, "someone-elses-app")
    urls = ("--webserver-url", standin.url, "--autoscaler-url", standin.url)
    done = live_check("--teardown-only", "--max-dollars", "1", *urls, key=standin.api_key)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "vast-live-check: teardown (delete by name, then list what is left)\n"
        "  deleted deployment(s) named 'vastnb-live-check-1'\n"
        "  deleted deployment(s) named 'vastnb-live-check-2'\n"
        "vast-live-check: nothing named vastnb-live-check* is left on Vast\n")
    assert not set(left) & set(standin.endpoints) and other in standin.endpoints
    assert [b for b in standin.calls_to("DELETE", "/api/v0/deployments/")][-2:] == [
        {"name": "vastnb-live-check-1"}, {"name": "vastnb-live-check-2"}]
    assert standin.calls_to("GET", "/api/v0/endptjobs/")  # the proof is Vast's own list


def test_teardown_says_what_is_still_there(standin: VastStandIn) -> None:
    standin.realism["vastnb-live-check-stuck"] = Realism(sticky_endpoint=True)  # its endpoint outlives the delete
    endpoint = _leave(standin, "vastnb-live-check-stuck")
    try:
        done = live_check("--teardown-only", "--max-dollars", "1", "--webserver-url", standin.url,
                          "--autoscaler-url", standin.url, key=standin.api_key)
        assert done.returncode == 1
        assert done.stderr == ("vast-live-check: STILL THERE, delete by hand (`vastai show endpoints`): "
                               "vastnb-live-check-stuck\n")
    finally:
        standin.realism.pop("vastnb-live-check-stuck", None)
        standin.endpoints.pop(endpoint, None)


def test_the_whole_check_passes_against_the_standin(standin: VastStandIn, launcher: WorkerLauncher) -> None:
    launcher.enable("vastnb-live-run*")
    standin.offers[:] = [{"id": 7, "gpu_name": "RTX 4090", "gpu_ram": 24564, "dph_total": 0.2, "verified": True,
                          "rentable": True, "rented": False}]
    done = live_check("--max-dollars", "1", "--name", "vastnb-live-run", "--webserver-url", standin.url,
                      "--autoscaler-url", standin.url, key=standin.api_key)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    steps = [line.split()[0:2] for line in lines if line.startswith("  ") and " ok " in line]
    labels = [" ".join(line.strip().split("  ")[0].split()) for line in lines if line.startswith("  ") and " ok " in line]
    assert labels == ["offers: cheapest matching GPU", "quickstart: deploy, ensure_ready", "call",
                      "redefinition (same worker)", "%%vast_run cell", "5 MB frame", "50-item map", "keep-endpoint",
                      "re-attach", "re-attached call"], done.stdout
    assert steps and lines[-2:] == ["vast-live-check: nothing named vastnb-live-run* is left on Vast",
                                    lines[-1]] and lines[-1].startswith("vast-live-check: passed; est. spend $")
    assert not [d for d in standin.deployments.values() if d.name.startswith("vastnb-live-run")]
    put = [b for b in standin.calls_to("PUT", "/api/v0/deployments/") if b["name"].startswith("vastnb-live-run")][0]
    assert put["search_params"].endswith("gpu_ram>=8 dph_total<=0.25") and put["max_workers"] == 1
    assert put["ttl"] == 600.0
