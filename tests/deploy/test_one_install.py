"""One `pip install` runs all three commands: every library the shipped packages import comes with the
project's own dependencies (not the `dev` extra), and the image installs the project without extras.
`tests/deploy/test_fresh_install.py` proves it end to end in a new virtualenv; this is the fast guard."""

from __future__ import annotations

import ast
import importlib.metadata
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.files import PYPROJECT, ROOT, dockerfile_stages


def _name(requirement: str) -> str:
    return canonicalize_name(Requirement(requirement).name)


def _closure(requirements: list[str]) -> set[str]:
    """The distributions these requirements install here, transitively (no extras)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen or (requirement.marker is not None and not requirement.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        todo += [Requirement(r) for r in importlib.metadata.requires(name) or []]
    return seen


def _optional(tree: ast.AST) -> set[int]:
    """The import nodes inside `try: ... except ImportError`: used when there, never required."""
    return {
        id(node)
        for handler_owner in ast.walk(tree)
        if isinstance(handler_owner, ast.Try)
        and any("ImportError" in ast.unparse(h.type) for h in handler_owner.handlers if h.type is not None)
        for statement in handler_owner.body
        for node in ast.walk(statement)
    }


def _imported_modules(package: str) -> set[str]:
    modules: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text("utf-8"), str(path))
        optional = _optional(tree)
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    own = {path.stem for path in (ROOT / package).rglob("*.py")}  # loadtests/ imports its siblings by name
    return modules - own - set(sys.stdlib_module_names) - {"__future__", "mock_server", "harness", "loadtests"}


def test_every_library_the_commands_import_is_a_main_dependency() -> None:
    installed = _closure(PYPROJECT["project"]["dependencies"])
    owners = importlib.metadata.packages_distributions()
    missing = {
        module: owners.get(module)
        for package in ("mock_server", "harness", "loadtests")
        for module in _imported_modules(package)
        if not {_name(d) for d in owners.get(module, [])} & installed
    }
    assert missing == {}, "imported at run time but only installed by the dev extra (or not at all)"


def test_the_suites_tools_are_main_dependencies_and_dev_holds_only_developer_tools() -> None:
    main = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert {"schemathesis", "hypothesis", "locust"} <= main
    dev = {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert dev.isdisjoint(main)
    assert not dev & {"schemathesis", "hypothesis", "locust", "aiohttp", "pydantic"}


def test_the_image_installs_the_project_without_extras() -> None:
    runs = " ".join(dockerfile_stages()[0].all("RUN"))
    assert "pip install ." in runs
    assert "[dev]" not in runs


def test_the_wheel_ships_harpoon_service_defaults_and_type_markers() -> None:
    force_included = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert force_included["configs/harpoon.yaml"] == "harness/_configs/harpoon.yaml"
    assert force_included["configs/models.yaml"] == "harness/_configs/models.yaml"
    for package in ("mock_server", "harness"):
        assert (ROOT / package / "py.typed").is_file()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert PYPROJECT["project"]["license"] == "MIT"
    classifiers = PYPROJECT["project"]["classifiers"]
    assert "Framework :: Pytest" in classifiers
    assert "Typing :: Typed" in classifiers
    assert {"Homepage", "Repository", "Documentation", "Issues"} <= set(PYPROJECT["project"]["urls"])
