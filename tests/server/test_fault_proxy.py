"""`hostedai-mock proxy`: the public API forwarded to an upstream HostedAI (here a second mock on
loopback), with the control plane's faults acting on the forwarded traffic and the journal recording it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from harness.control_plane import ControlPlane
from mock_server import MockHostedAI
from mock_server.api.app import create_app
from mock_server.config import default_config

GEMMA = {"pool_id": "gpu-pool-2", "requirements": {"tflops": 5, "vram_mb": 2048, "model": "gemma-270m"}}
TOKEN = "proxy-admin"


@pytest.fixture
async def upstream() -> AsyncIterator[MockHostedAI]:
    async with MockHostedAI(clock="manual", seed=5) as mock:
        yield mock


@pytest.fixture
async def proxy(upstream: MockHostedAI) -> AsyncIterator[str]:
    config = default_config().with_overrides(server={"admin_token": TOKEN})
    runner = web.AppRunner(create_app(config, upstream=upstream.url), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


@pytest.fixture
async def http(upstream: MockHostedAI) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {upstream.api_key}"}) as session:
        yield session


@pytest.fixture
async def admin(proxy: str) -> AsyncIterator[ControlPlane]:
    async with ControlPlane(proxy, TOKEN) as plane:
        yield plane


async def test_the_proxy_answers_with_the_upstreams_api(
    proxy: str, http: aiohttp.ClientSession, upstream: MockHostedAI, admin: ControlPlane
) -> None:
    async with http.post(f"{proxy}/v1/allocate", json=GEMMA, headers={"X-Request-Id": "req-1"}) as resp:
        assert resp.status == 201
        assert resp.headers["X-Request-Id"] == "req-1"
        allocation = await resp.json()
        assert resp.headers["Location"] == f"/v1/allocate/{allocation['allocation_id']}"
    assert allocation["allocation_id"] in upstream.sim.allocations  # made upstream, not in the proxy
    async with http.get(f"{proxy}/v1/allocate/no-such-thing") as resp:
        assert resp.status == 404
        assert resp.content_type == "application/problem+json"
    journal = await admin.journal()
    assert [(e["operation"], e["status"], e["allocation_id"]) for e in journal] == [
        ("allocate", 201, allocation["allocation_id"]),
        ("status", 404, None),
    ]


async def test_a_fault_set_on_the_control_plane_reaches_the_client_through_the_proxy(
    proxy: str, http: aiohttp.ClientSession, upstream: MockHostedAI, admin: ControlPlane
) -> None:
    rule: Any = {
        "match": {"operation": "allocate"},
        "times": 1,
        "action": {"type": "error", "status": 503, "code": "unavailable", "retry_after": 2},
    }
    await admin.add_fault(rule)
    async with http.post(f"{proxy}/v1/allocate", json=GEMMA) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "2"
        assert (await resp.json())["code"] == "unavailable"
    assert upstream.sim.allocations == {}  # a before-phase fault: nothing was forwarded
    async with http.post(f"{proxy}/v1/allocate", json=GEMMA) as resp:
        assert resp.status == 201  # the rule fired once
    assert [e["status"] for e in await admin.journal(operation="allocate")] == [503, 201]


async def test_an_after_phase_fault_loses_the_answer_of_work_done_upstream(
    proxy: str, http: aiohttp.ClientSession, upstream: MockHostedAI, admin: ControlPlane
) -> None:
    await admin.add_fault(
        {"match": {"operation": "allocate"}, "phase": "after", "times": 1, "action": {"type": "reset"}}
    )
    with pytest.raises(aiohttp.ClientError):
        async with http.post(f"{proxy}/v1/allocate", json=GEMMA) as resp:
            await resp.read()
    held = [a for a in upstream.sim.allocations.values() if a.state == "active"]
    assert len(held) == 1  # the work was done upstream; the client never heard of it
    (entry,) = await admin.journal(operation="allocate")
    assert entry["status"] is None
    assert entry["allocation_id"] == held[0].allocation_id  # the journal names what was lost


async def test_a_stream_passes_through_and_a_truncate_rule_cuts_it(
    proxy: str, http: aiohttp.ClientSession, admin: ControlPlane
) -> None:
    async with http.post(f"{proxy}/v1/allocate", json=GEMMA) as resp:
        allocation_id = (await resp.json())["allocation_id"]
    body = {"allocation_id": allocation_id, "prompt": "Explain overcommit.", "max_tokens": 8, "stream": True}
    async with http.post(f"{proxy}/v1/inference", json=body) as resp:
        whole = (await resp.read()).decode()
    assert resp.content_type == "text/event-stream"
    assert whole.count("event: token") == 8
    assert "event: done" in whole
    await admin.add_fault(
        {"match": {"operation": "inference"}, "times": 1, "action": {"type": "truncate", "after_tokens": 3}}
    )
    chunks: list[bytes] = []

    async def read_all(resp: aiohttp.ClientResponse) -> None:
        async for chunk in resp.content.iter_any():
            chunks.append(chunk)

    async with http.post(f"{proxy}/v1/inference", json=body) as resp:
        with pytest.raises(aiohttp.ClientPayloadError):
            await read_all(resp)
    cut = b"".join(chunks).decode()
    assert cut.count("event: token") == 3
    assert "event: done" not in cut


def test_the_proxy_command_refuses_a_bad_upstream() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mock_server", "proxy", "--upstream", "ftp://example"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "hostedai-mock: error: --upstream must be an http(s) base URL such as https://api.hosted.ai, not 'ftp://example'"
    ]
