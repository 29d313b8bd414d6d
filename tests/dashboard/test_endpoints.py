"""The dashboard over HTTP, against an embedded (strict) mock: the page and its files, the snapshot
behind the admin token, and the stream that pushes it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from harness.control_plane import ControlPlane
from mock_server import MockHostedAI
from mock_server.api.contract import Contract
from mock_server.api.dashboard import MAX_SHARE, next_push_in
from mock_server.resources import ADMIN_CONTRACT, DASHBOARD_STATIC
from tests.conftest import ALLOCATE_GEMMA, ALLOCATE_QWEN, config_with


@pytest.fixture
async def admin(mock: MockHostedAI) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=mock.url, headers={"X-Admin-Token": mock.admin_token or ""}) as http:
        yield http


async def _json(response: Any, status: int = 200) -> Any:
    async with response as resp:
        assert resp.status == status, await resp.text()
        return await resp.json(content_type=None)


async def _events(resp: aiohttp.ClientResponse, count: int) -> list[tuple[str, Any]]:
    """The first `count` server-sent events of a stream: (event name, parsed data)."""
    found: list[tuple[str, Any]] = []
    name, data = "message", b""
    async for line in resp.content:
        line = line.rstrip(b"\n")
        if line.startswith(b"event: "):
            name = line[7:].decode()
        elif line.startswith(b"data: "):
            data += line[6:]
        elif not line:
            found.append((name, orjson.loads(data)))
            name, data = "message", b""
            if len(found) == count:
                break
    return found


async def test_the_page_loads_without_a_token_and_only_from_its_own_origin(anonymous: aiohttp.ClientSession) -> None:
    async with anonymous.get("/_admin/ui") as resp:
        assert (resp.status, resp.content_type) == (200, "text/html")
        page = await resp.text()
        policy = resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    files = sorted(link for link in links if not link.startswith("#"))
    assert files == ["/_admin/ui/dashboard.css", "/_admin/ui/dashboard.js", "/_admin/ui/favicon.svg"]
    for path, media_type in zip(files, ("text/css", "text/javascript", "image/svg+xml"), strict=True):
        async with anonymous.get(path) as resp:
            assert (resp.status, resp.content_type) == (200, media_type), path
    assert "<script>" not in page
    assert "style=" not in page  # the policy forbids inline style attributes


def test_the_page_names_no_other_origin() -> None:
    # No CDN, no font service, nothing fetched from elsewhere: the page works offline.
    for path in DASHBOARD_STATIC.iterdir():
        text = path.read_text("utf-8")
        origins = set(re.findall(r"https?://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}
        assert origins == set(), path.name


@pytest.mark.parametrize("name", ["missing.js", "index.html", "..%2F..%2Fconfig.py", "dashboard.JS"])
async def test_only_the_pages_own_files_are_served(anonymous: aiohttp.ClientSession, name: str) -> None:
    async with anonymous.get(f"/_admin/ui/{name}") as resp:
        assert resp.status in (404, 422)
        assert resp.content_type == "application/problem+json"


async def test_the_snapshot_needs_the_admin_token(anonymous: aiohttp.ClientSession) -> None:
    for path in ("/_admin/dashboard", "/_admin/dashboard/stream"):
        async with anonymous.get(path) as resp:
            assert resp.status == 401
        async with anonymous.get(path, headers={"X-Admin-Token": "wrong"}) as resp:
            assert resp.status == 401


async def test_without_a_control_plane_there_is_no_dashboard() -> None:
    config = config_with(server=lambda server: {**server, "admin_token": None})
    async with MockHostedAI(config, clock="manual") as mock, aiohttp.ClientSession(base_url=mock.url) as http:
        for path in ("/_admin/ui", "/_admin/ui/dashboard.js", "/_admin/dashboard"):
            async with http.get(path) as resp:
                assert resp.status == 404, path


async def test_the_snapshot_agrees_with_the_state(
    mock: MockHostedAI, admin: aiohttp.ClientSession, client: aiohttp.ClientSession, team_b: aiohttp.ClientSession
) -> None:
    mine = await _json(client.post("/v1/allocate", json={**ALLOCATE_QWEN, "ttl_seconds": 120}), 201)
    theirs = await _json(team_b.post("/v1/allocate", json=ALLOCATE_GEMMA), 201)
    await _json(admin.post("/_admin/scenarios/brownout"), 201)
    await _json(admin.post("/_admin/clock/advance", json={"seconds": 30}))
    async with ControlPlane(mock.url, mock.admin_token or "") as control:
        state = await control.state()
        leaks = await control.leaks()
    doc = await _json(admin.get("/_admin/dashboard"))
    assert doc["clock"] == state["clock"]
    assert doc["rules"] == state["rules"]
    for row, pool in zip(doc["pools"], state["pools"], strict=True):
        for key in ("pool_id", "tflops_allocated", "tflops_total", "vram_mb_allocated", "vram_mb_total"):
            assert row[key] == pool[key]
    fields = ("tenant_id", "model", "state", "gpu_id")
    shown = {r["allocation_id"]: [r[f] for f in fields] for r in doc["allocations"]["rows"]}
    assert shown == {a["allocation_id"]: [a[f] for f in fields] for a in state["allocations"]}
    assert set(shown) == {mine["allocation_id"], theirs["allocation_id"]}
    assert [r["allocation_id"] for r in doc["leaks"]["rows"]] == [leak["allocation_id"] for leak in leaks]
    (lease,) = [r["lease_left_s"] for r in doc["allocations"]["rows"] if r["allocation_id"] == mine["allocation_id"]]
    assert lease == 90


async def test_the_journal_tail_is_filtered_and_newest_first(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession, team_b: aiohttp.ClientSession
) -> None:
    await _json(client.post("/v1/allocate", json=ALLOCATE_GEMMA), 201)
    for _ in range(3):
        await _json(client.get("/v1/pools"))
    await _json(team_b.get("/v1/pools"))
    doc = await _json(admin.get("/_admin/dashboard", params={"journal_operation": "pools", "journal_limit": "3"}))
    entries = doc["journal"]["entries"]
    assert [(e["operation"], e["tenant_id"]) for e in entries] == [
        ("pools", "team-b"),
        ("pools", "dev"),
        ("pools", "dev"),
    ]
    assert entries[0]["seq"] > entries[1]["seq"] > entries[2]["seq"]
    assert doc["journal"]["total"] == 5
    doc = await _json(admin.get("/_admin/dashboard", params={"journal_tenant_id": "dev", "journal_status": "201"}))
    assert [e["operation"] for e in doc["journal"]["entries"]] == ["allocate"]


async def test_answered_inferences_feed_the_latency_window_and_reset_clears_it(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    alloc = await _json(client.post("/v1/allocate", json=ALLOCATE_GEMMA), 201)
    for stream in (False, True, False):
        body = {"allocation_id": alloc["allocation_id"], "prompt": "Say hi.", "max_tokens": 8, "stream": stream}
        async with client.post("/v1/inference", json=body) as resp:
            assert resp.status == 200
            await resp.read()
    latency = (await _json(admin.get("/_admin/dashboard")))["latency"]
    assert latency["observed"] == 3
    assert sum(latency["ttft_histogram"]) == 3
    assert latency["ttft_p50_ms"] is not None
    await _json(admin.post("/_admin/reset"))
    assert (await _json(admin.get("/_admin/dashboard")))["latency"]["observed"] == 0


@pytest.mark.parametrize(
    ("params", "status"),
    [({"pool_id": "nope"}, 404), ({"gpu_limit": "0"}, 422), ({"gpu_sort": "random"}, 422), ({"interval_s": "0"}, 422)],
)
async def test_a_bad_view_is_refused_before_the_stream_starts(
    admin: aiohttp.ClientSession, params: dict[str, str], status: int
) -> None:
    async with admin.get("/_admin/dashboard/stream", params=params) as resp:
        assert resp.status == status
        assert resp.content_type == "application/problem+json"


async def test_the_stream_pushes_snapshots_that_follow_the_contract(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    schema = Contract.load(ADMIN_CONTRACT).schema("Dashboard")
    async with admin.get("/_admin/dashboard/stream", params={"interval_s": "0.25", "pool_id": "gpu-pool-2"}) as resp:
        assert (resp.status, resp.content_type) == (200, "text/event-stream")
        assert resp.headers["Cache-Control"] == "no-cache"
        [(name, first)] = await _events(resp, 1)
        await _json(client.post("/v1/allocate", json=ALLOCATE_GEMMA), 201)
        [(_, second)] = await _events(resp, 1)
    assert name == "snapshot"
    for doc in (first, second):
        assert schema.violations(doc, "") == []
        assert {row["pool_id"] for row in doc["gpus"]["rows"]} == {"gpu-pool-2"}
    assert (first["totals"]["allocations_active"], second["totals"]["allocations_active"]) == (0, 1)


async def test_stopping_the_mock_ends_its_streams() -> None:
    mock = MockHostedAI(clock="manual")
    await mock.start()
    async with (
        aiohttp.ClientSession(headers={"X-Admin-Token": mock.admin_token or ""}) as http,
        http.get(f"{mock.url}/_admin/dashboard/stream", params={"interval_s": "60"}) as resp,
    ):
        await _events(resp, 1)
        # Without the shutdown hook the server would wait for the stream (aiohttp's 60 s).
        await asyncio.wait_for(mock.stop(), 10)
        assert await asyncio.wait_for(resp.content.read(), 10) == b""


@pytest.mark.parametrize(("built_in", "expected"), [(0.0, 1.0), (0.01, 1.0), (0.05, 1.0), (0.2, 4.0)])
def test_pushes_slow_down_when_snapshots_are_slow_to_build(built_in: float, expected: float) -> None:
    assert next_push_in(1.0, built_in) == pytest.approx(expected)
    assert built_in / next_push_in(1.0, built_in) <= MAX_SHARE + 1e-12
