"""The service on aiohttp's test server (127.0.0.1), over a connector on the embedded mock that never
sleeps, and validators compiled from contracts/harpoon.v2.yaml to check its answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import jsonschema_rs
import pytest
import yaml
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from harness.connector import HostedAiConnector
from harness.service import HarpoonConfig, create_service_app, parse_service_config
from mock_server import MockHostedAI
from tests.orchestrator.support import ROOT, FakeClock, SleepRecorder, make_connector

CONTRACT = ROOT / "contracts" / "harpoon.v2.yaml"
SPEC: dict[str, Any] = yaml.safe_load(CONTRACT.read_text("utf-8"))

ServiceClient = TestClient[Any, Any]
StartService = Callable[..., Awaitable[ServiceClient]]


def contract_validator(schema: str) -> Any:
    """A named schema of the Harpoon contract, compiled independently of the service's own code."""
    return jsonschema_rs.Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": SPEC["components"]}
    )


def harpoon_config(base_url: str) -> HarpoonConfig:
    """configs/harpoon.yaml, pointed at `base_url` (the API key comes from HOSTED_AI_API_KEY)."""
    data = yaml.safe_load((ROOT / "configs" / "harpoon.yaml").read_text("utf-8"))
    data["hosted_ai"]["base_url"] = base_url
    return parse_service_config(data, "harpoon.yaml", base_dir=ROOT / "configs")


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTED_AI_API_KEY", "dev-key")


@pytest.fixture
async def hostedai() -> AsyncIterator[MockHostedAI]:
    async with MockHostedAI(clock="manual", seed=1) as mock:
        yield mock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def start_service(
    aiohttp_client: Callable[..., Awaitable[ServiceClient]], hostedai: MockHostedAI, clock: FakeClock
) -> AsyncIterator[StartService]:
    """Starts the service on a connector to the mock; options go to the connector's `hosted_ai`."""
    connectors: list[HostedAiConnector] = []

    async def start(**hosted_ai: Any) -> ServiceClient:
        registry = CollectorRegistry()
        connector = make_connector(hostedai, sleep=SleepRecorder(), clock=clock, registry=registry, **hosted_ai)
        connectors.append(connector)
        app = create_service_app(harpoon_config(connector.config.base_url), connector=connector, registry=registry)
        return await aiohttp_client(app)

    yield start
    for connector in connectors:
        await connector.close()


@pytest.fixture
async def service(start_service: StartService) -> ServiceClient:
    return await start_service()
