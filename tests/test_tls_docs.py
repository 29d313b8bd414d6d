"""docs/tls.md's examples run: the Python example against the embedded mock, and every command parses
with the real program's own parser (or, for docker-compose, renders)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import build_parser as harness_parser
from mock_server.cli import build_parser as mock_parser

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "tls.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)


def _commands(program: str) -> list[list[str]]:
    lines = [line for block in _blocks("sh") for line in block.strip().splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith(f"{program} ")]


def test_the_python_example_runs() -> None:
    (example,) = _blocks("python")
    result = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_the_mock_commands_use_real_flags() -> None:
    commands = _commands("hostedai-mock")
    assert len(commands) == 3
    for argv in commands:
        args = mock_parser().parse_args(argv)
        assert args.tls_self_signed or (args.tls_cert and args.tls_key)


def test_the_harness_commands_use_real_flags() -> None:
    commands = _commands("hostedai-harness")
    assert len(commands) == 2
    for argv in commands:
        args = harness_parser().parse_args(argv)
        assert args.tls or args.ca_bundle


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not on PATH")
def test_the_compose_command_renders() -> None:
    (argv,) = _commands("docker-compose")
    files = [word for i, word in enumerate(argv) if i and argv[i - 1] == "-f"]
    flags = [part for file in files for part in ("-f", file)]
    rendered = subprocess.run(["docker-compose", *flags, "config", "-q"], cwd=ROOT, capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
