"""The contract suite passes on the real mock and flags deliberately broken servers.

Each broken server is the real mock with one behaviour broken in-process (strict mode off, so the
bug reaches the wire), run through the suite exactly as `hostedai-harness contract` runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.suites.base import RunOptions, SuiteResult
from harness.suites.contract import ContractSuite
from harness.target import Target
from mock_server import MockHostedAI
from mock_server.api import inputs, problems, render
from mock_server.config import MockConfig
from tests.conftest import config_with

OPTIONS = RunOptions(seed=3, examples=5)


def _target(mock: MockHostedAI) -> Target:
    return Target(
        url=mock.url, api_key=mock.api_key, admin_token=mock.admin_token, second_api_key=mock.api_key_for("team-b")
    )


async def _run(config: MockConfig | None = None, **suite: Any) -> SuiteResult:
    async with MockHostedAI(config, clock="manual", strict=False) as mock:
        return await ContractSuite(**suite).run(_target(mock), OPTIONS)


def _failed(result: SuiteResult) -> dict[str, str]:
    return {c.name: c.message for c in result.checks if c.outcome == "failed"}


async def test_the_real_mock_passes_every_check() -> None:
    async with MockHostedAI(clock="manual") as mock:  # strict: a mock bug would be a 500 here
        result = await ContractSuite().run(_target(mock), OPTIONS)
    assert result.ok, _failed(result)
    names = {c.name for c in result.checks}
    assert "contract: POST /v1/allocate" in names
    assert len(names) >= 13


async def test_a_response_field_of_the_wrong_type_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    real = render.pool
    monkeypatch.setattr(render, "pool", lambda stats: {**real(stats), "gpus": str(stats.gpus)})
    failed = _failed(await _run())
    assert any("GET /v1/pools" in name for name in failed), failed
    message = next(m for n, m in failed.items() if "GET /v1/pools" in n)
    assert "Response violates schema" in message
    assert "is not of type" in message


async def test_a_500_on_a_malformed_body_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    real = inputs._body

    async def crashing(request: Any, operation: Any, max_bytes: int) -> Any:
        body, problems_found = await real(request, operation, max_bytes)
        if problems_found:
            raise RuntimeError("validation crashed")  # the bug: an exception instead of a 422
        return body, problems_found

    monkeypatch.setattr(inputs, "_body", crashing)
    result = await _run()
    failed = _failed(result)
    assert any("POST /v1/allocate" in name for name in failed), failed
    assert any("Server error" in message for message in failed.values())
    reproductions = [line for c in result.checks if c.outcome == "failed" for line in c.reproduce]
    assert reproductions
    assert all(line.startswith("curl ") for line in reproductions)
    # Real values (schemathesis's own sanitizer would print max_tokens as [Filtered]), the key masked,
    # and the target's URL, not the proxy's.
    assert not any("[Filtered]" in line or "dev-key" in line for line in reproductions)
    assert any('"Authorization: Bearer $HOSTED_AI_API_KEY"' in line for line in reproductions)


async def test_a_429_without_retry_after_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    def without_header(code: str, detail: str, retry_after: int) -> problems.ApiError:
        return problems.ApiError(code, detail, extra={"retry_after": retry_after})

    monkeypatch.setattr(problems, "retry_later", without_header)
    limited = config_with(tenants=lambda t: {**t, "dev": {**t["dev"], "rate_limit": {"rps": 1, "burst": 30}}})
    failed = _failed(await _run(limited))
    assert failed
    assert any("Retry-After" in message for message in failed.values()), failed


async def test_live_mode_allocates_within_its_budget_and_releases_everything() -> None:
    async with MockHostedAI(clock="manual") as mock:
        live = Target(url=mock.url, api_key=mock.api_key, label=mock.url)  # no control plane: treated as live
        result = await ContractSuite().run(live, RunOptions(seed=3, examples=5, max_allocations=8))
        made = list(mock.sim.allocations.values())
        still_active = [a for a in made if a.active]
    assert result.ok, _failed(result)
    assert 1 <= len(made) <= 8
    assert still_active == []
    names = {c.name for c in result.checks}
    assert "contract: POST /v1/allocate" in names
    assert "contract: POST /v1/inference" in names


def test_schemathesis_reads_the_links_body_templates_as_request_bodies(tmp_path: Path) -> None:
    from harness.resources import HOSTEDAI_CONTRACT
    from harness.suites.contract.schemathesis_run import LINK_BODY, with_link_bodies

    original = yaml.safe_load(HOSTEDAI_CONTRACT.read_text())
    given = yaml.safe_load(with_link_bodies(HOSTEDAI_CONTRACT, tmp_path).read_text())
    links = given["paths"]["/v1/allocate"]["post"]["responses"]["201"]["links"]
    template = original["paths"]["/v1/allocate"]["post"]["responses"]["201"]["links"]["RunInference"][LINK_BODY]
    assert links["RunInference"]["requestBody"] == template
    assert template["allocation_id"] == "$response.body#/allocation_id"
    assert LINK_BODY not in links["RunInference"]
    # Nothing else changes.
    del links["RunInference"]["requestBody"]
    del original["paths"]["/v1/allocate"]["post"]["responses"]["201"]["links"]["RunInference"][LINK_BODY]
    assert given == original
