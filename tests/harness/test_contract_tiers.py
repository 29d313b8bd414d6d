"""The contract suite's tier probe and its judge, on the real mock and on one that lets any tenant use
any pool: the probes gather evidence over HTTP, the judge is a pure function of it (no schemathesis
run here)."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from harness.connector import ConnectorMetrics, HostedAiConfig, HostedAiConnector
from harness.suites.base import CheckResult
from harness.suites.contract import judges, probes
from harness.suites.shapes import catalogue_shapes
from harness.target import Target
from mock_server import MockHostedAI
from mock_server.config import MockConfig
from mock_server.sim.simulator import Simulator
from tests.conftest import config_with


async def _judged(config: MockConfig | None = None, *, strict: bool = True) -> tuple[CheckResult, MockHostedAI]:
    async with MockHostedAI(config, clock="manual", strict=strict) as mock:
        target = Target(
            url=mock.url, api_key=mock.api_key, admin_token=mock.admin_token, second_api_key=mock.api_key_for("team-b")
        )
        hosted = HostedAiConfig(base_url=mock.url, api_key=mock.api_key, max_retries=0)
        async with (
            aiohttp.ClientSession() as session,
            HostedAiConnector(hosted, session=session, metrics=ConnectorMetrics(CollectorRegistry())) as connector,
        ):
            shape = (await catalogue_shapes(connector))["small"]
            evidence = await probes.gather(
                target, connector, shape, budget=1 << 30, idempotency_key=True, owned=True, session=session
            )
        return judges.tiers(evidence), mock


async def test_the_real_mock_refuses_another_tiers_pool() -> None:
    result, _ = await _judged()
    assert (result.name, result.outcome) == (judges.TIERS, "passed"), result.message


async def test_a_mock_letting_any_tenant_allocate_anywhere_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Simulator, "_pool_for", lambda self, tenant_id, pool_id: self._pool(pool_id))
    result, mock = await _judged(strict=False)
    assert result.outcome == "failed"
    assert "another tier's allocate: expected 403 pool_not_permitted, got POST /v1/allocate → 201" in result.message
    assert result.reproduce[0].startswith("curl ")
    assert '"Authorization: Bearer $SECOND_API_KEY"' in result.reproduce[0]
    assert not [a for a in mock.sim.allocations.values() if a.active]  # released with the second key


async def test_without_a_tier_boundary_the_check_is_skipped() -> None:
    result, _ = await _judged(config_with(pools=lambda pools: [{**p, "tiers": None} for p in pools]))
    assert (result.outcome, result.message) == (
        "skipped",
        "both tenants' keys list the same pools: no tier boundary to cross",
    )
