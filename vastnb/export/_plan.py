"""Which statements go into the export, in which order, and what to tell the user about the rest."""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass, field

from ._notebook import ExportError, ParsedCell
from ._model import Aliases, Kind, Unit, _py_str, classify, exported_cell
from ._scope import analyse

__all__ = ["Plan", "make_plan"]

_BUILTINS = frozenset(dir(builtins)) | {"__name__", "__file__", "__doc__", "__builtins__", "__spec__",
                                        "__loader__", "__package__", "__annotations__"}
_HEADER = (Kind.DEPLOYMENT, Kind.IMAGE, Kind.AUTOSCALING)


@dataclass
class Plan:
    units: list[Unit]
    aliases: Aliases
    deployment: Unit
    header: list[Unit]
    pre_code: list[Unit]
    imports: list[Unit]
    futures: list[Unit]
    code: list[Unit]
    remotes: list[Unit]
    contexts: list[Unit]
    query_names: set[str] = field(default_factory=set)  # aliases of vastnb.query names the export uses
    query_modules: set[str] = field(default_factory=set)  # aliases of vastnb.query the export uses
    closures: dict[str, list[Unit]] = field(default_factory=dict)  # remote name -> code it reaches
    benchmark_owner: str | None = None
    benchmark_dropped: dict[str, str] = field(default_factory=dict)  # function -> owner it yields to
    warnings: list[str] = field(default_factory=list)


class _Resolver:
    def __init__(self, units: list[Unit], cells: list[ParsedCell]) -> None:
        self.units = units
        self.defs: dict[str, list[int]] = {}
        self.final: dict[str, Unit] = {}
        for unit in units:
            if unit.kind in (Kind.DROP,) or unit.top_await:
                continue
            for name in unit.names.defs:
                self.defs.setdefault(name, []).append(unit.order)
            if unit.kind in (Kind.REMOTE, Kind.CONTEXT):
                for name in unit.names.defs:
                    self.final[name] = unit
        self.mutations: dict[str, list[Unit]] = {}
        for unit in units:
            if unit.mutates and unit.kind is Kind.CODE and not unit.top_await:
                self.mutations.setdefault(unit.mutates, []).append(unit)
        self.stars = [u for u in units if isinstance(u.stmt.node, ast.ImportFrom)
                      and any(a.name == "*" for a in u.stmt.node.names)]
        # where names that the export cannot use are defined, to explain what is missing
        self.elsewhere: dict[str, str] = {}
        for unit in units:
            for name in unit.names.defs:
                if unit.top_await:
                    self.elsewhere.setdefault(name, f"{unit.where}, which awaits at the top level (a module cannot)")
                elif unit.kind is Kind.DROP:
                    self.elsewhere.setdefault(name, f"{unit.where}, which uses IPython syntax")
        for pc in cells:
            if exported_cell(pc):
                continue
            why = "is tagged vast-skip" if pc.skipped else f"is a %%{pc.magic} cell"
            for st in pc.statements:
                for name in analyse(st.node).defs:
                    self.elsewhere.setdefault(name, f"cell {pc.number}, which {why}")

    def resolve(self, name: str, before: int | None) -> Unit | None:
        orders = self.defs.get(name)
        if not orders:
            return None
        candidates = [o for o in orders if before is None or o < before]
        if not candidates:
            return None
        unit = self.units[max(candidates)]
        if unit.kind in (Kind.REMOTE, Kind.CONTEXT):
            unit = self.final[name]
        return unit

    def closure(self, roots: list[Unit], problems: list[tuple[Unit, str, Unit | None]]) -> list[Unit]:
        """Every unit the roots need (roots included), in notebook order.

        ``problems`` collects (requesting unit, name, resolved unit or None) for names that
        resolve to nothing exportable (unknown names, vastnb imports).
        """
        needed: dict[int, Unit] = {}
        work = list(roots)
        for unit in roots:
            needed[unit.order] = unit
        while work:
            unit = work.pop()
            reads = [(n, unit.order) for n in sorted(unit.names.eager)] + [(n, None) for n in sorted(unit.names.lazy)]
            for name, before in reads:
                if name in _BUILTINS and not self.defs.get(name):
                    continue
                target = self.resolve(name, before)
                if target is None:
                    if before is not None and name in unit.names.defs:
                        continue  # `for x in ...: x` binds before it reads
                    problems.append((unit, name, None))
                    continue
                if target.kind is Kind.VASTNB_IMPORT:
                    problems.append((unit, name, target))
                    continue
                extra = [target]
                limit = before if before is not None else len(self.units)
                extra += [m for m in self.mutations.get(name, []) if target.order < m.order < limit]
                for dep in extra:
                    if dep.order not in needed:
                        needed[dep.order] = dep
                        work.append(dep)
        return [needed[o] for o in sorted(needed)]


