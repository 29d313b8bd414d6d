"""The circuit breaker seen through the orchestrator: a marked fallback while HostedAI is failing,
nothing left allocated, and recovery once the breaker's recovery timeout has passed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from harness.connector import CircuitState, HostedAiConnector
from harness.orchestrator import Orchestrator, ProcessResult
from mock_server import MockHostedAI
from tests.orchestrator.support import (
    CLASSES,
    SIMPLE_TEXT,
    UNAVAILABLE,
    FakeClock,
    SleepRecorder,
    active_allocations,
    add_fault,
    assert_nothing_held,
    clear_faults,
    journal,
    make_connector,
)

RECOVERY_S = 60


@pytest.fixture
async def fragile(hostedai: MockHostedAI, clock: FakeClock) -> AsyncIterator[HostedAiConnector]:
    """A connector whose circuit opens after two consecutive failures."""
    async with make_connector(
        hostedai,
        sleep=SleepRecorder(),
        clock=clock,
        circuit_breaker={"failure_threshold": 2, "recovery_timeout": RECOVERY_S},
    ) as made:
        yield made


def assert_fallback(result: ProcessResult, retry_phrase: str) -> None:
    assert result.fallback
    assert result.reason is not None
    assert result.reason.startswith("circuit_open:")
    assert retry_phrase in result.reason
    assert "not processed" in result.output
    assert retry_phrase in result.output
    assert (result.allocation_id, result.pool_id, result.usage, result.timings) == (None, None, None, None)
    assert result.cost.cost == 0
    assert result.model == "gemma-270m"
    assert result.classification.label == "simple"


async def test_fallback_while_open_then_recovery(
    hostedai: MockHostedAI, fragile: HostedAiConnector, clock: FakeClock
) -> None:
    orchestrator = Orchestrator(fragile, CLASSES, clock=clock)
    await orchestrator.process(SIMPLE_TEXT)  # healthy: the pool catalogue is now cached
    await add_fault(hostedai, UNAVAILABLE)  # every operation answers 503

    # The allocate fails twice, the circuit opens, and the connector's next retry is refused.
    opened = await orchestrator.process(SIMPLE_TEXT, tenant="acme")
    assert_fallback(opened, f"in {RECOVERY_S:.1f} s")
    assert fragile.circuit_state is CircuitState.OPEN
    await assert_nothing_held(hostedai)

    # While open, HostedAI is not even asked.
    mark = (await journal(hostedai))[-1]["seq"]
    clock.advance(RECOVERY_S - 1)
    still_open = await orchestrator.process(SIMPLE_TEXT, tenant="acme")
    assert_fallback(still_open, "in 1.0 s")  # the breaker says exactly when it will probe
    # Only clean-up (a label lookup for the allocate the circuit cut short) may reach HostedAI.
    assert [e for e in await journal(hostedai, since_seq=mark) if e["operation"] not in ("list", "release")] == []
    assert orchestrator.costs("acme").allocations == 0

    # Past the recovery timeout, with HostedAI healthy again, one probe closes the circuit.
    clock.advance(1)
    assert fragile.circuit_state is CircuitState.HALF_OPEN
    await clear_faults(hostedai)
    recovered = await orchestrator.process(SIMPLE_TEXT, tenant="acme")
    assert not recovered.fallback
    assert recovered.usage is not None
    assert fragile.circuit_state is CircuitState.CLOSED
    await assert_nothing_held(hostedai)


async def test_a_failed_probe_opens_the_circuit_again(
    hostedai: MockHostedAI, fragile: HostedAiConnector, clock: FakeClock
) -> None:
    orchestrator = Orchestrator(fragile, CLASSES, clock=clock)
    await add_fault(hostedai, UNAVAILABLE)
    assert (await orchestrator.process(SIMPLE_TEXT)).fallback  # the catalogue fetch opens it
    clock.advance(RECOVERY_S)
    probe = await orchestrator.process(SIMPLE_TEXT)
    assert_fallback(probe, f"in {RECOVERY_S:.1f} s")
    assert fragile.circuit_state is CircuitState.OPEN
    await assert_nothing_held(hostedai)


async def test_circuit_opening_mid_inference_leaves_only_a_leased_allocation(
    hostedai: MockHostedAI, fragile: HostedAiConnector, clock: FakeClock
) -> None:
    orchestrator = Orchestrator(fragile, CLASSES, clock=clock, lease_ttl_s=30)
    await add_fault(hostedai, UNAVAILABLE, operation="inference")

    result = await orchestrator.process(SIMPLE_TEXT, tenant="acme")

    assert result.fallback
    assert result.allocation_id is None
    # The allocation was held, so it is billed, even though the answer is a fallback.
    assert orchestrator.costs("acme").allocations == 1
    # The open circuit also refuses the release (see the connector report), so HostedAI may still
    # hold the allocation; its lease is the backstop: idle for 30 s, HostedAI reclaims it.
    assert active_allocations(hostedai) <= 1
    hostedai.advance(31)
    assert active_allocations(hostedai) == 0
