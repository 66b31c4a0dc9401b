"""The layering of docs/architecture.md, checked on the source: who may import whom, and how big a module may grow."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vastnb"
MAX_LINES = 520  # "a file that passes ~500 lines usually holds two ideas" (STYLE.md)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (relative imports resolved), at any depth of the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _violations(layer: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for name, path in MODULES.items():
        if name != layer and not name.startswith(layer + "."):
            continue
        for imported in _imports(path):
            if any(imported == f or imported.startswith(f + ".") for f in forbidden):
                out.append(f"{name} imports {imported}")
    return sorted(out)


NOTEBOOK_STACK = ("IPython", "ipywidgets", "ipykernel", "vastnb.magics", "vastnb.widgets")


@pytest.mark.parametrize("layer, forbidden", [
    # the runtime and workers never import IPython or the views
    ("vastnb.backends", NOTEBOOK_STACK + ("vastnb.deployment", "vastnb.export")),
    ("vastnb.worker", NOTEBOOK_STACK + ("vastnb.backends", "vastnb.deployment", "vastnb.export")),
    ("vastnb.autoscaling", NOTEBOOK_STACK + ("vastnb.backends", "vastnb.deployment", "vastnb.worker")),
    ("vastnb.wire", NOTEBOOK_STACK + ("vastnb.backends", "vastnb.deployment", "vastnb.worker")),
    ("vastnb.spec", NOTEBOOK_STACK + ("vastnb.backends", "vastnb.deployment", "vastnb.worker", "vastnb.wire")),
    ("vastnb.events", NOTEBOOK_STACK + ("vastnb.backends", "vastnb.deployment", "vastnb.worker")),
    ("vastnb.errors", NOTEBOOK_STACK + ("vastnb.backends", "vastnb.deployment", "vastnb.worker")),
    # the deployment is the user's API: it talks to backends through their protocol, and never draws
    ("vastnb.deployment", NOTEBOOK_STACK + ("vastnb.backends.local", "vastnb.backends.vast", "vastnb.worker.server")),
    ("vastnb.query", NOTEBOOK_STACK + ("vastnb.backends", "vastnb.deployment")),
    ("vastnb.gpus", NOTEBOOK_STACK + ("vastnb.backends", "vastnb.deployment")),
])
def test_layers_import_only_downwards(layer: str, forbidden: tuple[str, ...]) -> None:
    assert _violations(layer, forbidden) == []


def test_no_one_reaches_into_a_backends_private_modules() -> None:
    out = []
    for name, path in MODULES.items():
        for imported in _imports(path):
            for backend in ("vastnb.backends.local", "vastnb.backends.vast"):
                private = imported.startswith(backend + "._")
                if private and not name.startswith(backend):
                    out.append(f"{name} imports {imported}")
    assert out == []


def test_widgets_are_imported_only_by_the_notebook_layer() -> None:
    allowed = ("vastnb.widgets", "vastnb.magics")  # (the package root lends them to the deployment by name)
    out = [f"{name} imports {imported}" for name, path in MODULES.items() if not name.startswith(allowed)
           for imported in _imports(path) if imported == "vastnb.widgets" or imported.startswith("vastnb.widgets.")]
    assert out == []


def test_no_module_holds_two_ideas() -> None:
    too_long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert too_long == {}


def test_no_two_modules_share_a_basename_with_different_jobs() -> None:
    seen: dict[str, list[str]] = {}
    for name, path in MODULES.items():
        if path.name not in ("__init__.py", "__main__.py"):
            seen.setdefault(path.name, []).append(name)
    assert {base: names for base, names in seen.items() if len(names) > 1} == {}


def test_the_check_itself_sees_a_violation() -> None:
    """The import reader must find what it is looking for, or every test above passes vacuously."""
    assert "vastnb.backends.local._runtime" in _imports(MODULES["vastnb.backends.local"])
    assert "IPython.core.magic" in _imports(MODULES["vastnb.magics._magics"])
    assert "vastnb.spec" in _imports(MODULES["vastnb.worker.core"])
