"""GET /health (circuit and reachability) and GET /metrics (the guide's names and the service's own)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import generate_latest

from harness.service import create_service_app
from harness.service.cli import render_protocol_problem
from harness.service.keys import CONNECTOR, REGISTRY
from harness.service.serving import ConnectionLimits, serve
from mock_server import MockHostedAI
from tests.orchestrator.support import SIMPLE_TEXT, UNAVAILABLE, add_fault
from tests.service.conftest import ServiceClient, StartService, contract_validator, harpoon_config

HEALTH = contract_validator("Health")


async def health(service: ServiceClient) -> dict[str, Any]:
    resp = await service.get("/health")
    assert resp.status == 200  # always: a degraded service still answers
    assert resp.headers["X-Request-Id"]
    body: dict[str, Any] = await resp.json()
    HEALTH.validate(body)
    return body


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_healthy(service: ServiceClient) -> None:
    assert await health(service) == {"status": "ok", "circuit": "closed", "hostedai_reachable": True}


async def test_degraded_when_the_circuit_is_open(hostedai: MockHostedAI, start_service: StartService) -> None:
    service = await start_service(circuit_breaker={"failure_threshold": 2, "recovery_timeout": 60})
    await add_fault(hostedai, UNAVAILABLE)
    resp = await service.post("/v2/process", json={"text": SIMPLE_TEXT, "deployment": "HostedAI"})
    assert (await resp.json())["fallback"] is True
    # HostedAI's own health check still answers: only its API fails.
    assert await health(service) == {"status": "degraded", "circuit": "open", "hostedai_reachable": True}


async def test_degraded_when_hostedai_is_unreachable(start_service: StartService, closed_port: int) -> None:
    service = await start_service(base_url=f"http://127.0.0.1:{closed_port}")
    assert await health(service) == {"status": "degraded", "circuit": "closed", "hostedai_reachable": False}


async def test_metrics_carry_the_guides_names_and_the_services(hostedai: MockHostedAI, service: ServiceClient) -> None:
    assert (await service.post("/v2/process", json={"text": SIMPLE_TEXT, "deployment": "HostedAI"})).status == 200
    await add_fault(hostedai, {"type": "error", "status": 500, "code": "internal_error"}, operation="inference")
    assert (await service.post("/v2/process", json={"text": SIMPLE_TEXT, "deployment": "HostedAI"})).status == 502
    assert (await service.post("/v2/process", json={"deployment": "HostedAI"})).status == 422

    resp = await service.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    for sample in (
        'hosted_ai_allocations_total{model="gemma-270m",pool="gpu-pool-1"} 2.0',
        'hosted_ai_allocation_duration_seconds_count{pool="gpu-pool-1"} 2.0',
        'hosted_ai_inference_duration_seconds_count{model="gemma-270m"} 1.0',
        'hosted_ai_errors_total{operation="inference",type="server_error"} 1.0',
        'hosted_ai_retries_total{operation="inference",type="server_error"} 3.0',
        'harpoon_requests_total{status="200"} 1.0',
        'harpoon_requests_total{status="502"} 1.0',
        'harpoon_requests_total{status="422"} 1.0',
        "harpoon_request_duration_seconds_count 3.0",
        "harpoon_fallbacks_total 0.0",
    ):
        assert sample in text, sample
    assert "hosted_ai_circuit_state" in text
    # Health checks and scrapes are not counted as requests.
    await service.get("/health")
    assert "harpoon_request_duration_seconds_count 3.0" in await (await service.get("/metrics")).text()


async def test_the_app_builds_and_closes_its_own_connector(
    aiohttp_client: Callable[..., Awaitable[ServiceClient]], hostedai: MockHostedAI
) -> None:
    # No connector passed in: the app creates one on start-up from the config (the API key from the
    # environment), shares it, and closes it on shutdown.
    app = create_service_app(harpoon_config(hostedai.url))
    service = await aiohttp_client(app)
    resp = await service.post("/v2/process", json={"text": SIMPLE_TEXT, "deployment": "HostedAI"})
    assert resp.status == 200, await resp.text()
    assert (
        'hosted_ai_allocations_total{model="gemma-270m",pool="gpu-pool-1"} 1.0'
        in await (await service.get("/metrics")).text()
    )
    session = app[CONNECTOR].session
    await service.close()
    assert session.closed


async def test_a_client_that_hangs_up_mid_body_is_counted_as_499_not_500(
    hostedai: MockHostedAI, caplog: pytest.LogCaptureFixture
) -> None:
    # Served as harpoon-service serves it (aiohttp's test server would cancel the handler instead).
    caplog.set_level(logging.INFO)
    app = create_service_app(harpoon_config(hostedai.url))
    stop, url = asyncio.Event(), asyncio.get_running_loop().create_future()
    serving = asyncio.create_task(
        serve(
            app,
            host="127.0.0.1",
            port=0,
            limits=ConnectionLimits(),
            render_problem=render_protocol_problem,
            started=url.set_result,
            stop=stop.wait,
        )
    )
    host, port = (await url).removeprefix("http://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /v2/process HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
    writer.write(b"Content-Length: 100\r\n\r\n{")
    await writer.drain()
    await asyncio.sleep(0.1)  # the handler is reading the body now
    writer.close()
    for _ in range(100):  # the service notices the hang-up on its next turn of the loop
        if "went away" in caplog.text:
            break
        await asyncio.sleep(0.05)
    metrics = generate_latest(app[REGISTRY]).decode()
    stop.set()
    await serving
    assert 'harpoon_requests_total{status="499"} 1.0' in metrics
    assert 'status="500"' not in metrics
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
