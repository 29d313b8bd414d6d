"""`hostedai-mock proxy`: the public API forwarded to an upstream HostedAI (here a second mock on
loopback), with the control plane's faults acting on the forwarded traffic and the journal recording it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from harness.cli import main as harness_main
from harness.control_plane import ControlPlane
from harness.drift.commands import record
from harness.drift.probe import ProbePlan
from harness.target import Target
from mock_server import MockHostedAI
from mock_server.api.app import create_app
from mock_server.cli import main as mock_main
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


async def test_the_proxy_records_the_upstreams_answers_as_a_trace_calibrate_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "proxy.jsonl"
    async with MockHostedAI(clock="real", time_scale=0.01, seed=3) as upstream:
        config = default_config().with_overrides(server={"admin_token": TOKEN})
        runner = web.AppRunner(create_app(config, upstream=upstream.url, record=path), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        # The harness's probe through the proxy: what the client saw, to hold the proxy's record against.
        plan = ProbePlan(cycles=4, inferences=2, pools=("gpu-pool-2",))
        client = await record(Target(url=url, api_key=upstream.api_key, label=url), plan, seed=1)
        await runner.cleanup()
    text = path.read_text()
    assert upstream.api_key not in text
    header, *lines = [json.loads(line) for line in text.splitlines()]
    assert header["probe"] is None
    assert header["target"] == urlsplit(upstream.url).netloc

    def seen(records: list[dict[str, Any]]) -> list[tuple[str, int | None, str | None]]:
        return sorted((r["operation"], r["status"], r["error_code"]) for r in records)

    # Every forwarded request once, as the upstream answered it: the probe's, and preflight's GET /v1/pools
    # (sent before the probe's recorder starts).
    assert seen(lines) == sorted([*seen(client.records), ("listPools", 200, None)])
    inferences = [r for r in lines if r["operation"] == "createInference" and r["status"] == 200]
    assert {r["gpu_type"] for r in inferences} == {"L4-24GB"}
    assert all("ttft_ms" in r["timings"]["reported"] for r in inferences)
    streamed = [r for r in inferences if r["headers"]["content_type"] == "text/event-stream"]
    assert streamed
    assert all(r["timings"]["itl_ms"] for r in streamed)
    # calibrate reads it; drift cannot replay it, and says so in one line.
    assert mock_main(["calibrate", str(path), "-o", str(tmp_path / "p.yaml"), "--min-samples", "6"]) == 0
    capsys.readouterr()
    assert await asyncio.to_thread(harness_main, ["drift", "--trace", str(path)]) == 2  # its own event loop
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "recorded by the fault proxy" in err


@pytest.mark.parametrize("module", ["shape.py", "trace_lines.py"])
def test_the_two_packages_shape_bodies_and_read_and_write_trace_lines_with_one_code(module: str) -> None:
    # The packages share no code (ARCHITECTURE.md): the trace's shape function and its line format
    # (validation, writing, reading) are twins, kept identical.
    root = Path(__file__).resolve().parents[2]
    assert (root / "mock_server/calibrate" / module).read_bytes() == (root / "harness/drift" / module).read_bytes()


def test_the_proxy_command_refuses_a_record_file_it_cannot_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["proxy", "--upstream", "http://127.0.0.1:1", "--record", str(tmp_path / "no" / "such" / "t.jsonl")]
    assert mock_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--record" in err
    assert "no such directory" in err
