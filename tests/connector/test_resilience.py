"""The connector against the real mock over HTTP: retries, Retry-After, idempotent allocate, clean-up,
circuit breaking, key rotation. Faults come from the mock's control plane; backoff is recorded, not slept."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from harness.connector import (
    CapacityExhausted,
    CircuitOpen,
    CircuitState,
    ConnectorMetrics,
    GatewayTimeout,
    HostedAiConnector,
    InferenceRequest,
    NotFound,
    RateLimited,
    RequestTimeout,
    Requirements,
    ServerError,
    StreamDone,
    StreamToken,
    TransportError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
    parse_connector_config,
)
from harness.connector.errors import NotImplementedByServer, QuotaExceeded
from harness.control_plane import ControlPlane
from mock_server import MockHostedAI
from mock_server.sim.simulator import AllocationSpec
from tests.conftest import config_with, slow_config
from tests.connector.conftest import ConnectorFactory, SleepRecorder

QWEN = Requirements(model="qwen-30b", tflops=30, vram_mb=20480)


def _error(status: int, code: str, operation: str = "pools", **more: Any) -> dict[str, Any]:
    return {"match": {"operation": operation}, "action": {"type": "error", "status": status, "code": code, **more}}


def _active(mock: MockHostedAI) -> int:
    return sum(p.allocations_active for p in mock.sim.pool_stats())


async def test_the_allocation_context_manager_releases_on_success(
    make_connector: ConnectorFactory, mock: MockHostedAI
) -> None:
    connector = make_connector()
    async with connector.allocation(QWEN) as alloc:
        assert _active(mock) == 1
        answer = await connector.inference(alloc.allocation_id, InferenceRequest(prompt="hi", max_tokens=8))
        assert answer.allocation_id == alloc.allocation_id
    assert _active(mock) == 0


@pytest.mark.parametrize(
    ("status", "code", "delays"),
    [
        (500, "internal_error", [0.1, 0.2]),
        (502, "bad_gateway", [0.1, 0.2]),
        (503, "unavailable", [1.0, 1.0]),  # the mock's 503 carries Retry-After: 1, which wins over backoff
        (504, "gateway_timeout", [0.1, 0.2]),
    ],
)
async def test_5xx_is_retried_with_exponential_backoff(
    make_connector: ConnectorFactory,
    admin: ControlPlane,
    sleeps: SleepRecorder,
    status: int,
    code: str,
    delays: list[float],
) -> None:
    await admin.add_fault({**_error(status, code), "times": 2})
    pools = await make_connector().list_pools()
    assert len(pools) == 2
    assert sleeps.delays == delays
    assert [e["status"] for e in await admin.journal(operation="pools")] == [status, status, 200]


async def test_retries_stop_at_max_retries_with_the_typed_error(
    make_connector: ConnectorFactory, admin: ControlPlane, sleeps: SleepRecorder
) -> None:
    await admin.add_fault(_error(503, "unavailable"))
    with pytest.raises(Unavailable) as raised:
        await make_connector().list_pools()
    assert raised.value.status == 503
    assert raised.value.code == "unavailable"
    assert raised.value.request_id is not None
    assert len(await admin.journal(operation="pools")) == 4  # one try and max_retries (3) retries
    assert sleeps.delays == [1.0, 1.0, 1.0]  # the server's Retry-After (1 s) replaces the backoff


async def test_backoff_doubles_up_to_its_cap_with_jitter(
    make_connector: ConnectorFactory, admin: ControlPlane, sleeps: SleepRecorder
) -> None:
    await admin.add_fault(_error(500, "internal_error"))
    with pytest.raises(ServerError):
        await make_connector(
            max_retries=5, retry={"jitter": 0.2}, circuit_breaker={"failure_threshold": 10}
        ).list_pools()
    expected = [0.1, 0.2, 0.4, 0.8, 0.8]
    assert len(sleeps.delays) == 5
    for got, base in zip(sleeps.delays, expected, strict=True):
        assert base * 0.8 <= got <= base * 1.2


async def test_retry_after_is_honoured_and_capped(
    make_connector: ConnectorFactory, admin: ControlPlane, sleeps: SleepRecorder
) -> None:
    await admin.add_fault({**_error(429, "rate_limited", retry_after=7), "times": 1})
    await admin.add_fault({**_error(503, "unavailable", retry_after=600), "times": 1})
    await make_connector().list_pools()
    assert sleeps.delays == [7.0, 30.0]


async def test_a_rate_limit_surfaces_typed_with_its_retry_after(
    make_connector: ConnectorFactory, admin: ControlPlane, sleeps: SleepRecorder
) -> None:
    await admin.add_fault({"action": {"type": "rate_limit", "rps": 1, "burst": 1}})
    connector = make_connector(max_retries=0)
    await connector.list_pools()
    with pytest.raises(RateLimited) as raised:
        await connector.list_pools()
    assert raised.value.retry_after == 1


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (400, "invalid_request", None),
        (403, "quota_exceeded", QuotaExceeded),
        (404, "not_found", NotFound),
        (422, "validation_failed", ValidationFailed),
        (501, "not_implemented", NotImplementedByServer),
    ],
)
async def test_client_errors_and_501_are_never_retried(
    make_connector: ConnectorFactory,
    admin: ControlPlane,
    sleeps: SleepRecorder,
    status: int,
    code: str,
    error: type | None,
) -> None:
    await admin.add_fault(_error(status, code))
    with pytest.raises(error or Exception) as raised:
        await make_connector().list_pools()
    assert getattr(raised.value, "status", None) == status
    assert sleeps.delays == []
    assert len(await admin.journal(operation="pools")) == 1


async def test_connection_errors_and_timeouts_are_retried(
    make_connector: ConnectorFactory, admin: ControlPlane, sleeps: SleepRecorder
) -> None:
    rules = [
        await admin.add_fault({"match": {"operation": "models"}, "times": 1, "action": {"type": action, **more}})
        for action, more in (("hang", {"max_s": 1}), ("malformed", {}), ("empty", {}))
    ]
    models = await make_connector(timeout_secs=0.2).list_models()
    assert {m.model for m in models} == {"gemma-270m", "qwen-30b"}
    fired = {r["id"]: r["fired"] for r in await admin.faults()}
    assert all(fired[rule["id"]] == 1 for rule in rules)
    # aiohttp itself re-sends a GET once when a reused connection closes before answering, so the
    # `empty` may cost no retry of ours: two or three backoffs, never more.
    assert sleeps.delays[:2] == [0.1, 0.2]
    assert len(sleeps.delays) in (2, 3)


async def test_a_lost_allocate_answer_never_leaves_a_second_allocation(
    make_connector: ConnectorFactory, admin: ControlPlane, mock: MockHostedAI
) -> None:
    await admin.add_fault(
        {"match": {"operation": "allocate"}, "phase": "after", "times": 1, "action": {"type": "reset"}}
    )
    alloc = await make_connector().request_allocation(QWEN)
    tries = await admin.journal(operation="allocate")
    assert len(tries) == 2
    assert tries[0]["idempotency_key"] == tries[1]["idempotency_key"] is not None
    assert tries[1]["allocation_id"] == alloc.allocation_id
    assert _active(mock) == 1


def _connector(mock: MockHostedAI, sleeps: SleepRecorder, **section: Any) -> HostedAiConnector:
    """A connector for a test that runs a mock of its own."""
    config = parse_connector_config({"hosted_ai": {"base_url": mock.url, "api_key": mock.api_key, **section}})
    return HostedAiConnector(config, metrics=ConnectorMetrics(CollectorRegistry()), sleep=sleeps)


async def test_without_server_idempotency_the_twin_of_a_lost_answer_is_released(sleeps: SleepRecorder) -> None:
    config = config_with(simulation=lambda s: {**s, "idempotency": False})
    async with (
        MockHostedAI(config, clock="manual") as mock,
        ControlPlane(mock.url, mock.admin_token or "") as admin,
    ):
        await admin.add_fault(
            {"match": {"operation": "allocate"}, "phase": "after", "times": 1, "action": {"type": "reset"}}
        )
        async with _connector(mock, sleeps) as connector:
            alloc = await connector.request_allocation(QWEN)
        assert len(await admin.journal(operation="allocate")) == 2  # the server made two allocations
        states = {a.allocation_id: a.state.value for a in mock.sim.allocations.values()}
        assert states.pop(alloc.allocation_id) == "active"
        assert list(states.values()) == ["released"]  # the twin, found by its label and released


async def test_release_of_an_ended_allocation_is_done(make_connector: ConnectorFactory, mock: MockHostedAI) -> None:
    connector = make_connector()
    alloc = await connector.request_allocation(QWEN)
    await connector.release_allocation(alloc.allocation_id)
    await connector.release_allocation(alloc.allocation_id)
    assert (await connector.get_allocation(alloc.allocation_id)).state == "released"


async def test_cleanup_on_every_failure_path(
    make_connector: ConnectorFactory, admin: ControlPlane, mock: MockHostedAI
) -> None:
    connector = make_connector(max_retries=0)
    await admin.add_fault(_error(500, "internal_error", operation="inference"))
    with pytest.raises(ServerError):
        async with connector.allocation(QWEN) as alloc:
            await connector.inference(alloc.allocation_id, InferenceRequest(prompt="x"))
    assert _active(mock) == 0

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with connector.allocation(QWEN):
            raise Boom
    assert _active(mock) == 0
    await admin.clear_faults()
    await admin.add_fault({"match": {"operation": "inference"}, "action": {"type": "gpu_fail"}})
    with pytest.raises(Exception, match="allocation_not_active"):
        async with connector.allocation(QWEN) as alloc:
            await connector.inference(alloc.allocation_id, InferenceRequest(prompt="x"))
    assert _active(mock) == 0
    assert await admin.leaks() == []


def _slow_config() -> Any:
    return slow_config()


async def test_cancellation_mid_inference_releases_the_allocation(sleeps: SleepRecorder) -> None:
    async with MockHostedAI(_slow_config(), clock="real") as mock:
        connector = _connector(mock, sleeps)

        async def job() -> None:
            async with connector.allocation(QWEN) as alloc:
                await connector.inference(alloc.allocation_id, InferenceRequest(prompt="x", max_tokens=5))

        task = asyncio.create_task(job())
        for _ in range(10_000):
            if any(a.inflight for a in mock.sim.allocations.values()):
                break
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await connector.close()  # waits for the shielded release
        assert _active(mock) == 0
        released = list(mock.sim.allocations.values())
        assert [a.state.value for a in released] == ["released"]


async def test_an_inference_timeout_is_typed_and_the_allocation_released(sleeps: SleepRecorder) -> None:
    async with MockHostedAI(_slow_config(), clock="real") as mock:
        async with _connector(mock, sleeps, inference_timeout_secs=0.2) as c:
            with pytest.raises(RequestTimeout):
                async with c.allocation(QWEN) as alloc:
                    await c.inference(alloc.allocation_id, InferenceRequest(prompt="x", max_tokens=5))
        assert _active(mock) == 0


async def test_the_circuit_opens_fails_fast_and_recovers(make_connector: ConnectorFactory, admin: ControlPlane) -> None:
    now = [0.0]
    connector = make_connector(
        clock=lambda: now[0], max_retries=0, circuit_breaker={"failure_threshold": 3, "recovery_timeout": 60}
    )
    await admin.add_fault(_error(503, "unavailable"))
    for _ in range(3):
        with pytest.raises(Unavailable):
            await connector.list_pools()
    assert connector.circuit_state is CircuitState.OPEN
    with pytest.raises(CircuitOpen) as raised:
        await connector.list_pools()
    assert raised.value.retry_in_s == 60
    assert len(await admin.journal(operation="pools")) == 3  # the refused call never reached the server

    now[0] = 61.0
    assert connector.circuit_state is CircuitState.HALF_OPEN
    with pytest.raises(Unavailable):
        await connector.list_pools()  # the probe fails: open again
    assert connector.circuit_state is CircuitState.OPEN

    await admin.clear_faults()
    now[0] = 122.0
    assert len(await connector.list_pools()) == 2  # the probe succeeds: closed
    assert connector.circuit_state is CircuitState.CLOSED


async def test_client_errors_do_not_open_the_circuit(make_connector: ConnectorFactory) -> None:
    connector = make_connector(circuit_breaker={"failure_threshold": 2})
    for _ in range(5):
        with pytest.raises(NotFound):
            await connector.get_allocation("alloc_0000000000000000")
    assert connector.circuit_state is CircuitState.CLOSED


async def test_capacity_exhausted_is_retried_but_does_not_open_the_circuit(
    make_connector: ConnectorFactory, admin: ControlPlane
) -> None:
    await admin.add_fault(_error(503, "capacity_exhausted", operation="allocate", retry_after=0))
    connector = make_connector(circuit_breaker={"failure_threshold": 2})
    with pytest.raises(CapacityExhausted):
        await connector.request_allocation(QWEN)
    assert len(await admin.journal(operation="allocate")) == 4
    assert connector.circuit_state is CircuitState.CLOSED


async def test_a_rotated_key_is_reread_on_401_and_retried_once(
    monkeypatch: pytest.MonkeyPatch, sleeps: SleepRecorder
) -> None:
    config = config_with(tenants=lambda t: {**t, "dev": {**t["dev"], "api_keys": ["key-2"]}})
    async with MockHostedAI(config, clock="manual") as mock:
        monkeypatch.setenv("HOSTED_AI_API_KEY", "key-1")
        settings = parse_connector_config({"hosted_ai": {"base_url": mock.url, "api_key": "${HOSTED_AI_API_KEY}"}})
        async with HostedAiConnector(settings, metrics=ConnectorMetrics(CollectorRegistry()), sleep=sleeps) as c:
            with pytest.raises(Unauthorized):
                await c.list_pools()  # the source still holds the old key: one 401, no retry storm
            assert len(mock.state.journal.query(operation="pools")[0]) == 1
            monkeypatch.setenv("HOSTED_AI_API_KEY", "key-2")  # rotated at the source
            assert len(await c.list_pools()) == 2
        assert [e["status"] for e in mock.state.journal.query(operation="pools")[0]] == [401, 401, 200]


async def test_the_api_key_never_appears_in_logs_or_errors(
    make_connector: ConnectorFactory, admin: ControlPlane, caplog: pytest.LogCaptureFixture, mock: MockHostedAI
) -> None:
    caplog.set_level(logging.DEBUG)
    await admin.add_fault(_error(503, "unavailable"))
    connector = make_connector()
    errors: list[BaseException] = []
    try:
        await connector.list_pools()
    except Unavailable as exc:
        errors.append(exc)
    async with connector.allocation(QWEN):
        pass
    text = "\n".join(r.getMessage() for r in caplog.records) + "".join(f"{e!s}{e!r}" for e in errors)
    assert caplog.records
    assert mock.api_key not in text


async def test_streaming_yields_tokens_then_usage(make_connector: ConnectorFactory, admin: ControlPlane) -> None:
    connector = make_connector()
    async with connector.allocation(QWEN) as alloc:
        request = InferenceRequest(prompt="stream please", max_tokens=12, seed=4)
        plain = await connector.inference(alloc.allocation_id, request)
        events = [e async for e in connector.stream_inference(alloc.allocation_id, request)]
        tokens = [e for e in events if isinstance(e, StreamToken)]
        done = events[-1]
        assert isinstance(done, StreamDone)
        assert "".join(t.text for t in tokens) == plain.output
        assert done.usage == plain.usage

        await admin.add_fault({"match": {"operation": "inference"}, "action": {"type": "truncate", "after_tokens": 2}})
        with pytest.raises(TransportError):
            async for _ in connector.stream_inference(alloc.allocation_id, request):
                pass


async def test_metrics_use_the_guides_names_and_labels(make_connector: ConnectorFactory, admin: ControlPlane) -> None:
    connector = make_connector(max_retries=1)
    async with connector.allocation(QWEN) as alloc:
        await connector.inference(alloc.allocation_id, InferenceRequest(prompt="hi", max_tokens=4))
    await admin.add_fault(_error(504, "gateway_timeout", operation="models"))
    with pytest.raises(GatewayTimeout):
        await connector.list_models()
    text = generate_latest(connector.metrics.registry).decode()
    assert 'hosted_ai_allocations_total{model="qwen-30b",pool="gpu-pool-1"} 1.0' in text
    assert 'hosted_ai_allocation_duration_seconds_count{pool="gpu-pool-1"} 1.0' in text
    assert 'hosted_ai_inference_duration_seconds_count{model="qwen-30b"} 1.0' in text
    assert 'hosted_ai_errors_total{operation="models",type="gateway_timeout"} 1.0' in text
    assert 'hosted_ai_retries_total{operation="models",type="gateway_timeout"} 1.0' in text
    assert "hosted_ai_circuit_state{" in text


async def test_an_open_circuit_still_lets_releases_through(
    make_connector: ConnectorFactory, admin: ControlPlane, mock: MockHostedAI
) -> None:
    connector = make_connector(max_retries=0, circuit_breaker={"failure_threshold": 1})
    await admin.add_fault(_error(503, "unavailable", operation="inference"))
    with pytest.raises(Unavailable):
        async with connector.allocation(QWEN) as alloc:
            await connector.inference(alloc.allocation_id, InferenceRequest(prompt="x"))
    assert connector.circuit_state is CircuitState.OPEN
    assert _active(mock) == 0  # the release went out although the circuit is open
    with pytest.raises(CircuitOpen):
        await connector.list_pools()


async def test_capacity_exhausted_can_be_left_to_the_caller(
    make_connector: ConnectorFactory, admin: ControlPlane, sleeps: SleepRecorder
) -> None:
    await admin.add_fault(_error(503, "capacity_exhausted", operation="allocate", retry_after=5))
    with pytest.raises(CapacityExhausted):
        await make_connector().request_allocation(QWEN, retry_capacity_exhausted=False)
    assert sleeps.delays == []
    assert len(await admin.journal(operation="allocate")) == 1


async def test_usage_follows_every_page_of_records(make_connector: ConnectorFactory, mock: MockHostedAI) -> None:
    spec = AllocationSpec("gpu-pool-2", "gemma-270m", 0.01, 2048)
    made = []
    for _ in range(1205):  # more than one page of the server's default 1,000 records
        alloc = mock.sim.allocate("dev", spec, request_id="r").allocation
        mock.sim.release("dev", alloc.allocation_id)
        made.append(alloc.allocation_id)
    report = await make_connector().usage()
    assert [r.allocation_id for r in report.records] == made
    assert report.totals.allocations == 1205


async def _background_done(connector: HostedAiConnector) -> None:
    """Until the connector's background clean-ups (release retries) have finished."""
    async with asyncio.timeout(5):
        while connector._background:
            await asyncio.wait(set(connector._background))


