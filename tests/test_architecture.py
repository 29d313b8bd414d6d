"""ARCHITECTURE.md, pinned: the import graph has no circle and only downward arrows, and a layer loads
nothing above it (checked in fresh interpreters, where an import circle or an eager package face would
show). `test_boundaries.py` pins the cross-package rules."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first: a module may import its own layer and the ones before it, never one after it.
LAYERS: dict[str, list[tuple[str, ...]]] = {
    "mock_server": [
        ("mock_server.version", "mock_server.resources"),
        ("mock_server.serving_profiles",),
        ("mock_server.config",),
        ("mock_server.sim",),
        ("mock_server.calibrate",),
        ("mock_server.dashboard",),
        ("mock_server.api",),
        ("mock_server.cells",),
        ("mock_server.tls",),
        ("mock_server.background", "mock_server.embedded", "mock_server.cli", "mock_server.__main__", "mock_server"),
    ],
    "harness": [
        ("harness.yamlfile", "harness.argparsing", "harness.resources", "harness"),
        ("harness.connector",),
        ("harness.orchestrator",),
        ("harness.service",),
        ("harness.target", "harness.control_plane"),
        ("harness.preflight",),
        ("harness.suites",),
        ("harness.report",),
        ("harness.drift",),
        ("harness.cli", "harness.__main__", "harness.pytest_plugin"),
    ],
}
SHIPPED = ("harness.connector", "harness.orchestrator", "harness.service")
VERIFYING = (
    "harness.target",
    "harness.control_plane",
    "harness.preflight",
    "harness.suites",
    "harness.report",
    "harness.drift",
    "harness.cli",
    "harness.pytest_plugin",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in (ROOT / package).rglob("*.py")}


def _layer(package: str, module: str) -> int:
    """The layer of a module: the most specific prefix listed (`mock_server` itself is the face)."""
    best, best_len = -1, -1
    for index, layer in enumerate(LAYERS[package]):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best >= 0, f"{module} is in no layer of ARCHITECTURE.md"
    return best


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, known: set[str]) -> set[str]:
    """The project modules a file imports (at module level or inside functions), `TYPE_CHECKING` aside."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = {id(n) for node in ast.walk(tree) if _type_checking_only(node) for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import sub` imports the submodule when there is one.
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def _graph(package: str) -> dict[str, set[str]]:
    modules = _modules(package)
    known = set(modules)
    return {name: _imports(path, known) - {name} for name, path in modules.items()}


@pytest.mark.parametrize("package", ["mock_server", "harness"])
def test_every_import_points_down(package: str) -> None:
    upward = [
        f"{module} (layer {_layer(package, module)}) imports {target} (layer {_layer(package, target)})"
        for module, targets in _graph(package).items()
        for target in targets
        if target.split(".")[0] == package and _layer(package, target) > _layer(package, module)
    ]
    assert upward == []


@pytest.mark.parametrize("package", ["mock_server", "harness"])
def test_the_import_graph_has_no_circle(package: str) -> None:
    graph = _graph(package)
    # A package imports its own submodules to re-export them: that edge is the face, not a circle.
    edges = {module: {t for t in targets if not module.startswith(t + ".")} for module, targets in graph.items()}
    state: dict[str, str] = {}
    circles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges.get(module, ())):
            if state.get(target) == "open":
                circles.append([*path[path.index(target) :], target] if target in path else [module, target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_the_shipped_half_never_imports_the_verifying_half() -> None:
    offending = [
        f"{module} imports {target}"
        for module, targets in _graph("harness").items()
        if module.startswith(SHIPPED)
        for target in targets
        if target.startswith(VERIFYING)
    ]
    assert offending == []


def _loaded_by(statement: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running `statement`."""
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [
        ("import mock_server.sim.simulator", ("aiohttp", "jsonschema_rs", "prometheus_client", "mock_server.api")),
        ("import mock_server", ("aiohttp", "mock_server.api", "mock_server.embedded")),
        ("import mock_server.config", ("aiohttp", "mock_server.sim", "mock_server.api")),
        ("import mock_server.dashboard.snapshot", ("aiohttp", "prometheus_client", "mock_server.api")),
        ("import harness.connector", ("harness.suites", "harness.cli", "harness.target", "schemathesis", "hypothesis")),
        ("import harness.service.app", ("harness.suites", "harness.cli", "harness.target", "hypothesis", "locust")),
        ("import harness.control_plane", ("harness.suites", "harness.connector", "hypothesis")),
    ],
)
def test_a_layer_loads_nothing_above_it(statement: str, forbidden: tuple[str, ...]) -> None:
    offending = sorted(m for m in _loaded_by(statement) if any(m == f or m.startswith(f + ".") for f in forbidden))
    assert offending == []


def test_every_package_says_what_it_is_for() -> None:
    for package in ("mock_server", "harness"):
        for directory in [ROOT / package, *(p for p in (ROOT / package).rglob("*") if p.is_dir())]:
            if directory.name == "__pycache__" or not any(directory.glob("*.py")):
                continue
            init = directory / "__init__.py"
            assert init.is_file(), f"{directory.relative_to(ROOT)} has no __init__.py"
            assert ast.get_docstring(ast.parse(init.read_text())), f"{init.relative_to(ROOT)} has no docstring"
