"""What the orchestrator and service tests share: a connector on the embedded mock that never waits,
a clock the test moves, and the mock's control plane (faults, journal, leak report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from harness.connector import ConnectorMetrics, HostedAiConnector, parse_connector_config
from harness.control_plane import ControlPlane, JournalEntry, Leak
from harness.orchestrator import ModelClasses, load_model_classes
from mock_server import MockHostedAI

ROOT = Path(__file__).resolve().parents[2]
CLASSES: ModelClasses = load_model_classes(ROOT / "configs" / "models.yaml")

SIMPLE_TEXT = "What is the capital of France?"
COMPLEX_TEXT = "Explain why overcommit raises latency, and compare spatial with temporal GPU sharing."

UNAVAILABLE = {"type": "error", "status": 503, "code": "unavailable", "retry_after": 0}
NO_CAPACITY = {"type": "error", "status": 503, "code": "capacity_exhausted", "retry_after": 0}


class SleepRecorder:
    """The connector's `sleep`: records each backoff and returns at once, so no test waits on it."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class FakeClock:
    """A monotonic clock the test moves by hand; `step` also moves it on every read."""

    def __init__(self, start: float = 1000.0, step: float = 0.0) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> float:
        now = self.now
        self.now += self.step
        return now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_connector(
    mock: MockHostedAI,
    *,
    sleep: SleepRecorder | None = None,
    clock: FakeClock | None = None,
    registry: CollectorRegistry | None = None,
    **hosted_ai: Any,
) -> HostedAiConnector:
    config = parse_connector_config({"hosted_ai": {"base_url": mock.url, "api_key": mock.api_key, **hosted_ai}})
    options: dict[str, Any] = {"clock": clock} if clock is not None else {}
    return HostedAiConnector(
        config,
        metrics=ConnectorMetrics(registry if registry is not None else CollectorRegistry()),
        sleep=sleep or SleepRecorder(),
        **options,
    )


def _admin(mock: MockHostedAI) -> ControlPlane:
    return ControlPlane(mock.url, mock.admin_token or "")


async def add_fault(mock: MockHostedAI, action: dict[str, Any], *, phase: str = "before", **match: str) -> str:
    """A fault rule on the mock (docs/faults.md); its id."""
    async with _admin(mock) as admin:
        return (await admin.add_fault({"match": match, "action": action, "phase": phase}))["id"]


async def clear_faults(mock: MockHostedAI) -> None:
    async with _admin(mock) as admin:
        await admin.clear_faults()


async def journal(mock: MockHostedAI, **params: str | int) -> list[JournalEntry]:
    """The requests the mock received (`since_seq`, `operation`, … filter them)."""
    async with _admin(mock) as admin:
        return await admin.journal(**params)


async def leaks(mock: MockHostedAI) -> list[Leak]:
    async with _admin(mock) as admin:
        return await admin.leaks()


def active_allocations(mock: MockHostedAI) -> int:
    return sum(pool.allocations_active for pool in mock.sim.pool_stats())


async def assert_nothing_held(mock: MockHostedAI) -> None:
    """Every allocation was released: the pools hold none, and the leak report is empty."""
    assert active_allocations(mock) == 0
    assert await leaks(mock) == []
