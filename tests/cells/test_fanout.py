"""The fan-out over two embedded cells: one control plane, every call on every cell, errors as problems."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from harness.control_plane import ControlPlane
from mock_server import MockHostedAI
from mock_server.cells.app import create_fanout_app
from mock_server.cells.topology import Cell
from tests.conftest import ALLOCATE_GEMMA, config_with
from tests.helpers import allocate, expect_problem

TOKEN = {"X-Admin-Token": "dev-admin"}
QUOTA_ON_POOLS = {"match": {"operation": "pools"}, "action": {"type": "quota"}}


def _config(cell: str) -> Any:
    return config_with(simulation=lambda s: {**s, "cell": cell, "seed": 3})


@pytest.fixture
async def cells() -> AsyncIterator[list[MockHostedAI]]:
    async with MockHostedAI(_config("a"), clock="manual") as a, MockHostedAI(_config("b"), clock="manual") as b:
        yield [a, b]


async def _fanout(cells: list[Cell]) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(create_fanout_app(cells, timeout_s=5)))
    await client.start_server()
    return client


@pytest.fixture
async def fanout(cells: list[MockHostedAI]) -> AsyncIterator[TestClient[Any, Any]]:
    client = await _fanout([Cell("a", cells[0].url), Cell("b", cells[1].url)])
    yield client
    await client.close()


async def _pools_status(mock: MockHostedAI) -> int:
    key = {"Authorization": f"Bearer {mock.api_key}"}
    async with aiohttp.ClientSession(headers=key) as http, http.get(f"{mock.url}/v1/pools") as resp:
        return resp.status


async def test_a_fault_added_once_is_on_every_cell_and_one_delete_removes_it_everywhere(
    cells: list[MockHostedAI], fanout: TestClient[Any, Any]
) -> None:
    # Cell b's counter runs ahead, so the rule has a different id in each cell.
    async with ControlPlane(cells[1].url, "dev-admin") as b:
        await b.remove_fault((await b.add_fault({"action": {"type": "quota"}}))["id"])
    async with fanout.post("/_admin/faults", json=QUOTA_ON_POOLS, headers=TOKEN) as resp:
        assert resp.status == 201
        rule_id = (await resp.json())["id"]
    assert [await _pools_status(c) for c in cells] == [403, 403]
    async with fanout.get("/_admin/faults", headers=TOKEN) as resp:
        [rule] = (await resp.json())["rules"]
        assert rule["id"] == rule_id
        assert rule["fired"] == 2
    async with fanout.delete(f"/_admin/faults/{rule_id}", headers=TOKEN) as resp:
        assert resp.status == 204
    assert [await _pools_status(c) for c in cells] == [200, 200]


async def test_the_control_plane_client_drives_every_cell_through_the_fan_out(
    cells: list[MockHostedAI], fanout: TestClient[Any, Any]
) -> None:
    url = str(fanout.make_url("")).rstrip("/")
    async with ControlPlane(url, "dev-admin") as admin:
        await admin.apply_scenario("region-outage")
        assert [await _pools_status(c) for c in cells] == [503, 503]
        clock = await admin.advance(61)
        assert clock == 61
        assert [await _pools_status(c) for c in cells] == [200, 200]
        held = []
        for mock in cells:
            async with aiohttp.ClientSession(
                base_url=mock.url, headers={"Authorization": f"Bearer {mock.api_key}"}
            ) as h:
                held.append((await allocate(h, ALLOCATE_GEMMA))["allocation_id"])
        leaks = await admin.leaks()
        assert sorted((leak["allocation_id"], leak.get("cell")) for leak in leaks) == sorted(
            zip(held, ["a", "b"], strict=False)
        )
        state = await admin.state()
        assert sorted(a["allocation_id"] for a in state["allocations"]) == sorted(held)
        await admin.reset()
        assert await admin.leaks() == []


async def test_the_merged_journal_pages_through_both_cells_and_a_mark_reads_only_what_followed(
    cells: list[MockHostedAI], fanout: TestClient[Any, Any]
) -> None:
    for mock in cells:
        for _ in range(3):
            await _pools_status(mock)
    async with fanout.get("/_admin/journal", params={"operation": "pools", "limit": "2"}, headers=TOKEN) as resp:
        first = await resp.json()
    seen = list(first["entries"])
    since = first["next_since_seq"]
    while since is not None:
        params = {"operation": "pools", "limit": "2", "since_seq": str(since)}
        async with fanout.get("/_admin/journal", params=params, headers=TOKEN) as resp:
            page = await resp.json()
        seen += page["entries"]
        since = page["next_since_seq"]
    assert sorted(e["cell"] for e in seen) == ["a", "a", "a", "b", "b", "b"]
    assert len({e["seq"] for e in seen}) == 6
    mark = max(e["seq"] for e in seen)
    await _pools_status(cells[1])
    async with fanout.get(
        "/_admin/journal", params={"operation": "pools", "since_seq": str(mark)}, headers=TOKEN
    ) as resp:
        assert [e["cell"] for e in (await resp.json())["entries"]] == ["b"]


async def test_a_dead_cell_is_a_502_problem_naming_it(cells: list[MockHostedAI]) -> None:
    dead = Cell("c", "http://127.0.0.1:9")  # the discard port: nothing listens on loopback
    client = await _fanout([Cell("a", cells[0].url), dead])
    try:
        async with client.post("/_admin/faults", json=QUOTA_ON_POOLS, headers=TOKEN) as resp:
            problem = await expect_problem(resp, 502, "bad_gateway")
        assert problem["cells"] == ["c"]
        assert "cell c (http://127.0.0.1:9)" in problem["detail"]
        async with client.get("/_admin/leaks", headers=TOKEN) as resp:
            await expect_problem(resp, 502, "bad_gateway")
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "status", "code"),
    [
        ("GET", "/_admin/journal", {"limit": "0"}, None, 422, "validation_failed"),
        ("GET", "/_admin/journal", {"since_seq": "-1"}, None, 422, "validation_failed"),
        ("GET", "/_admin/state", {"cursor": "x"}, None, 422, "validation_failed"),
        ("POST", "/_admin/faults", {}, {"action": {"type": "nope"}}, 422, "validation_failed"),
        ("DELETE", "/_admin/faults/fault_99", {}, None, 404, "not_found"),
        ("DELETE", "/_admin/faults/anything", {}, None, 422, "validation_failed"),
        ("POST", "/_admin/scenarios/meteor-strike", {}, None, 404, "not_found"),
        ("POST", "/_admin/scenarios/..%2Ffaults", {}, None, 422, "validation_failed"),
        ("POST", "/_admin/clock/advance", {}, {"seconds": "soon"}, 422, "validation_failed"),
        ("GET", "/_admin/dashboard", {}, None, 404, "not_found"),
        ("PUT", "/_admin/faults", {}, None, 405, "method_not_allowed"),
    ],
)
async def test_bad_input_to_the_fan_out_is_a_problem_never_a_500(
    fanout: TestClient[Any, Any], method: str, path: str, params: dict[str, str], body: Any, status: int, code: str
) -> None:
    async with fanout.request(method, path, params=params, json=body, headers=TOKEN) as resp:
        await expect_problem(resp, status, code)


async def test_a_wrong_token_is_the_cells_401_relayed(fanout: TestClient[Any, Any]) -> None:
    async with fanout.get("/_admin/leaks", headers={"X-Admin-Token": "wrong"}) as resp:
        await expect_problem(resp, 401, "unauthorized")


async def test_a_cell_answering_outside_the_contract_is_a_502_not_a_500() -> None:
    async def not_a_mock(request: web.Request) -> web.Response:
        return web.json_response({"hello": "world"})

    app = web.Application()
    app.router.add_get("/_admin/faults", not_a_mock)
    async with TestServer(app) as stranger:
        client = await _fanout([Cell("x", str(stranger.make_url("")).rstrip("/"))])
        try:
            async with client.get("/_admin/faults", headers=TOKEN) as resp:
                problem = await expect_problem(resp, 502, "bad_gateway")
            assert "contract" in problem["detail"]
        finally:
            await client.close()
