"""The ``%vast_*`` magics: argument parsing, the notebook's current deployment, and display.

Each magic is a thin layer over the public ``Deployment`` API (``app.remote``,
``app.context``, ``app.sync``, ``app.snapshot`` …); what a magic adds is reading
the cell, binding names in the notebook, and showing results and errors the
short way.
"""

from __future__ import annotations

import ast
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from ..deployment import Deployment
from ..errors import ConfigurationError, NotSupportedByBackend, SerializationError, VastnbError
from ._args import context_arguments, evaluate_option, help_argument, parse, python_names, wants_help
from ._support import MISSING, check_sendable, optional, renderers, restore, settle
from ._cell_code import compile_cell, format_remote_failure, run_in_user_namespace, show_short
from ._run import CellRun, PerWorker, WorkerValue, raise_failures
from .grammar import DEPLOYMENT_OPTIONS, REMOTE_OPTIONS, magic_arguments_for

__all__ = ["VastMagics"]

DEFAULT_VAR = "app"

@magics_class
class VastMagics(Magics):
    """IPython magics for vastnb deployments. Load with ``%load_ext vastnb``."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self._app: Deployment | None = None
        self._var = DEFAULT_VAR
        self._known: dict[str, Deployment] = {}
        self._failed_cells: set[tuple[int, str]] = set()  # (N of In[N], its text) of the cells that raised

    def note_cell_result(self, result: Any) -> None:
        """IPython's ``post_run_cell`` event: remember the cells that raised, for ``%vast_export``."""
        if not result.success and result.execution_count and result.info is not None:
            self._failed_cells.add((result.execution_count, result.info.raw_cell.rstrip("\n")))  # as history keeps it

    @property
    def _ns(self) -> dict[str, Any]:
        assert self.shell is not None
        return self.shell.user_ns

    # ================================================================ the current deployment
    def current(self, magic: str) -> Deployment:
        """The deployment magics act on: the one bound to ``app`` (or ``--var``), else the only one in the notebook."""
        ns = self._ns
        bound = ns.get(self._var)
        if isinstance(bound, Deployment):
            self._app = bound
            return bound
        if self._app is not None:
            return self._app
        found = self._deployments_in_namespace()
        if len(found) == 1:
            self._app = found[0]
            return found[0]
        if found:
            names = ", ".join(repr(a.name) for a in found)
            raise UsageError(
                f"{magic}: the notebook has {len(found)} deployments ({names}); select one with %vast_deployment NAME."
            )
        raise UsageError(
            f"{magic}: no deployment yet. Create one first with `%vast_deployment NAME` (for example `%vast_deployment demo`)."
        )

    def _deployments_in_namespace(self) -> list[Deployment]:
        seen: list[Deployment] = []
        for key, value in list(self._ns.items()):
            if key.startswith("_") or key in ("In", "Out"):
                continue
            if isinstance(value, Deployment) and all(value is not s for s in seen):
                seen.append(value)
        return seen

    def _find(self, name: str) -> Deployment | None:
        known = self._known.get(name)
        if known is not None:
            return known
        for app in self._deployments_in_namespace():
            if app.name == name:
                return app
        return None

    def _sync(self, app: Deployment, magic: str) -> None:
        """Put the notebook's current code on every running worker before the cell finishes."""
        if app.state != "running":
            return
        try:
            app.sync()
        except (ConfigurationError, SerializationError) as exc:
            raise UsageError(f"{magic}: {exc}") from None
        except Exception as exc:
            show_short(exc, [f"{magic}: the new code could not be applied on the workers:", *format_remote_failure(exc)])
            raise

    def _ready(self, app: Deployment, magic: str) -> None:
        """Make sure the deployment runs and has at least one ready worker."""
        if app.state == "shut down":
            raise UsageError(
                f"{magic}: deployment {app.name!r} is shut down; create it again with `%vast_deployment {app.name}`."
            )
        serving = [w for w in app.snapshot().workers if w.state.serving]
        if app.state != "running" or not serving:
            try:
                app.ensure_ready()
            except VastnbError as exc:
                raise UsageError(f"{magic}: {exc}") from None

    def _bind(self, name: str, value: Any) -> None:
        self._ns[name] = value

    # ================================================================ %vast_deployment
    @magic_arguments()
    @help_argument
    @magic_arguments_for(DEPLOYMENT_OPTIONS)
    @line_magic
    def vast_deployment(self, line: str) -> Any:
        """Create or select the notebook's current deployment and bind it as ``app``.

        Without NAME, show the current deployment.
        """
        args = parse(self.vast_deployment, "%vast_deployment", line)
        if args is None:
            return None
        var = args.var or self._var
        if not var.isidentifier():
            raise UsageError(f"%vast_deployment --var: {var!r} is not a Python variable name.")
        if args.name is None:
            return self.current("%vast_deployment")
        existing = self._find(args.name)
        if existing is not None and existing.state != "shut down":
            for option, wanted, have in (("--backend", args.backend, existing.backend), ("--tag", args.tag, existing.tag)):
                if wanted is not None and wanted != have:
                    raise UsageError(
                        f"%vast_deployment: deployment {args.name!r} already exists with {option} {have}; "
                        f"stop it with %vast_down first to recreate it with {option} {wanted}."
                    )
            app, what = existing, f"selected deployment {args.name!r} ({existing.backend}, {existing.state})"
        else:
            try:
                app = Deployment(args.name, tag=args.tag or "default", backend=args.backend or "local")
            except ConfigurationError as exc:
                raise UsageError(f"%vast_deployment: {exc}") from None
            what = f"created deployment {args.name!r} ({app.backend} backend)"
        self._known[app.name] = app
        self._app, self._var = app, var
        self._bind(var, app)
        print(f"vastnb: {what} as `{var}`")
        if existing is not None and existing.state == "shut down":
            print("vastnb: the previous one was shut down, so run its %%vast_context and %%vast_remote cells again")
        return None

    # ================================================================ %%vast_context
    @no_var_expand
    @magic_arguments("%vast_context")
    @help_argument
    @argument("arguments", nargs="*",
              help='constructor arguments, exactly as @app.context(...) takes them, e.g. "weights.pt", dtype="bf16" '
                   "(evaluated in the notebook)")
    @cell_magic
    def vast_context(self, line: str, cell: str) -> None:
        """Register the cell's class as a context: an async context manager entered once per worker and kept warm.

        The cell defines exactly one class (with ``async def __aenter__`` and
        ``__aexit__``); it is bound in the notebook under its name. Running an
        edited cell again re-enters this context, and only this one, on the
        running workers.
        """
        if wants_help(line):
            parse(self.vast_context, "%%vast_context", "--help")
            return None
        app = self.current("%%vast_context")
        cell_code = compile_cell(self.shell, "vast_context", line, cell)
        classes = cell_code.top_level(ast.ClassDef)
        if not classes:
            raise UsageError(
                "%%vast_context: the cell defines no class. A context cell defines exactly one async context "
                "manager class, for example:\n"
                "    class Model:\n"
                "        async def __aenter__(self): ...; return self\n"
                "        async def __aexit__(self, *exc): ..."
            )
        if len(classes) > 1:
            names = ", ".join(c.name for c in classes)
            raise UsageError(
                f"%%vast_context: the cell defines {len(classes)} classes ({names}); a context cell defines exactly "
                "one. Move the others to a plain cell (or a %%vast_context cell of their own)."
            )
        name = classes[0].name
        ns = self._ns
        before = ns.get(name, MISSING)
        run_in_user_namespace(self.shell, cell_code)
        try:
            args, kwargs = context_arguments(self._ns, line)
            app.context(*args, **kwargs)(ns[name])
        except (UsageError, ConfigurationError) as exc:
            restore(ns, name, before)
            message = str(exc) if isinstance(exc, UsageError) else f"%%vast_context: {exc}"
            raise UsageError(message) from None
        self._sync(app, "%%vast_context")
        return None

    # ================================================================ %%vast_remote
    @no_var_expand
    @magic_arguments("%vast_remote")
    @help_argument
    @magic_arguments_for(REMOTE_OPTIONS)
    @cell_magic
    def vast_remote(self, line: str, cell: str) -> None:
        """Make each top-level ``async def`` in the cell a remote function, bound under its own name.

        The cell is notebook code (helpers, constants and plain functions are
        fine); names and expressions in the options are resolved in the notebook.
        Running an edited cell again swaps the code on the running workers without
        restarting them, and returns once every worker has it.
        """
        args = parse(self.vast_remote, "%%vast_remote", line)
        if args is None:
            return None
        app = self.current("%%vast_remote")
        cell_code = compile_cell(self.shell, "vast_remote", line, cell)
        coroutines = cell_code.top_level(ast.AsyncFunctionDef)
        if not coroutines:
            plain = cell_code.top_level(ast.FunctionDef)
            if plain:
                name = plain[0].name
                raise UsageError(
                    f"%%vast_remote: `{name}` is a plain `def`, but remote functions are coroutines. "
                    f"Make it `async def {name}(...)`."
                )
            raise UsageError(
                "%%vast_remote: the cell defines no `async def`. Each top-level `async def` in a %%vast_remote cell "
                "becomes a remote function, for example:\n"
                "    async def square(x):\n"
                "        return x * x"
            )
        ns = self._ns
        names = [node.name for node in coroutines]
        before = {n: ns.get(n, MISSING) for n in names}
        run_in_user_namespace(self.shell, cell_code)
        calls = {
            "allow_parallel_requests": args.allow_parallel_requests,
            "max_queue_time": args.max_queue_time,
            "retries": args.retries,
            "timeout": args.timeout,
        }
        try:
            bench = {
                "benchmark_dataset": evaluate_option(self._ns, "--benchmark-dataset", args.benchmark_dataset),
                "benchmark_generator": evaluate_option(self._ns, "--benchmark-generator", args.benchmark_generator),
                "benchmark_runs": args.benchmark_runs,
                "workload_calculator": evaluate_option(self._ns, "--workload-calculator", args.workload_calculator),
            }
            remote = {}
            for i, name in enumerate(names):
                options = {**calls, **bench} if i == 0 else calls
                remote[name] = app.remote(**options)(ns[name])
        except (UsageError, ConfigurationError) as exc:
            for n, value in before.items():
                restore(ns, n, value)
            message = str(exc) if isinstance(exc, UsageError) else f"%%vast_remote: {exc}"
            raise UsageError(message) from None
        ns.update(remote)
        self._sync(app, "%%vast_remote")
        return None

    # ================================================================ %%vast_run
    @no_var_expand
    @magic_arguments("%vast_run")
    @help_argument
    @argument("--all", action="store_true", help="run on every worker, waiting for ones still starting (output labelled by worker)")
    @argument("--worker", metavar="ID", help="run on this worker (ids as in %%vast_status, e.g. w1)")
    @argument("--push", metavar="NAMES", action="append",
              help="notebook variables to copy to the worker(s) first, comma-separated")
    @argument("--pull", metavar="NAMES", action="append",
              help="worker variables to copy into the notebook afterwards, comma-separated; "
                   "with --all each becomes {worker id: value}")
    @cell_magic
    def vast_run(self, line: str, cell: str) -> Any:
        """Run the cell on a ready worker (or each, with --all), in a namespace the worker keeps across cells.

        ``print`` output and the value of the last expression come back into this
        cell. Remote functions reach the same namespace with
        ``vastnb.worker_namespace()``. Top-level ``await`` works.
        """
        args = parse(self.vast_run, "%%vast_run", line)
        if args is None:
            return None
        if args.all and args.worker:
            raise UsageError("%%vast_run: give either --all or --worker ID, not both.")
        push_names, pull = python_names("--push", args.push), python_names("--pull", args.pull)
        app = self.current("%%vast_run")
        cell_code = compile_cell(self.shell, "vast_run", line, cell, top_level_await=True)
        ns = self._ns
        missing = [n for n in push_names if n not in ns]
        if missing:
            names = ", ".join(f"`{n}`" for n in missing)
            raise UsageError(f"%%vast_run --push: {names} {'is' if len(missing) == 1 else 'are'} not defined in the notebook.")
        push = {n: ns[n] for n in push_names}
        check_sendable(push)
        self._ready(app, "%%vast_run")
        if args.all or args.worker:
            settle(app)
        serving = [w.id for w in app.snapshot().workers if w.state.serving]
        targets: list[str] | None = None
        if args.all:
            targets = serving
        elif args.worker:
            if args.worker not in serving:
                raise UsageError(
                    f"%%vast_run --worker: worker {args.worker!r} is not ready; ready workers: {', '.join(serving) or 'none'}."
                )
            targets = [args.worker]
        request = {"source": cell_code.source, "filename": cell_code.filename, "push": push, "pull": pull}
        results = CellRun(app, request, targets, labelled=len(targets or ()) > 1).run()
        ok = {wid: r for wid, r in results.items() if not isinstance(r, BaseException)}
        if len(ok) != len(results):
            shown = PerWorker({wid: r["repr"] for wid, r in ok.items() if r.get("repr") is not None})
            if shown:
                print(repr(shown))
            raise_failures(results)
        for name in pull:
            if args.all:
                self._bind(name, {wid: r["pulled"][name] for wid, r in ok.items()})
            else:
                self._bind(name, next(iter(ok.values()))["pulled"][name])
        if args.all:
            values = PerWorker({wid: r["repr"] for wid, r in ok.items() if r.get("repr") is not None})
            return values or None
        text = next(iter(ok.values())).get("repr")
        return WorkerValue(text) if text is not None else None

    # ================================================================ views and lifecycle
    @magic_arguments()
    @help_argument
    @line_magic
    def vast_status(self, line: str) -> None:
        """Show the deployment: workers and their states, benchmark scores, the autoscaler.

        In Jupyter this is the live dashboard (``app.dashboard()``); elsewhere a text summary.
        """
        if parse(self.vast_status, "%vast_status", line) is None:
            return None
        app = self.current("%vast_status")
        from IPython.display import display

        from ..widgets._html import widget_frontend

        if widget_frontend(self.shell):
            try:
                display(app.dashboard())
                return None
            except ImportError:
                pass
        render_html, render_text = renderers()
        snap = app.snapshot()
        display({"text/plain": render_text(snap), "text/html": render_html(snap)}, raw=True)
        return None

    @magic_arguments()
    @help_argument
    @argument("worker", nargs="?", help="only this worker's log (default: every worker)")
    @argument("-n", "--lines", type=int, default=50, metavar="N", help="the last N lines of each log (0: all; default 50)")
    @line_magic
    def vast_logs(self, line: str) -> None:
        """Show the workers' logs (their own output outside calls: start-up, contexts, benchmark, errors)."""
        args = parse(self.vast_logs, "%vast_logs", line)
        if args is None:
            return None
        app = self.current("%vast_logs")
        workers = [w.id for w in app.snapshot().workers]
        if args.worker is not None and args.worker not in workers:
            raise UsageError(f"%vast_logs: no worker {args.worker!r}; workers: {', '.join(workers) or 'none yet'}.")
        logs = app.logs(args.worker)
        if not logs:
            print(f"vastnb: deployment {app.name!r} has no workers yet; they start with the first call or app.ensure_ready().")
            return None
        for wid, lines in logs.items():
            shown = lines[-args.lines:] if args.lines > 0 else lines
            if not shown:
                print(f"[{wid}] (no log lines)")
            for text in shown:
                print(f"[{wid}] {text}")
        return None

    @magic_arguments()
    @help_argument
    @argument("--keep-endpoint", action="store_true",
              help="backend vast only: leave the Vast deployment and endpoint serving (and costing money); "
                   "the same %%vast_deployment name picks it up again later")
    @line_magic
    def vast_down(self, line: str) -> None:
        """Stop every worker of the deployment (contexts exit, GPUs are freed); calls still waiting fail.

        On the vast backend this also deletes the Vast deployment and its endpoint, unless
        --keep-endpoint is given.
        """
        args = parse(self.vast_down, "%vast_down", line)
        if args is None:
            return None
        app = self.current("%vast_down")
        snap = app.snapshot()
        alive = sum(1 for w in snap.workers if w.state.alive)
        endpoint = snap.endpoint_id
        try:
            app.shutdown(keep_endpoint=args.keep_endpoint)
        except NotSupportedByBackend:
            raise UsageError(
                f"%vast_down --keep-endpoint: deployment {app.name!r} runs on the {app.backend} backend, whose workers "
                "cannot outlive this kernel. Run %vast_down without --keep-endpoint."
            ) from None
        stopped = f"{alive} worker{'s' if alive != 1 else ''} stopped"
        if endpoint is None:
            print(f"vastnb: deployment {app.name!r} is shut down ({stopped}).")
        elif args.keep_endpoint:
            print(f"vastnb: deployment {app.name!r} let go; its Vast endpoint {endpoint} keeps serving and costing money. "
                  f"Delete it later with `vastai delete endpoint {endpoint}`.")
        else:
            print(f"vastnb: deployment {app.name!r} is shut down; its Vast deployment and endpoint {endpoint} are deleted.")
        return None

    @magic_arguments()
    @help_argument
    @argument("function", nargs="?", help="the remote function to benchmark (default: the deployment's benchmark function)")
    @line_magic
    def vast_benchmark(self, line: str) -> None:
        """Run the benchmark again on every ready worker and show their scores (workload units per second)."""
        args = parse(self.vast_benchmark, "%vast_benchmark", line)
        if args is None:
            return None
        app = self.current("%vast_benchmark")
        try:
            name = app.benchmark_function(args.function)
        except ConfigurationError as exc:
            raise UsageError(f"%vast_benchmark: {exc}") from None
        self._ready(app, "%vast_benchmark")
        self._sync(app, "%vast_benchmark")
        try:
            scores = app.benchmark(name)
        except Exception as exc:
            show_short(exc, ["%vast_benchmark: the benchmark failed:", *format_remote_failure(exc)])
            raise
        o = app.functions[name].options
        per_run = "10 concurrent requests" if o.allow_parallel_requests else "1 request"
        print(f"benchmark of {name}: {o.benchmark_runs} runs of {per_run} on {len(scores)} worker{'s' if len(scores) != 1 else ''}")
        width = max([len("worker"), *map(len, scores)])
        print(f"  {'worker'.ljust(width)}  perf score (workload units/s)")
        for wid, score in scores.items():
            print(f"  {wid.ljust(width)}  {score:,.1f}")
        return None

    @magic_arguments()
    @help_argument
    @line_magic
    def vast_gpus(self, line: str) -> Any:
        """Show the GPU picker for the deployment's image: choose the GPUs its workers may run on."""
        if parse(self.vast_gpus, "%vast_gpus", line) is None:
            return None
        app = self.current("%vast_gpus")
        image = app.current_image
        if image is None:
            raise UsageError(
                f"%vast_gpus: deployment {app.name!r} has no image yet; declare it first, e.g. "
                f'image = {self._var}.image("vastai/pytorch:@vastai-automatic-tag")'
            )
        picker = optional("vastnb.widgets", "GpuPicker", "%vast_gpus: the GPU picker")
        return picker(image, source=app)

    @magic_arguments()
    @help_argument
    @argument("path", nargs="?", help="the deployment file to write, e.g. deploy.py (default: show it, write nothing)")
    @argument("--client", metavar="CLIENT_PATH", help="also write a client script that calls the deployment")
    @argument("--check", action="store_true",
              help="write nothing; report what would be exported and what the official wire cannot carry")
    @line_magic
    def vast_export(self, line: str) -> None:
        """Export the notebook as a deployment file the official ``vastai`` SDK deploys unchanged.

        Reads the notebook file when the kernel knows it, else this session's
        cells (the last definition of each function or class wins).
        """
        args = parse(self.vast_export, "%vast_export", line)
        if args is None:
            return None
        from IPython.display import display

        from ._export import history_cells, notebook_path

        export = optional("vastnb.export", None, "%vast_export: the export module")
        options = {"path": args.path, "client": args.client, "check": args.check}
        source = notebook_path(self.shell)
        try:
            if source is not None:
                result = export.export_notebook(source, **options)
            else:
                app = self._app or self._ns.get(self._var)
                name = app.name if isinstance(app, Deployment) else None
                cells, raised = history_cells(self.shell, failed=self._failed_cells)
                if raised:
                    listed = ", ".join(f"In[{n}]" for n in raised)
                    print(f"vastnb: left out the cell(s) that raised: {listed}.")
                result = export.export_cells(cells, name=name, origin="this session's cells", **options)
        except (ConfigurationError, SerializationError) as exc:
            raise UsageError(f"%vast_export: {exc}") from None
        if result.written or args.check:
            print(result.summary())
        else:
            display({"text/plain": f"{result.summary()}\n\n{result.module_source}",
                     "text/markdown": result._repr_markdown_()}, raw=True)
        return None
