"""The examples in the docs run: code that readers copy must work."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mock_server.config import parse_config

ROOT = Path(__file__).resolve().parents[1]


def _blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), re.S)


def test_readme_python_example_runs() -> None:
    (example,) = _blocks(ROOT / "README.md", "python")
    result = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_readme_quick_start_is_two_make_targets_that_exist() -> None:
    (quick_start,) = _blocks(ROOT / "README.md", "sh")[:1]
    commands = [line.split("#")[0].strip() for line in quick_start.strip().splitlines()]
    assert commands == ["make run", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M)
    assert re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_config_examples_in_the_simulation_doc_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEV_KEY_NEXT", "dev-key-next")
    blocks = _blocks(ROOT / "docs" / "simulation.md", "yaml")
    assert blocks
    for block in blocks:
        parse_config(yaml.safe_load(block), "docs/simulation.md")
