"""The orchestrator keeps to the pools of its key's customer tier, even when its catalogue is stale."""

from __future__ import annotations

from harness.connector import HostedAiConnector, Model, Pool
from harness.orchestrator import Orchestrator, PoolCatalogue
from mock_server import MockHostedAI
from tests.orchestrator.support import CLASSES, SIMPLE_TEXT, assert_nothing_held, journal, make_connector


class EnterpriseView:
    """A catalogue read before the key's tier changed: it still lists gpu-pool-1."""

    def __init__(self, enterprise: HostedAiConnector) -> None:
        self._enterprise = enterprise
        self.fetches = 0

    async def list_pools(self) -> list[Pool]:
        self.fetches += 1
        return await self._enterprise.list_pools()

    async def list_models(self) -> list[Model]:
        return await self._enterprise.list_models()


async def test_a_pool_not_permitted_moves_on_to_the_next_pool_and_rereads_the_catalogue(
    hostedai: MockHostedAI,
) -> None:
    async with (
        make_connector(hostedai) as enterprise,
        make_connector(hostedai, api_key=hostedai.api_key_for("team-b")) as standard,
    ):
        view = EnterpriseView(enterprise)
        orchestrator = Orchestrator(standard, CLASSES, catalogue=PoolCatalogue(view))
        result = await orchestrator.process(SIMPLE_TEXT, tenant="acme")
        assert result.pool_id == "gpu-pool-2"
        refused = await journal(hostedai, operation="allocate", status=403)
        assert [entry["tenant_id"] for entry in refused] == ["team-b"]
        await orchestrator.process(SIMPLE_TEXT, tenant="acme")
        assert view.fetches == 2  # invalidated by the refusal, read again by the next request
    await assert_nothing_held(hostedai)