def make_plan(cells: list[ParsedCell], *, default_name: str) -> Plan:
    warnings: list[str] = []
    for pc in cells:
        if pc.error and exported_cell(pc):
            if pc.forced:
                raise ExportError(f"cell {pc.number} is tagged vast-export but is not valid Python ({pc.error}).")
            warnings.append(f"cell {pc.number} is not valid Python ({pc.error}); the export leaves it out.")
        if pc.forced and pc.magic and not exported_cell(pc):
            warnings.append(f"cell {pc.number} is tagged vast-export but is a %%{pc.magic} cell, whose code runs "
                            "elsewhere; the export leaves it out. Move the code to a plain cell.")
    aliases = Aliases()
    units = classify(cells, aliases, warnings)
    resolver = _Resolver(units, cells)

    deployment = _the_deployment(units)
    if deployment.deployment is not None and "name" not in deployment.deployment.kept:
        deployment.deployment.kept = {"name": _py_str(default_name), **deployment.deployment.kept}
        deployment.deployment.name_node = ast.Constant(default_name)
    header = [u for u in units if u.kind in _HEADER and (u.kind is not Kind.DEPLOYMENT or u is deployment)]

    remotes = _finals(units, Kind.REMOTE)
    contexts = _finals(units, Kind.CONTEXT)
    for unit in remotes:
        if isinstance(unit.stmt.node, ast.FunctionDef):
            raise ExportError(
                f"{unit.stmt.node.name} ({unit.where}) is a plain `def`, but remote functions are coroutines. "
                f"Make it `async def {unit.stmt.node.name}(...)`."
            )
    forced: list[Unit] = []
    for unit in units:
        if not unit.forced or unit.kind not in (Kind.CODE, Kind.IMPORT, Kind.FUTURE):
            continue
        if unit.top_await:
            warnings.append(f"{unit.where} (tagged vast-export) awaits at the top level, which a module cannot; "
                            "the export leaves that statement out. Move it into a @context's __aenter__.")
            continue
        forced.append(unit)

    problems: list[tuple[Unit, str, Unit | None]] = []
    pre = resolver.closure(header, problems)
    main = resolver.closure([*remotes, *contexts, *forced], problems)
    if any(target is None for _, _, target in problems) and resolver.stars:
        main = resolver.closure([*remotes, *contexts, *forced, *resolver.stars], [])
        problems = [p for p in problems if p[2] is not None]
    pre_orders = {u.order for u in pre}

    def body(units_: list[Unit]) -> list[Unit]:
        return [u for u in units_ if u.kind in (Kind.CODE, Kind.REMOTE, Kind.CONTEXT)]

    every = [*pre, *[u for u in main if u.order not in pre_orders]]
    plan = Plan(
        units=units, aliases=aliases, deployment=deployment, header=header,
        pre_code=body(pre),
        imports=_unique_text(sorted((u for u in every if u.kind is Kind.IMPORT), key=lambda u: u.order)),
        futures=_unique_text(sorted((u for u in every if u.kind is Kind.FUTURE), key=lambda u: u.order)),
        code=body([u for u in main if u.order not in pre_orders]),
        remotes=remotes, contexts=contexts, warnings=warnings,
    )
    _explain_problems(plan, problems, resolver, header)
    for unit in remotes:
        plan.closures[unit.remote.name if unit.remote else ""] = resolver.closure([unit], [])
    _choose_benchmark(plan)
    _check_calculators(plan)
    return plan


