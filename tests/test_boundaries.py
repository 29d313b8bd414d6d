"""The layering of DESIGN.md, pinned: the domain knows no HTTP, the client side never imports the mock,
and the contract is a valid OpenAPI 3.1 document."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

ROOT = Path(__file__).resolve().parents[1]


def _imports(package: str) -> dict[Path, set[str]]:
    found: dict[Path, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        modules: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules.add(node.module)
        found[path] = modules
    return found


def test_the_simulator_knows_no_http() -> None:
    for path, modules in _imports("mock_server/sim").items():
        http = {m for m in modules if m.split(".")[0] == "aiohttp" or m.startswith("mock_server.api")}
        assert not http, f"{path} imports {http}"


@pytest.mark.parametrize("name", ["time", "asyncio"])
def test_the_simulator_reads_no_clock_and_never_sleeps(name: str) -> None:
    for path, modules in _imports("mock_server/sim").items():
        assert name not in modules, f"{path} imports {name}: ask the injected clock instead"


def test_the_harness_never_imports_the_mock() -> None:
    for path, modules in _imports("harness").items():
        assert not any(m.split(".")[0] == "mock_server" for m in modules), path


def test_the_mock_never_imports_the_harness() -> None:
    for path, modules in _imports("mock_server").items():
        assert not any(m.split(".")[0] == "harness" for m in modules), path


def test_the_contract_is_valid_openapi() -> None:
    spec, base_uri = read_from_filename(str(ROOT / "contracts" / "hostedai.v1.yaml"))
    validate(spec, base_uri=base_uri)
    assert spec["openapi"].startswith("3.1")
