"""The examples in the docs run: code that readers copy must work."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import aiohttp
import pytest
import yaml

from mock_server import MockHostedAI
from mock_server.api.app import create_app
from mock_server.config import parse_config
from tests.conftest import config_with

ROOT = Path(__file__).resolve().parents[1]


def _blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), re.S)


def test_readme_python_example_runs() -> None:
    (example,) = _blocks(ROOT / "README.md", "python")
    result = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_readme_quick_start_is_two_make_targets_that_exist() -> None:
    (quick_start,) = [block for block in _blocks(ROOT / "README.md", "sh") if "make verify" in block]
    commands = [line.split("#")[0].strip() for line in quick_start.strip().splitlines()]
    assert commands == ["make verify", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^verify:", makefile, re.M)
    assert re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_config_examples_in_the_simulation_doc_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEV_KEY_NEXT", "dev-key-next")
    blocks = _blocks(ROOT / "docs" / "simulation.md", "yaml")
    assert blocks
    for block in blocks:
        parse_config(yaml.safe_load(block), "docs/simulation.md")


def _curl_commands(path: Path) -> list[list[str]]:
    commands = []
    for block in _blocks(path, "sh"):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip().startswith("curl "):
                commands.append(shlex.split(command))
    return commands


def _parse_curl(argv: list[str]) -> tuple[str, str, dict[str, str], str | None]:
    method, headers, body, url = "GET", {}, None, ""
    args = iter(argv[1:])
    for arg in args:
        if arg == "-X":
            method = next(args)
        elif arg == "-H":
            name, _, value = next(args).partition(": ")
            headers[name] = value
        elif arg == "-d":
            body = next(args)
        elif arg.startswith("http"):
            url = arg
        else:
            assert arg == "-s", f"unexpected curl argument {arg}"
    return method, url, headers, body


async def test_every_curl_example_of_the_fault_catalogue_works() -> None:
    commands = _curl_commands(ROOT / "docs" / "faults.md")
    assert len(commands) >= 15
    async with MockHostedAI(clock="manual") as mock, aiohttp.ClientSession() as http:
        for argv in commands:
            method, url, headers, body = _parse_curl(argv)
            url = url.replace("http://127.0.0.1:8000", mock.url)
            async with http.request(method, url, headers=headers, data=body) as resp:
                assert resp.status in (200, 201), f"{' '.join(argv)} -> {resp.status} {await resp.text()}"


def test_every_yaml_example_of_the_fault_catalogue_is_a_valid_config_fragment() -> None:
    blocks = _blocks(ROOT / "docs" / "faults.md", "yaml")
    assert len(blocks) >= 6
    for block in blocks:
        fragment = yaml.safe_load(block)
        assert set(fragment) <= {"faults", "scenarios"}
        create_app(config_with(**{key: value for key, value in fragment.items()}))


async def test_the_connector_guide_examples_run_against_the_mock(monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client import CollectorRegistry

    from harness.connector import ConnectorMetrics, HostedAiConnector, parse_connector_config

    doc = ROOT / "docs" / "connector.md"
    namespace: dict[str, object] = {}
    for block in _blocks(doc, "python"):
        exec(compile(block, str(doc), "exec"), namespace)
    (config_block,) = _blocks(doc, "yaml")
    monkeypatch.setenv("HOSTED_AI_API_KEY", "dev-key")
    assert parse_connector_config(yaml.safe_load(config_block)).base_url == "https://api.hosted.ai"
    async with MockHostedAI(clock="manual") as mock:
        config = parse_connector_config({"hosted_ai": {"base_url": mock.url, "api_key": "${HOSTED_AI_API_KEY}"}})
        async with HostedAiConnector(config, metrics=ConnectorMetrics(CollectorRegistry())) as connector:
            output = await namespace["answer"](connector, "Why?")  # type: ignore[operator]
            assert isinstance(output, str)
            assert output
            async with connector.allocation(namespace["COMPLEX"]) as alloc:  # type: ignore[arg-type]
                streamed = await namespace["stream"](connector, alloc.allocation_id)  # type: ignore[operator]
            assert isinstance(streamed, str)
            assert streamed
        assert mock.sim.pool_stats("gpu-pool-1")[0].allocations_active == 0


@pytest.mark.parametrize("index", range(3))
def test_the_control_plane_guide_examples_run(index: int) -> None:
    blocks = [block for block in _blocks(ROOT / "docs" / "control-plane.md", "python") if "\n" in block.strip()]
    assert len(blocks) == 3
    result = subprocess.run([sys.executable, "-c", blocks[index]], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def _links(markdown: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", markdown)


def test_readme_links_work_off_the_repository() -> None:
    # A package index shows the README without the repository around it: every link is absolute, into
    # the repository pyproject declares, and names a file that exists.
    repository = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    links = _links((ROOT / "README.md").read_text())
    assert len(links) >= 10
    for link in links:
        assert link.startswith(f"{repository}/blob/main/"), link
        assert (ROOT / link.removeprefix(f"{repository}/blob/main/").split("#")[0]).is_file(), link


def test_readme_clears_every_fault_it_shows_how_to_set() -> None:
    readme = (ROOT / "README.md").read_text()
    sets = [m.start() for m in re.finditer(r"-X POST \S+/_admin/(faults|scenarios/)", readme)]
    assert sets
    clears = [m.start() for m in re.finditer(r"-X DELETE \S+/_admin/faults\b|-X POST \S+/_admin/reset", readme)]
    assert all(any(clear > where for clear in clears) for where in sets)
    assert "A fault stays on until it is cleared" in readme


async def test_readme_fault_commands_set_and_clear_against_the_mock() -> None:
    commands = [argv for argv in _curl_commands(ROOT / "README.md") if "/_admin/" in " ".join(argv)]
    assert len(commands) == 4
    async with MockHostedAI(clock="manual") as mock, aiohttp.ClientSession() as http:
        for argv in commands:
            method, url, headers, _ = _parse_curl(argv)
            async with http.request(method, url.replace("http://127.0.0.1:8000", mock.url), headers=headers) as resp:
                assert resp.status in (200, 201, 204), argv
        assert mock.sim.faults.rules == []