def _check_calculators(plan: Plan) -> None:
    """The official worker calls ``workload_calculator(**kwargs of the call)`` (serve.py), not with a payload dict."""
    defs = {u.stmt.node.name: u.stmt.node for u in plan.units
            if isinstance(u.stmt.node, (ast.FunctionDef, ast.AsyncFunctionDef)) and u.kind is Kind.CODE}
    for unit in plan.remotes:
        remote = unit.remote
        assert remote is not None
        option = remote.options.get("workload_calculator")
        if option is None or not isinstance(option.node, ast.Name) or option.node.id not in defs:
            continue
        calc = defs[option.node.id]
        fn_args = remote.node.args
        fn_params = [a.arg for a in [*fn_args.posonlyargs, *fn_args.args, *fn_args.kwonlyargs]]
        c_args = calc.args
        accepted = {a.arg for a in [*c_args.args, *c_args.kwonlyargs]}
        takes_any = c_args.kwarg is not None
        missing = [p for p in fn_params if p not in accepted and not takes_any]
        extra = [p for p in _required_parameters(calc) if p not in fn_params]
        if missing or extra:
            plan.warnings.append(
                f"{remote.name}: the official worker calls workload_calculator {calc.name}() with "
                f"{remote.name}'s own arguments ({calc.name}({', '.join(f'{p}=...' for p in fn_params)})), which "
                f"{calc.name}({', '.join(a.arg for a in c_args.args)}) does not accept; it raises there and every "
                f"request counts as 100. Give it {remote.name}'s parameters: def {calc.name}"
                f"({', '.join(fn_params)}): ..."
            )


def _the_deployment(units: list[Unit]) -> Unit:
    decls = [u for u in units if u.kind is Kind.DEPLOYMENT and u.deployment is not None]
    if not decls:
        raise ExportError(
            "the notebook declares no deployment, so there is nothing to export. Declare one in a cell, "
            'either `app = vastnb.Deployment("my-app")` or `%vast_deployment my-app` (after `%load_ext vastnb`), '
            "then decorate functions with @app.remote(...) or write them in %%vast_remote cells."
        )
    last = decls[-1]
    assert last.deployment is not None
    for unit in decls[:-1]:
        assert unit.deployment is not None
        same_var = unit.deployment.var == last.deployment.var
        same_name = unit.deployment.kept.get("name") == last.deployment.kept.get("name")
        if not (same_var and same_name):
            raise ExportError(
                f"the notebook declares more than one deployment ({unit.deployment.kept.get('name', '?')} as "
                f"`{unit.deployment.var}` in {unit.where}, {last.deployment.kept.get('name', '?')} as "
                f"`{last.deployment.var}` in {last.where}); an export is one deployment file. Tag the cells of the "
                "other deployments vast-skip, or split the notebook."
            )
        unit.kind = Kind.DROP  # an earlier run of the same declaration
    return last


def _finals(units: list[Unit], kind: Kind) -> list[Unit]:
    last: dict[str, Unit] = {}
    for unit in units:
        if unit.kind is kind:
            for name in unit.names.defs:
                last[name] = unit
    return sorted(set(last.values()), key=lambda u: u.order)


def _unique_text(units: list[Unit]) -> list[Unit]:
    seen: set[str] = set()
    out = []
    for unit in units:
        if unit.stmt.text not in seen:
            seen.add(unit.stmt.text)
            out.append(unit)
    return out


