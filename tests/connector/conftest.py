"""Fixtures for the connector tests: the real mock over HTTP, a connector that records its backoff
instead of sleeping, and the control-plane client for faults and the journal."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from harness.connector import ConnectorMetrics, HostedAiConnector, parse_connector_config
from harness.control_plane import ControlPlane
from mock_server import MockHostedAI


class SleepRecorder:
    """Stands in for asyncio.sleep: remembers each backoff, waits for nothing."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
async def mock() -> AsyncIterator[MockHostedAI]:
    async with MockHostedAI(clock="manual", seed=3) as running:
        yield running


@pytest.fixture
async def admin(mock: MockHostedAI) -> AsyncIterator[ControlPlane]:
    async with ControlPlane(mock.url, mock.admin_token or "") as control_plane:
        yield control_plane


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


ConnectorFactory = Callable[..., HostedAiConnector]


@pytest.fixture
async def make_connector(mock: MockHostedAI, sleeps: SleepRecorder) -> AsyncIterator[ConnectorFactory]:
    """`make_connector(jitter=0, failure_threshold=5, **hosted_ai_keys)`: closed after the test."""
    made: list[HostedAiConnector] = []

    def factory(*, clock: Callable[[], float] | None = None, **section: Any) -> HostedAiConnector:
        retry = section.pop("retry", {"jitter": 0})
        breaker = section.pop("circuit_breaker", {})
        config = parse_connector_config(
            {
                "hosted_ai": {
                    "base_url": mock.url,
                    "api_key": mock.api_key,
                    "retry": retry,
                    "circuit_breaker": breaker,
                    **section,
                }
            }
        )
        extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
        connector = HostedAiConnector(
            config, metrics=ConnectorMetrics(CollectorRegistry()), sleep=sleeps, rng=random.Random(1), **extra
        )
        made.append(connector)
        return connector

    yield factory
    for connector in made:
        await connector.close()
