"""Named scenarios over real HTTP: the catalogue, and what a client observes under each one."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from mock_server import MockHostedAI
from tests.conftest import ALLOCATE_GEMMA, config_with
from tests.helpers import expect_problem

GEMMA_ON_POOL_1 = {**ALLOCATE_GEMMA, "pool_id": "gpu-pool-1"}
NAMES = {"flaky-5xx", "rate-limited", "capacity-crunch", "brownout", "lost-responses", "gpu-xid", "region-outage"}


# ---- helpers ---------------------------------------------------------------------------------------


@pytest.fixture
async def admin(mock: MockHostedAI) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=mock.url, headers={"X-Admin-Token": mock.admin_token or ""}) as s:
        yield s


async def _ok_json(resp_cm: Any, status: int = 200) -> Any:
    async with resp_cm as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()


async def apply(admin: aiohttp.ClientSession, name: str) -> list[dict[str, Any]]:
    added: list[dict[str, Any]] = (await _ok_json(admin.post(f"/_admin/scenarios/{name}"), 201))["rules"]
    assert added
    assert {r["source"] for r in added} == {f"scenario:{name}"}
    return added


async def advance(admin: aiohttp.ClientSession, seconds: float) -> None:
    await _ok_json(admin.post("/_admin/clock/advance", json={"seconds": seconds}))


async def journal(admin: aiohttp.ClientSession, **params: Any) -> list[dict[str, Any]]:
    body = await _ok_json(admin.get("/_admin/journal", params={k: str(v) for k, v in params.items()}))
    entries: list[dict[str, Any]] = body["entries"]
    return entries


async def allocation_ids(client: aiohttp.ClientSession) -> list[str]:
    listed = await _ok_json(client.get("/v1/allocate", params={"limit": "500"}))
    return [a["allocation_id"] for a in listed["allocations"]]


async def status_of(session: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> int:
    async with session.request(method, path, **kwargs) as resp:
        await resp.read()
        return resp.status


# Every faultable operation, as a client would call it.
CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v1/pools", {}),
    ("GET", "/v1/pools/gpu-pool-1", {}),
    ("GET", "/v1/models", {}),
    ("GET", "/v1/allocate", {}),
    ("GET", "/v1/usage", {}),
    ("POST", "/v1/allocate", {"json": GEMMA_ON_POOL_1}),
    ("GET", "/v1/allocate/alloc_0000000000000000", {}),
    ("DELETE", "/v1/allocate/alloc_0000000000000000", {}),
    ("POST", "/v1/inference", {"json": {"allocation_id": "alloc_0000000000000000", "prompt": "hi"}}),
]


# ---- the catalogue ----------------------------------------------------------------------------------


async def test_scenarios_are_listed_with_descriptions(admin: aiohttp.ClientSession) -> None:
    listed = (await _ok_json(admin.get("/_admin/scenarios")))["scenarios"]
    assert {s["name"] for s in listed} >= NAMES
    assert all(s["description"] for s in listed)


async def test_an_unknown_scenario_is_404_and_adds_nothing(admin: aiohttp.ClientSession) -> None:
    async with admin.post("/_admin/scenarios/no-such-thing") as resp:
        await expect_problem(resp, 404, "not_found")
    assert (await _ok_json(admin.get("/_admin/faults")))["rules"] == []


# ---- each scenario, as a client sees it -------------------------------------------------------------


async def test_region_outage_answers_503_everywhere_for_60_simulated_seconds(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    await advance(admin, 100)  # the window starts when the scenario is applied, whatever the clock says
    await apply(admin, "region-outage")
    for method, path, kwargs in CALLS:
        async with client.request(method, path, **kwargs) as resp:
            problem = await expect_problem(resp, 503, "unavailable")
            assert resp.headers["Retry-After"] == "30", path
        assert problem["retry_after"] == 30
    await advance(admin, 59.5)
    assert await status_of(client, "GET", "/v1/pools") == 503
    await advance(admin, 0.5)  # 60 s after it began: over
    assert await status_of(client, "GET", "/v1/pools") == 200
    assert await status_of(client, "GET", "/v1/models") == 200
    assert await status_of(client, "POST", "/v1/allocate", json=GEMMA_ON_POOL_1) == 201


async def test_rate_limited_answers_429_after_a_burst_of_10(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession, team_b: aiohttp.ClientSession
) -> None:
    await apply(admin, "rate-limited")
    assert [await status_of(client, "GET", "/v1/pools") for _ in range(10)] == [200] * 10
    async with client.get("/v1/models") as resp:
        problem = await expect_problem(resp, 429, "rate_limited")
        assert int(resp.headers["Retry-After"]) >= 1
    assert problem["retry_after"] == int(resp.headers["Retry-After"])
    assert await status_of(team_b, "GET", "/v1/pools") == 200  # per tenant
    await advance(admin, 1)  # 5 requests/s: five more tokens
    assert [await status_of(client, "GET", "/v1/pools") for _ in range(6)] == [200] * 5 + [429]


async def test_capacity_crunch_refuses_a_share_of_allocates(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    await apply(admin, "capacity-crunch")
    created: list[str] = []
    refused = 0
    for _ in range(40):
        async with client.post("/v1/allocate", json=GEMMA_ON_POOL_1) as resp:
            if resp.status == 201:
                created.append((await resp.json())["allocation_id"])
            else:
                await expect_problem(resp, 503, "capacity_exhausted")
                assert resp.headers["Retry-After"] == "2"
                refused += 1
    assert refused + len(created) == 40
    assert 0.4 * 40 <= refused <= 0.95 * 40  # 70% on average; the seed fixes the draw
    assert created  # and the rest go through
    assert sorted(await allocation_ids(client)) == sorted(created)
    assert await status_of(client, "GET", "/v1/pools") == 200  # only allocates are hit


async def test_lost_responses_reset_some_allocates_that_were_nevertheless_done(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    await apply(admin, "lost-responses")
    answered: list[str] = []
    lost = 0
    for _ in range(20):
        try:
            async with client.post("/v1/allocate", json=GEMMA_ON_POOL_1) as resp:
                assert resp.status == 201, await resp.text()
                answered.append((await resp.json())["allocation_id"])
        except aiohttp.ClientConnectionError:
            lost += 1
    assert lost > 0
    assert answered
    existing = await allocation_ids(client)
    assert len(existing) == 20  # every allocate was done, answered or not
    assert set(answered) <= set(existing)
    entries = await journal(admin, operation="allocate")
    assert len(entries) == 20
    reset = [e for e in entries if e["fault_action"] == "reset"]
    assert len(reset) == lost
    assert all(e["status"] is None for e in reset)
    # The journal names the allocations whose answers were lost: the ones the client never saw.
    assert {e["allocation_id"] for e in reset} == set(existing) - set(answered)


async def test_flaky_5xx_fails_some_requests_with_5xx(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    await apply(admin, "flaky-5xx")
    statuses: Counter[int] = Counter()
    for _ in range(100):
        async with client.get("/v1/pools") as resp:
            await resp.read()
            statuses[resp.status] += 1
            if resp.status == 503:
                assert resp.headers["Retry-After"] == "1"
                assert (await resp.json(content_type=None))["code"] == "unavailable"
    assert set(statuses) <= {200, 500, 502, 503}, statuses
    failed = statuses[500] + statuses[502] + statuses[503]
    assert failed > 0, statuses
    assert statuses[200] > 50, statuses


async def test_gpu_xid_fails_some_inferences_with_their_gpu(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    await apply(admin, "gpu-xid")
    failed: list[dict[str, Any]] = []
    succeeded = 0
    for _ in range(60):
        alloc = await _ok_json(client.post("/v1/allocate", json=GEMMA_ON_POOL_1), 201)
        request = {"allocation_id": alloc["allocation_id"], "prompt": "hi", "max_tokens": 4}
        async with client.post("/v1/inference", json=request) as resp:
            if resp.status == 200:
                succeeded += 1
            else:
                problem = await expect_problem(resp, 409, "allocation_not_active")
                assert problem["state"] == "failed"
                failed.append(alloc)
        async with client.delete(f"/v1/allocate/{alloc['allocation_id']}") as resp:
            assert resp.status == 204
        if len(failed) == 2:
            break
    assert failed, "no Xid error in 60 inferences at 10%"
    assert succeeded > 0
    for alloc in failed:
        seen = await _ok_json(client.get(f"/v1/allocate/{alloc['allocation_id']}"))
        assert (seen["state"], seen["end_reason"]) == ("failed", "gpu_failure")
    state = await _ok_json(admin.get("/_admin/state"))
    unhealthy = {g["gpu_id"] for g in state["gpus"] if not g["healthy"]}
    assert {a["gpu_id"] for a in failed} <= unhealthy


async def test_brownout_adds_rising_latency_windows(admin: aiohttp.ClientSession) -> None:
    await advance(admin, 30)
    await apply(admin, "brownout")
    rules = (await _ok_json(admin.get("/_admin/faults")))["rules"]
    assert len(rules) >= 3
    assert all(
        r["action"]["type"] == "delay" and r["action"]["distribution"] == "lognormal" and r["window_s"] for r in rules
    )
    windows = [r["window_s"] for r in rules]
    medians = [r["action"]["median_ms"] for r in rules]
    assert windows[0][0] == 30  # it starts now
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))  # back to back
    assert medians == sorted(medians)
    assert len(set(medians)) == len(medians)  # strictly rising


async def test_brownout_slows_requests_that_still_succeed() -> None:
    async with (
        MockHostedAI(clock="real", time_scale=0.001, seed=11) as mock,
        aiohttp.ClientSession(base_url=mock.url, headers={"X-Admin-Token": mock.admin_token or ""}) as admin,
        aiohttp.ClientSession(base_url=mock.url, headers={"Authorization": f"Bearer {mock.api_key}"}) as client,
    ):
        await apply(admin, "brownout")
        for _ in range(5):
            assert await status_of(client, "GET", "/v1/pools") == 200
        assert await status_of(client, "POST", "/v1/allocate", json=GEMMA_ON_POOL_1) == 201
        entries = await journal(admin)
    assert len(entries) == 6
    assert {e["fault_action"] for e in entries} == {"delay"}  # the windows are back to back from now on
    assert {e["status"] for e in entries} == {200, 201}


async def test_a_scenario_given_at_startup_is_active_at_once(session_for: Any) -> None:
    config = config_with(scenarios=["region-outage"])
    async with MockHostedAI(config, clock="manual", seed=5) as mock, session_for(mock.url, mock.api_key) as client:
        async with client.get("/v1/pools") as resp:
            await expect_problem(resp, 503, "unavailable")
            assert resp.headers["Retry-After"] == "30"
        async with client.post("/v1/allocate", json=GEMMA_ON_POOL_1) as resp:
            await expect_problem(resp, 503, "unavailable")
        mock.advance(60)
        assert await status_of(client, "GET", "/v1/pools") == 200