def _explain_problems(plan: Plan, problems: list[tuple[Unit, str, Unit | None]], resolver: _Resolver,
                      header: list[Unit]) -> None:
    aliases = plan.aliases
    told: set[tuple[str, str]] = set()
    app_var = plan.deployment.deployment.var if plan.deployment.deployment else "app"
    for unit, name, target in problems:
        who = _who(unit)
        if target is not None:  # a vastnb import
            if name in aliases.query_names:
                plan.query_names.add(name)
                continue
            if name in aliases.query_modules:
                plan.query_modules.add(name)
                continue
            if unit in header and name in aliases.vastnb_modules:
                continue  # vastnb.query.<column> in a requirement; rewritten
            if name in aliases.deployment_names or name == app_var:
                continue
            attrs = sorted(_attributes_used(unit.stmt.node, name)) or [""]
            thing = ", ".join(f"{name}.{a}" if a else name for a in attrs)
            if (who, thing) not in told:
                told.add((who, thing))
                plan.warnings.append(
                    f"{who} uses {thing}, which exists only in vastnb, not on the official worker "
                    "(the export leaves the vastnb import out, so it fails there with NameError). "
                    "Rewrite it with plain Python, or keep it to vastnb's own backends."
                )
            continue
        if (who, name) in told:
            continue
        told.add((who, name))
        where = resolver.elsewhere.get(name)
        if where:
            plan.warnings.append(f"{who} uses `{name}`, which only {where} defines; the export leaves that out, "
                                 f"so `{name}` is undefined on the worker. Define it in a plain cell, or tag "
                                 "that cell vast-export.")
        else:
            plan.warnings.append(f"{who} uses `{name}`, which no exported cell defines; it is undefined on the worker.")


def _who(unit: Unit) -> str:
    if unit.remote is not None:
        return unit.remote.name
    if unit.context is not None:
        return f"context {unit.context.name}"
    node = unit.stmt.node
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return f"{node.name} ({unit.where})"
    return f"the code in {unit.where}"


def _attributes_used(node: ast.AST, name: str) -> set[str]:
    return {
        n.attr for n in ast.walk(node)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == name
    }


def _has_benchmark(unit: Unit) -> bool:
    assert unit.remote is not None
    options = unit.remote.options
    return any(options.get(k) is not None and options[k].source.strip() != "None"
               for k in ("benchmark_dataset", "benchmark_generator"))


def _choose_benchmark(plan: Plan) -> None:
    with_benchmark = [u for u in plan.remotes if u.remote is not None and _has_benchmark(u)]
    if with_benchmark:
        owner = with_benchmark[0].remote
        assert owner is not None
        plan.benchmark_owner = owner.name
        others = [u.remote.name for u in with_benchmark[1:] if u.remote is not None]
        for name in others:
            plan.benchmark_dropped[name] = owner.name
        if others:
            plan.warnings.append(
                f"{len(with_benchmark)} remote functions declare a benchmark ({owner.name}, {', '.join(others)}); "
                f"the official worker accepts exactly one per deployment, so the export keeps {owner.name}'s and "
                f"leaves out the benchmark of {', '.join(others)}."
            )
        return
    if not plan.remotes:
        raise ExportError(
            "the notebook declares no remote function, so the export has nothing to serve, and the official worker "
            "refuses to start without one remote function that defines a benchmark. Decorate an `async def` with "
            "@app.remote(benchmark_dataset=[{...}]) (or write it in a %%vast_remote cell)."
        )
    names = ", ".join(u.remote.name for u in plan.remotes if u.remote is not None)
    whom = "it" if len(plan.remotes) == 1 else "one of them"
    without_arguments = [u.remote.name for u in plan.remotes if u.remote is not None
                         and not _required_parameters(u.remote.node)]
    hint = (f"; {without_arguments[0]}() takes no arguments, so benchmark_dataset=[{{}}] would do"
            if without_arguments else "")
    raise ExportError(
        f"no remote function declares a benchmark ({names}), and the official worker refuses to start without "
        f"one (\"Missing EndpointHandler with BenchmarkConfig\"); nothing was written. Give {whom} "
        f"benchmark_dataset=[{{...}}] (or benchmark_generator=...) in @app.remote(...), or --benchmark-dataset "
        f"in its %%vast_remote line{hint}. vastnb's local backend runs without one."
    )


def _required_parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    required = [a.arg for a in positional[: len(positional) - len(args.defaults)]]
    required += [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is None]
    return required
