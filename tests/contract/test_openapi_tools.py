"""Every contract is accepted by the OpenAPI tools teams use: Redocly (recommended rules) and Spectral
(`spectral:oas`) find no error, openapi-generator validates each without `--skip-validate-spec`, and
what the mock serves is exactly the file (no YAML slip turns a description into a junk key)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mock_server import MockHostedAI
from mock_server.resources import ADMIN_CONTRACT, HOSTEDAI_CONTRACT
from tests.contract.openapi_tools import CONTRACTS, ROOT, environment, java_present, npm_tool, python_tool


def test_there_are_three_contracts() -> None:
    assert [path.name for path in CONTRACTS] == ["admin.v1.yaml", "harpoon.v2.yaml", "hostedai.v1.yaml"]


def test_redocly_recommended_rules_find_no_error() -> None:
    result = subprocess.run(
        [npm_tool("redocly"), "lint", "--format", "json", *map(str, CONTRACTS)],
        cwd=ROOT,  # redocly.yaml: the recommended rules
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    reports = _json_documents(result.stdout)  # one per contract
    assert len(reports) == len(CONTRACTS)
    errors = [
        f"{problem['location'][0]['source']['ref']}: {problem['ruleId']}: {problem['message']}"
        for report in reports
        for problem in report["problems"]
        if problem["severity"] == "error"
    ]
    assert errors == []
    assert result.returncode == 0, result.stderr


def _json_documents(text: str) -> list[Any]:
    decoder, documents, at = json.JSONDecoder(), [], text.index("{")
    while at < len(text):
        document, at = decoder.raw_decode(text, at)
        documents.append(document)
        while at < len(text) and text[at].isspace():
            at += 1
    return documents


def test_spectral_oas_ruleset_finds_no_error() -> None:
    result = subprocess.run(
        [npm_tool("spectral"), "lint", "--format", "json", "--fail-severity", "error", *map(str, CONTRACTS)],
        cwd=ROOT,  # .spectral.yaml: spectral:oas
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    problems = json.loads(result.stdout[result.stdout.index("[") :])
    errors = [f"{p['source']}: {p['code']}: {'.'.join(map(str, p['path']))}" for p in problems if p["severity"] == 0]
    assert errors == []
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not java_present(), reason="openapi-generator is a Java program and java is not on PATH")
def test_openapi_generator_accepts_the_links_without_skipping_validation() -> None:
    # The public contract is the one with links (a JVM start-up costs seconds, so only it is checked).
    result = subprocess.run(
        [python_tool("openapi-generator-cli"), "validate", "-i", str(HOSTEDAI_CONTRACT)],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No validation issues detected" in result.stdout or "[error]" not in result.stdout, result.stdout


def _keys(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [str(key) for key in node] + [k for value in node.values() for k in _keys(value)]
    if isinstance(node, list):
        return [k for value in node for k in _keys(value)]
    return []


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda path: path.name)
def test_no_description_is_cut_into_a_key(contract: Path) -> None:
    # An unquoted comma in a flow mapping (`{description: a, b}`) turns the rest of a sentence into a key.
    phrases = [key for key in _keys(yaml.safe_load(contract.read_text("utf-8"))) if " " in key]
    assert phrases == []


async def test_the_mock_serves_both_contracts_exactly_as_written() -> None:
    import aiohttp

    async with MockHostedAI(clock="manual") as mock, aiohttp.ClientSession() as http:
        for prefix, contract in (("", HOSTEDAI_CONTRACT), ("/_admin", ADMIN_CONTRACT)):
            text = contract.read_text("utf-8")
            # No key needed: Swagger UI, Prism and generators fetch these anonymously.
            async with http.get(f"{mock.url}{prefix}/openapi.json") as resp:
                assert (resp.status, resp.content_type) == (200, "application/json")
                assert await resp.json() == yaml.safe_load(text)
            async with http.get(f"{mock.url}{prefix}/openapi.yaml") as resp:
                assert (resp.status, resp.content_type) == (200, "application/yaml")
                assert await resp.text() == text
