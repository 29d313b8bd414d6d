"""docs/load.md's examples work: its SLO file is valid, and every command it shows names files that exist
and options its program knows."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from harness.cli import build_parser
from loadtests._slo import parse_slo

from .conftest import ROOT

DOC = ROOT / "docs" / "load.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)


def _commands(program: str) -> list[list[str]]:
    commands = []
    for block in _blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.split(" #")[0].split("&")[0])
            while words and "=" in words[0]:  # VAR=value prefixes
                words.pop(0)
            if words and words[0] == program:
                commands.append(words)
    return commands


def test_the_slo_example_is_a_valid_slo_file() -> None:
    (block,) = _blocks("yaml")
    slo = parse_slo(yaml.safe_load(block), Path("docs/load.md"))
    assert slo.gates(["HostedAiUser"])
    assert slo.gates(["HarpoonUser"])


# Locust's parser with every option the locustfiles add (its --help shows only its own).
_OPTIONS = f"""
import json
from locust.argument_parser import get_parser
from locust.util.load_locustfile import load_locustfile
for name in ("locustfile.py", "harpoon_locustfile.py", "shapes.py"):
    load_locustfile("{ROOT / "loadtests"}/" + name)
print(json.dumps([s for action in get_parser()._actions for s in action.option_strings]))
"""


def test_every_locust_command_uses_files_that_exist_and_options_locust_knows() -> None:
    commands = _commands("locust")
    assert len(commands) >= 6
    options = set(json.loads(subprocess.run([sys.executable, "-c", _OPTIONS], capture_output=True, timeout=60).stdout))
    assert {"--users", "--shape", "--slo-file"} <= options
    for argv in commands:
        for path in argv[argv.index("-f") + 1].split(","):
            assert (ROOT / path).is_file(), f"{' '.join(argv)}: no {path}"
        for flag in (a for a in argv if a.startswith("--")):
            assert flag in options, f"{' '.join(argv)}: locust has no {flag}"


def test_every_harness_command_parses() -> None:
    commands = _commands("hostedai-harness")
    assert len(commands) >= 2
    for argv in commands:
        args = build_parser().parse_args(argv[1:])
        assert args.command == "load"


def test_make_load_is_a_target_running_the_suite() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^load: \$\(BIN\)/\.installed", makefile, re.M)
    assert "$(BIN)/hostedai-harness load --report-dir reports $(ARGS)" in makefile
    assert "make load" in DOC.read_text()
