"""``%vast_benchmark``: which function to benchmark, and the request that runs it on the workers."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError

from ..deployment import Deployment

__all__ = ["benchmark_request", "benchmark_target"]


def benchmark_target(app: Deployment, name: str | None) -> tuple[str, Any]:
    functions = app.functions
    if name is None:
        chosen = next(((n, rf) for n, rf in functions.items() if rf.options.has_benchmark), None)
        if chosen is None:
            raise UsageError(
                f"%vast_benchmark: no remote function of deployment {app.name!r} has a benchmark; give one with "
                "%%vast_remote --benchmark-dataset EXPR (or benchmark_dataset=... in @app.remote)."
            )
        return chosen
    rf = functions.get(name)
    if rf is None:
        raise UsageError(
            f"%vast_benchmark: {name!r} is not a remote function of deployment {app.name!r} "
            f"(remote functions: {', '.join(sorted(functions)) or 'none'})."
        )
    if not rf.options.has_benchmark:
        raise UsageError(
            f"%vast_benchmark: `{name}` has no benchmark; give it one with %%vast_remote --benchmark-dataset EXPR "
            "(or benchmark_dataset=... in @app.remote)."
        )
    return name, rf


def benchmark_request(app: Deployment, name: str, rf: Any) -> bytes:
    """The benchmark request for ``name``, built the way the deployment builds its own."""
    import cloudpickle

    from ..worker.core import BenchmarkSpec

    o = rf.options
    return cloudpickle.dumps(BenchmarkSpec(
        fn_hash=app._specs[name].hash, dataset=o.benchmark_dataset, generator=o.benchmark_generator,
        runs=o.benchmark_runs, parallel=o.allow_parallel_requests, workload_calculator=o.workload_calculator,
    ))
