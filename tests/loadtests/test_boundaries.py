"""The load tests are a locust project of their own: they talk HTTP to their target and import neither
the harness nor the mock; the harness runs them as a program and imports neither them nor the mock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _top_level_imports(package: str) -> dict[Path, set[str]]:
    found: dict[Path, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        modules: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
        found[path] = modules
    return found


@pytest.mark.parametrize("forbidden", ["harness", "mock_server"])
def test_loadtests_import_neither_the_harness_nor_the_mock(forbidden: str) -> None:
    files = _top_level_imports("loadtests")
    assert len(files) >= 8
    for path, modules in files.items():
        assert forbidden not in modules, f"{path.relative_to(ROOT)} imports {forbidden}"


@pytest.mark.parametrize("forbidden", ["loadtests", "mock_server"])
def test_the_harness_imports_neither_the_load_tests_nor_the_mock(forbidden: str) -> None:
    for path, modules in _top_level_imports("harness").items():
        assert forbidden not in modules, f"{path.relative_to(ROOT)} imports {forbidden}"
