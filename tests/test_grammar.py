"""One grammar for the magics' options: what %%vast_remote and %vast_deployment accept, the export reads alike."""

from __future__ import annotations

import pytest

from vastnb.export._notebook import parse_deployment_line, parse_remote_line
from vastnb.magics import VastMagics
from vastnb.magics.grammar import DEPLOYMENT_OPTIONS, REMOTE_OPTIONS, read_line
from vastnb.spec import DEFAULT_MAX_QUEUE_TIME, DEFAULT_RETRIES, DEFAULT_TIMEOUT


def _magic_dests(method: object) -> set[str]:
    parser = method.parser  # type: ignore[attr-defined]
    return {a.dest for a in parser._actions if a.dest not in ("help",)}


@pytest.mark.parametrize("method, options", [(VastMagics.vast_remote, REMOTE_OPTIONS),
                                             (VastMagics.vast_deployment, DEPLOYMENT_OPTIONS)])
def test_the_magic_and_the_export_know_the_same_options(method: object, options: tuple) -> None:
    assert _magic_dests(method) == {o.dest for o in options}


def test_the_magics_defaults_are_the_sdks() -> None:
    parser = VastMagics.vast_remote.parser  # type: ignore[attr-defined]
    defaults = {a.dest: a.default for a in parser._actions}
    assert (defaults["max_queue_time"], defaults["retries"], defaults["timeout"], defaults["benchmark_runs"]) == (
        DEFAULT_MAX_QUEUE_TIME, DEFAULT_RETRIES, DEFAULT_TIMEOUT, 10)


def test_the_export_reads_a_line_as_the_magic_does() -> None:
    line = """--benchmark-dataset '[{"x": 2}]' --timeout=5 --allow-parallel-requests --colour red  # a comment"""
    parsed = parse_remote_line(line)
    assert (parsed.benchmark_dataset, parsed.timeout, parsed.allow_parallel_requests) == ('[{"x": 2}]', "5", True)
    assert parsed.max_queue_time is None and parsed.unknown == ["--colour", "red"]  # not given: not exported
    magic = VastMagics.vast_remote.parser.parse_known_args(  # type: ignore[attr-defined]
        ["--benchmark-dataset", '[{"x": 2}]', "--timeout=5", "--allow-parallel-requests"])[0]
    assert (magic.benchmark_dataset, magic.timeout, magic.allow_parallel_requests) == ('[{"x": 2}]', 5.0, True)
    deployment = parse_deployment_line("demo --backend vast --var vapp")
    assert (deployment.name, deployment.backend, deployment.var, deployment.tag) == ("demo", "vast", "vapp", None)
    assert read_line(DEPLOYMENT_OPTIONS, "")[0] == {}
