"""Pool segregation through Harpoon: its HostedAI key's customer tier decides which pools it may use.

With the default mock config, team-b's key is the `standard` tier: gpu-pool-2 only, although Harpoon's
configured pool is gpu-pool-1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mock_server import MockHostedAI
from tests.conftest import config_with
from tests.orchestrator.support import COMPLEX_TEXT, assert_nothing_held, journal
from tests.service.conftest import ServiceClient, StartService
from tests.service.test_process import PROCESS_RESULT, expect_problem, process_body


async def test_a_standard_tier_key_is_served_on_its_tiers_pool_without_trying_another(
    hostedai: MockHostedAI, start_service: StartService
) -> None:
    service: ServiceClient = await start_service(api_key=hostedai.api_key_for("team-b"))
    resp = await service.post("/v2/process", json=process_body(COMPLEX_TEXT))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    PROCESS_RESULT.validate(body)
    assert (body["model"], body["pool_id"]) == ("qwen-30b", "gpu-pool-2")
    allocates = await journal(hostedai, operation="allocate")
    assert [entry["status"] for entry in allocates] == [201]  # never refused: gpu-pool-1 was not tried
    await assert_nothing_held(hostedai)


class TestNoPoolOfTheTierServesTheModel:
    @pytest.fixture
    async def hostedai(self) -> AsyncIterator[MockHostedAI]:
        # qwen-30b only on gpu-pool-1, which serves the enterprise tier alone.
        config = config_with(
            models=lambda models: {**models, "qwen-30b": {**models["qwen-30b"], "pools": ["gpu-pool-1"]}}
        )
        async with MockHostedAI(config, clock="manual", seed=1) as mock:
            yield mock

    async def test_harpoon_answers_502_naming_hostedais_pool_not_permitted(
        self, hostedai: MockHostedAI, start_service: StartService
    ) -> None:
        service = await start_service(api_key=hostedai.api_key_for("team-b"))
        resp = await service.post("/v2/process", json=process_body(COMPLEX_TEXT))
        problem = await expect_problem(resp, 502, "upstream_error")
        assert problem["upstream_code"] == "pool_not_permitted"
        assert "HostedAI 403 pool_not_permitted: Pool gpu-pool-1 serves the tiers enterprise" in problem["detail"]
        await assert_nothing_held(hostedai)