def _sample(connector: HostedAiConnector, name: str) -> float:
    value = connector.metrics.registry.get_sample_value(name)
    return 0.0 if value is None else value


async def test_a_failed_release_is_retried_in_the_background_at_once(
    make_connector: ConnectorFactory, admin: ControlPlane, mock: MockHostedAI, sleeps: SleepRecorder
) -> None:
    connector = make_connector()
    # The release call's own 4 attempts fail; the first background retry goes through.
    await admin.add_fault({**_error(500, "internal_error", "release"), "times": 4})
    async with connector.allocation(QWEN):
        pass
    assert _sample(connector, "hosted_ai_releases_pending") == 1
    await _background_done(connector)
    assert _active(mock) == 0  # released without waiting for close()
    assert _sample(connector, "hosted_ai_releases_pending") == 0
    assert _sample(connector, "hosted_ai_releases_abandoned_total") == 0
    assert sleeps.delays == [0.1, 0.2, 0.4, 0.1]  # the call's backoff, then the background retry's


async def test_a_release_that_keeps_failing_is_abandoned_after_bounded_retries_and_close_tries_again(
    make_connector: ConnectorFactory, admin: ControlPlane, mock: MockHostedAI
) -> None:
    connector = make_connector()
    await admin.add_fault({**_error(500, "internal_error", "release"), "times": 16})  # 1 + 3 calls of 4 attempts
    async with connector.allocation(QWEN):
        pass
    await _background_done(connector)
    assert _sample(connector, "hosted_ai_releases_abandoned_total") == 1
    assert (_active(mock), _sample(connector, "hosted_ai_releases_pending")) == (1, 1)
    await connector.close()  # the fault is spent: the last try succeeds
    assert (_active(mock), _sample(connector, "hosted_ai_releases_pending")) == (0, 0)
