"""IPython magics for vastnb: ``%load_ext vastnb``.

==========================  =====================================================================
``%vast_deployment NAME``   create or select the notebook's deployment, bound as ``app``
``%%vast_context [ARGS]``   the cell's class becomes a context (entered once per worker, kept warm)
``%%vast_remote [OPTS]``    each top-level ``async def`` in the cell becomes a remote function
``%%vast_run [OPTS]``       run the cell on a worker (or each), in a namespace kept across cells
``%vast_status``            the live dashboard (text outside Jupyter)
``%vast_logs [WORKER]``     the workers' logs
``%vast_benchmark [FN]``    run the benchmark again and show each worker's score
``%vast_gpus``              the GPU picker for the deployment's image
``%vast_export [PATH]``     the notebook as a deployment file for the official SDK
``%vast_down``              stop every worker
==========================  =====================================================================

Every magic answers ``--help`` (and ``%vast_remote?``).
"""

from __future__ import annotations

from typing import Any

from ._magics import VastMagics

__all__ = ["VastMagics", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics on ``ipython``, and note which cells raise (``%vast_export`` leaves those out)."""
    magics = VastMagics(ipython)
    ipython.register_magics(magics)
    ipython.events.register("post_run_cell", magics.note_cell_result)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics again (``%unload_ext vastnb``)."""
    manager = ipython.magics_manager
    magics = manager.registry.get(VastMagics.__name__)
    if magics is not None:
        try:
            ipython.events.unregister("post_run_cell", magics.note_cell_result)
        except ValueError:
            pass  # registered by an older load, or by hand
    for kind, names in VastMagics.magics.items():
        for name in names:
            manager.magics[kind].pop(name, None)
    manager.registry.pop(VastMagics.__name__, None)
