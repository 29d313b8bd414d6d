"""Request batching through harpoon-service: simple requests arriving together share one allocation,
and each answer says so (`batch`, valid against contracts/harpoon.v2.yaml)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from harness.orchestrator import BatchPolicy
from harness.service import create_service_app
from mock_server import MockHostedAI
from tests.orchestrator.support import SIMPLE_TEXT, SleepRecorder, assert_nothing_held, journal, make_connector
from tests.service.conftest import ServiceClient, harpoon_config
from tests.service.test_process import PROCESS_RESULT, process_body


@pytest.fixture
async def batching_service(
    hostedai: MockHostedAI, aiohttp_client: Callable[..., Awaitable[ServiceClient]]
) -> AsyncIterator[ServiceClient]:
    connector = make_connector(hostedai, sleep=SleepRecorder())
    # Closes on size, never on its wait: two requests make a batch whatever the machine's speed.
    config = harpoon_config(connector.config.base_url).model_copy(
        update={"batching": BatchPolicy(enabled=True, max_size=2, max_wait_ms=10_000)}
    )
    client = await aiohttp_client(create_service_app(config, connector=connector))
    yield client
    await connector.close()


async def test_two_simple_requests_share_one_allocation(
    hostedai: MockHostedAI, batching_service: ServiceClient
) -> None:
    answers = await asyncio.gather(
        *(
            batching_service.post("/v2/process", json=process_body(SIMPLE_TEXT), headers={"X-Tenant-Id": tenant})
            for tenant in ("acme", "globex")
        )
    )
    bodies = [await answer.json() for answer in answers]
    for body in bodies:
        PROCESS_RESULT.validate(body)
        assert body["batch"]["size"] == 2
    assert bodies[0]["allocation_id"] == bodies[1]["allocation_id"]
    assert [b["tenant"] for b in bodies] == ["acme", "globex"]
    assert len(await journal(hostedai, operation="allocate")) == 1
    await assert_nothing_held(hostedai)
