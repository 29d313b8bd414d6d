"""The orchestrator end to end against the real mock over HTTP: classify → allocate → inference →
release → account; fail-over between pools; and cleanup whenever a step fails."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from harness.connector import (
    AllocationNotActive,
    CapacityExhausted,
    ConnectorMetrics,
    HostedAiConnector,
    HostedAiError,
    QuotaExceeded,
    RequestTimeout,
    ServerError,
    TransportError,
    parse_connector_config,
)
from harness.orchestrator import Classification, Orchestrator
from mock_server import MockHostedAI
from tests.conftest import slow_config
from tests.orchestrator.support import (
    CLASSES,
    COMPLEX_TEXT,
    NO_CAPACITY,
    SIMPLE_TEXT,
    FakeClock,
    SleepRecorder,
    add_fault,
    assert_nothing_held,
    journal,
)


async def test_a_simple_request_end_to_end(hostedai: MockHostedAI, orchestrator: Orchestrator) -> None:
    result = await orchestrator.process(SIMPLE_TEXT, tenant="acme")

    assert not result.fallback
    assert result.reason is None
    assert result.classification.label == "simple"
    assert result.output.strip()
    assert (result.model, result.pool_id, result.tenant) == ("gemma-270m", "gpu-pool-1", "acme")
    assert result.usage is not None
    assert result.timings is not None
    assert result.usage.prompt_tokens > 0
    assert 0 < result.usage.completion_tokens <= 256  # the class's max_tokens
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens
    assert result.timings.total_ms >= result.timings.ttft_ms > 0
    # What HostedAI saw: the class's requirements, a lease, labels for attribution, and a release.
    allocation = hostedai.sim.allocations[result.allocation_id or ""]
    assert (allocation.model, allocation.tflops, allocation.vram_mb) == ("gemma-270m", 5, 2048)
    assert allocation.labels["harpoon_tenant"] == "acme"
    assert allocation.labels["harpoon_class"] == "simple"
    assert allocation.ttl_seconds == 300
    released = await journal(hostedai, operation="release", allocation_id=result.allocation_id or "")
    assert [entry["status"] for entry in released] == [204]
    await assert_nothing_held(hostedai)


async def test_a_complex_request_runs_on_the_large_model(hostedai: MockHostedAI, orchestrator: Orchestrator) -> None:
    result = await orchestrator.process(COMPLEX_TEXT)
    assert result.classification.label == "complex"
    assert result.model == "qwen-30b"
    allocation = hostedai.sim.allocations[result.allocation_id or ""]
    assert (allocation.tflops, allocation.vram_mb) == (30, 20480)
    assert result.tenant == "default"
    await assert_nothing_held(hostedai)


async def test_cost_is_accounted_per_tenant(hostedai: MockHostedAI, connector: HostedAiConnector) -> None:
    # Each read of this clock moves it 0.25 s, so every allocation is held for a non-zero time.
    orchestrator = Orchestrator(connector, CLASSES, clock=FakeClock(step=0.25))
    first = await orchestrator.process(SIMPLE_TEXT, tenant="acme")
    second = await orchestrator.process(COMPLEX_TEXT, tenant="acme")
    other = await orchestrator.process(SIMPLE_TEXT, tenant="globex")

    for result, tflops, vram_mb in ((first, 5, 2048), (second, 30, 20480), (other, 5, 2048)):
        cost = result.cost
        assert cost.held_seconds > 0
        assert cost.tflops_seconds == tflops * cost.held_seconds
        assert cost.vram_mb_seconds == vram_mb * cost.held_seconds
        assert cost.cost == pytest.approx(cost.tflops_seconds / 3600 * 0.003)  # gpu-pool-1's price

    acme = orchestrator.costs("acme")
    assert acme.allocations == 2
    assert acme.tflops_seconds == pytest.approx(first.cost.tflops_seconds + second.cost.tflops_seconds)
    assert acme.vram_mb_seconds == pytest.approx(first.cost.vram_mb_seconds + second.cost.vram_mb_seconds)
    assert acme.cost == pytest.approx(first.cost.cost + second.cost.cost)
    assert first.usage is not None
    assert second.usage is not None
    assert acme.prompt_tokens == first.usage.prompt_tokens + second.usage.prompt_tokens
    assert acme.completion_tokens == first.usage.completion_tokens + second.usage.completion_tokens
    assert orchestrator.costs("globex").cost == pytest.approx(other.cost.cost)
    assert orchestrator.costs().allocations == 0  # the default tenant had no request
    await assert_nothing_held(hostedai)


async def test_a_custom_classifier_picks_the_class(hostedai: MockHostedAI, connector: HostedAiConnector) -> None:
    class AlwaysComplex:
        def classify(self, text: str) -> Classification:
            return Classification(label="complex", score=1.0, reasons=["policy"])

    result = await Orchestrator(connector, CLASSES, AlwaysComplex()).process(SIMPLE_TEXT)
    assert (result.model, result.classification.reasons) == ("qwen-30b", ["policy"])


async def test_fails_over_to_the_next_pool_when_the_first_has_no_capacity(
    hostedai: MockHostedAI, orchestrator: Orchestrator, sleeps: SleepRecorder
) -> None:
    await add_fault(hostedai, NO_CAPACITY, operation="allocate", pool_id="gpu-pool-1")

    result = await orchestrator.process(SIMPLE_TEXT, tenant="acme")

    assert not result.fallback
    assert result.pool_id == "gpu-pool-2"
    assert hostedai.sim.allocations[result.allocation_id or ""].pool_id == "gpu-pool-2"
    assert result.cost.cost == pytest.approx(result.cost.tflops_seconds / 3600 * 0.002)  # gpu-pool-2's price
    allocates = await journal(hostedai, operation="allocate")
    # Another pool is left, so no waiting out gpu-pool-1's Retry-After: straight to the fail-over.
    assert [(e["path"], e["status"]) for e in allocates] == [("/v1/allocate", 503), ("/v1/allocate", 201)]
    assert sleeps.delays == []
    await assert_nothing_held(hostedai)


async def test_no_capacity_anywhere_is_raised_typed(
    hostedai: MockHostedAI, orchestrator: Orchestrator, sleeps: SleepRecorder
) -> None:
    await add_fault(hostedai, NO_CAPACITY, operation="allocate")
    with pytest.raises(CapacityExhausted):
        await orchestrator.process(SIMPLE_TEXT)
    pools = [e["path"] for e in await journal(hostedai, operation="allocate")]
    assert len(pools) == 5  # one try on gpu-pool-1, then the last pool with its 3 retries
    assert len(sleeps.delays) == 3
    assert orchestrator.costs().allocations == 0
    await assert_nothing_held(hostedai)


@pytest.mark.parametrize(
    ("action", "error"),
    [
        ({"type": "error", "status": 500, "code": "internal_error"}, ServerError),
        ({"type": "error", "status": 409, "code": "allocation_not_active"}, AllocationNotActive),
    ],
    ids=["500", "409"],
)
async def test_a_failed_inference_still_releases_its_allocation(
    hostedai: MockHostedAI, orchestrator: Orchestrator, action: dict[str, object], error: type[HostedAiError]
) -> None:
    await add_fault(hostedai, action, operation="inference")

    with pytest.raises(error):
        await orchestrator.process(SIMPLE_TEXT, tenant="acme")

    await assert_nothing_held(hostedai)
    # The GPU was held until the release, so the tenant is charged for it, with no tokens.
    acme = orchestrator.costs("acme")
    assert (acme.allocations, acme.prompt_tokens, acme.completion_tokens) == (1, 0, 0)


async def test_the_inference_answer_lost_after_the_work_still_releases(
    hostedai: MockHostedAI, orchestrator: Orchestrator
) -> None:
    # `phase: after`: HostedAI ran the inference, then the connection broke on every attempt.
    await add_fault(hostedai, {"type": "reset"}, operation="inference", phase="after")
    with pytest.raises(TransportError):
        await orchestrator.process(SIMPLE_TEXT)
    assert len(await journal(hostedai, operation="inference")) == 4  # a connection error is retried
    await assert_nothing_held(hostedai)


async def test_a_refused_allocate_propagates_typed_and_holds_nothing(
    hostedai: MockHostedAI, orchestrator: Orchestrator
) -> None:
    await add_fault(hostedai, {"type": "quota", "detail": "over budget"}, operation="allocate")
    with pytest.raises(QuotaExceeded):
        await orchestrator.process(SIMPLE_TEXT)
    assert [e["status"] for e in await journal(hostedai, operation="allocate")] == [403]  # never retried
    await assert_nothing_held(hostedai)


async def test_a_request_past_its_budget_ends_typed_and_releases() -> None:
    async with MockHostedAI(slow_config(), clock="real") as mock:
        config = parse_connector_config({"hosted_ai": {"base_url": mock.url, "api_key": mock.api_key}})
        async with HostedAiConnector(config, metrics=ConnectorMetrics(CollectorRegistry())) as connector:
            orchestrator = Orchestrator(connector, CLASSES, request_budget_s=0.3)
            with pytest.raises(RequestTimeout, match=r"0\.3 s budget"):
                await orchestrator.process(SIMPLE_TEXT)
        assert sum(p.allocations_active for p in mock.sim.pool_stats()) == 0
