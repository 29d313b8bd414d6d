"""An embedded mock (strict, manual clock, seeded), a connector on it that never sleeps, and an
orchestrator over both."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from harness.connector import HostedAiConnector
from harness.orchestrator import Orchestrator
from mock_server import MockHostedAI
from tests.orchestrator.support import CLASSES, FakeClock, SleepRecorder, make_connector


@pytest.fixture
async def hostedai() -> AsyncIterator[MockHostedAI]:
    async with MockHostedAI(clock="manual", seed=1) as mock:
        yield mock


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def connector(
    hostedai: MockHostedAI, sleeps: SleepRecorder, clock: FakeClock
) -> AsyncIterator[HostedAiConnector]:
    async with make_connector(hostedai, sleep=sleeps, clock=clock) as made:
        yield made


@pytest.fixture
def orchestrator(connector: HostedAiConnector, clock: FakeClock) -> Orchestrator:
    return Orchestrator(connector, CLASSES, clock=clock)
