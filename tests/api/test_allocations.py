"""The allocation endpoints over real HTTP: create, read, list, release, idempotency, queueing."""

from __future__ import annotations

import asyncio

import aiohttp

from mock_server import MockHostedAI
from tests.conftest import ALLOCATE_GEMMA, ALLOCATE_QWEN, config_with
from tests.helpers import allocate, expect_problem


async def test_allocate_answers_201_with_location_and_the_allocation(client: aiohttp.ClientSession) -> None:
    async with client.post("/v1/allocate", json=ALLOCATE_QWEN) as resp:
        assert resp.status == 201
        body = await resp.json()
        assert resp.headers["Location"] == f"/v1/allocate/{body['allocation_id']}"
        assert "Idempotent-Replayed" not in resp.headers
    assert body["allocation_id"].startswith("alloc_")
    assert body["state"] == "active"
    assert body["tenant_id"] == "dev"
    assert body["pool_id"] == "gpu-pool-1"
    assert (body["model"], body["tflops"], body["vram_mb"]) == ("qwen-30b", 30, 20480)
    assert body["gpu_id"].startswith("gpu-pool-1-gpu-")
    assert (body["ended_at"], body["end_reason"], body["expires_at"]) == (None, None, None)


async def test_get_returns_the_allocation(client: aiohttp.ClientSession) -> None:
    created = await allocate(client, ALLOCATE_QWEN)
    async with client.get(f"/v1/allocate/{created['allocation_id']}") as resp:
        assert resp.status == 200
        assert await resp.json() == created


async def test_release_is_idempotent(client: aiohttp.ClientSession, mock: MockHostedAI) -> None:
    created = await allocate(client, ALLOCATE_QWEN)
    for _ in range(2):
        async with client.delete(f"/v1/allocate/{created['allocation_id']}") as resp:
            assert resp.status == 204
            assert await resp.read() == b""
    async with client.get(f"/v1/allocate/{created['allocation_id']}") as resp:
        body = await resp.json()
    assert body["state"] == "released"
    assert body["end_reason"] == "released"
    assert body["ended_at"] is not None
    pool = mock.sim.pool_stats("gpu-pool-1")[0]
    assert (pool.tflops_allocated, pool.vram_mb_allocated, pool.allocations_active) == (0, 0, 0)


async def test_unknown_allocation_is_404(client: aiohttp.ClientSession) -> None:
    for method in ("GET", "DELETE"):
        async with client.request(method, "/v1/allocate/alloc_0000000000000000") as resp:
            await expect_problem(resp, 404, "not_found")


async def test_malformed_allocation_id_is_422(client: aiohttp.ClientSession) -> None:
    async with client.get("/v1/allocate/has.dots") as resp:
        body = await expect_problem(resp, 422, "validation_failed")
    assert body["errors"][0]["path"] == "/path/allocation_id"


async def test_another_tenants_allocation_is_404_and_unlisted(
    client: aiohttp.ClientSession, team_b: aiohttp.ClientSession
) -> None:
    created = await allocate(client, ALLOCATE_QWEN)
    url = f"/v1/allocate/{created['allocation_id']}"
    async with team_b.get(url) as resp:
        await expect_problem(resp, 404, "not_found")
    async with team_b.delete(url) as resp:
        await expect_problem(resp, 404, "not_found")
    async with team_b.post("/v1/inference", json={"allocation_id": created["allocation_id"], "prompt": "hi"}) as resp:
        await expect_problem(resp, 404, "not_found")
    async with team_b.get("/v1/allocate") as resp:
        assert (await resp.json())["allocations"] == []
    async with client.get(url) as resp:
        assert (await resp.json())["state"] == "active"


async def test_list_filters_by_state_and_label_and_pages(client: aiohttp.ClientSession) -> None:
    ids = [
        (await allocate(client, {**ALLOCATE_GEMMA, "labels": {"job": f"j{i % 2}"}}))["allocation_id"] for i in range(5)
    ]
    async with client.delete(f"/v1/allocate/{ids[0]}"):
        pass
    async with client.get("/v1/allocate", params=[("state", "active")]) as resp:
        active = [a["allocation_id"] for a in (await resp.json())["allocations"]]
    assert active == ids[1:]
    async with client.get("/v1/allocate", params=[("label", "job=j0")]) as resp:
        labelled = [a["allocation_id"] for a in (await resp.json())["allocations"]]
    assert labelled == [ids[0], ids[2], ids[4]]
    async with client.get("/v1/allocate", params=[("label", "job=j0"), ("state", "active")]) as resp:
        assert [a["allocation_id"] for a in (await resp.json())["allocations"]] == [ids[2], ids[4]]

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        async with client.get("/v1/allocate", params=params) as resp:
            page = await resp.json()
        assert len(page["allocations"]) <= 2
        seen += [a["allocation_id"] for a in page["allocations"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids


async def test_list_rejects_bad_query_values(client: aiohttp.ClientSession) -> None:
    for params in ({"limit": "0"}, {"limit": "many"}, {"state": "sleeping"}, {"cursor": "x"}, {"label": "no-equals"}):
        async with client.get("/v1/allocate", params=params) as resp:
            body = await expect_problem(resp, 422, "validation_failed")
        assert body["errors"][0]["path"].startswith("/query/")


async def test_idempotent_replay_returns_the_original_and_allocates_nothing(
    client: aiohttp.ClientSession, mock: MockHostedAI
) -> None:
    headers = {"Idempotency-Key": "retry-1"}
    first = await allocate(client, ALLOCATE_QWEN, headers=headers)
    async with client.post("/v1/allocate", json=ALLOCATE_QWEN, headers=headers) as resp:
        assert resp.status == 201
        assert resp.headers["Idempotent-Replayed"] == "true"
        replay = await resp.json()
    assert replay == first
    assert mock.sim.pool_stats("gpu-pool-1")[0].allocations_active == 1


async def test_idempotency_key_with_another_body_is_409(client: aiohttp.ClientSession) -> None:
    headers = {"Idempotency-Key": "retry-2"}
    await allocate(client, ALLOCATE_QWEN, headers=headers)
    async with client.post("/v1/allocate", json={**ALLOCATE_QWEN, "priority": 9}, headers=headers) as resp:
        await expect_problem(resp, 409, "idempotency_conflict")


async def test_idempotency_keys_are_per_tenant(client: aiohttp.ClientSession, team_b: aiohttp.ClientSession) -> None:
    headers = {"Idempotency-Key": "shared"}
    both_tiers = {**ALLOCATE_QWEN, "pool_id": "gpu-pool-2"}  # team-b's tier may not use gpu-pool-1
    mine = await allocate(client, both_tiers, headers=headers)
    theirs = await allocate(team_b, both_tiers, headers=headers)
    assert mine["allocation_id"] != theirs["allocation_id"]


async def test_without_idempotency_support_a_retry_allocates_twice(session_for: type) -> None:
    config = config_with(simulation=lambda s: {**s, "idempotency": False})
    async with MockHostedAI(config, clock="manual") as mock, session_for(mock.url, mock.api_key) as client:
        headers = {"Idempotency-Key": "ignored"}
        first = await allocate(client, ALLOCATE_QWEN, headers=headers)
        second = await allocate(client, ALLOCATE_QWEN, headers=headers)
    assert first["allocation_id"] != second["allocation_id"]


async def test_unknown_pool_or_model_is_404(client: aiohttp.ClientSession) -> None:
    async with client.post("/v1/allocate", json={**ALLOCATE_QWEN, "pool_id": "gpu-pool-9"}) as resp:
        await expect_problem(resp, 404, "not_found")
    body = {**ALLOCATE_QWEN, "requirements": {**ALLOCATE_QWEN["requirements"], "model": "llama-9000"}}
    async with client.post("/v1/allocate", json=body) as resp:
        await expect_problem(resp, 404, "not_found")


async def test_requirements_no_gpu_could_hold_are_422_unsatisfiable(client: aiohttp.ClientSession) -> None:
    body = {**ALLOCATE_QWEN, "requirements": {"tflops": 30, "vram_mb": 90000, "model": "qwen-30b"}}
    async with client.post("/v1/allocate", json=body) as resp:
        problem = await expect_problem(resp, 422, "validation_failed")
    assert problem["errors"][0]["message"].startswith("unsatisfiable")


async def test_capacity_exhausted_is_503_with_retry_after(client: aiohttp.ClientSession) -> None:
    # gpu-pool-2: 4 L4 GPUs of 24576 MB; 20480 MB each leaves room for exactly four.
    big = {"pool_id": "gpu-pool-2", "requirements": {"tflops": 30, "vram_mb": 20480, "model": "qwen-30b"}}
    for _ in range(4):
        await allocate(client, big)
    async with client.post("/v1/allocate", json=big) as resp:
        problem = await expect_problem(resp, 503, "capacity_exhausted")
        assert resp.headers["Retry-After"] == "5"
    assert problem["retry_after"] == 5


async def test_wait_seconds_queues_until_capacity_is_released(
    client: aiohttp.ClientSession, mock: MockHostedAI
) -> None:
    big = {"pool_id": "gpu-pool-2", "requirements": {"tflops": 30, "vram_mb": 20480, "model": "qwen-30b"}}
    held = [await allocate(client, big) for _ in range(4)]
    queued = asyncio.create_task(client.post("/v1/allocate", json={**big, "wait_seconds": 10}))
    await _until(lambda: mock.state.waiters.waiting == 1)
    assert not queued.done()
    async with client.delete(f"/v1/allocate/{held[0]['allocation_id']}"):
        pass
    resp = await asyncio.wait_for(queued, timeout=10)
    assert resp.status == 201
    assert (await resp.json())["gpu_id"] == held[0]["gpu_id"]
    resp.release()


async def test_wait_seconds_gives_up_when_simulated_time_runs_out(
    client: aiohttp.ClientSession, mock: MockHostedAI
) -> None:
    big = {"pool_id": "gpu-pool-2", "requirements": {"tflops": 30, "vram_mb": 20480, "model": "qwen-30b"}}
    for _ in range(4):
        await allocate(client, big)
    queued = asyncio.create_task(client.post("/v1/allocate", json={**big, "wait_seconds": 10}))
    await _until(lambda: mock.state.waiters.waiting == 1)
    mock.advance(5)
    await _until(lambda: mock.state.waiters.waiting == 1)
    assert not queued.done()
    mock.advance(6)
    resp = await asyncio.wait_for(queued, timeout=10)
    await expect_problem(resp, 503, "capacity_exhausted")


async def test_lease_expires_an_idle_allocation(client: aiohttp.ClientSession, mock: MockHostedAI) -> None:
    created = await allocate(client, {**ALLOCATE_GEMMA, "ttl_seconds": 60})
    assert created["expires_at"] == "2026-01-01T00:01:00.000Z"
    mock.advance(61)
    async with client.get(f"/v1/allocate/{created['allocation_id']}") as resp:
        body = await resp.json()
    assert (body["state"], body["end_reason"], body["expires_at"]) == ("expired", "expired", None)


async def test_quota_is_403(session_for: type) -> None:
    config = config_with(tenants=lambda t: {**t, "dev": {**t["dev"], "quota": {"max_active_allocations": 1}}})
    async with MockHostedAI(config, clock="manual") as mock, session_for(mock.url, mock.api_key) as client:
        await allocate(client, ALLOCATE_GEMMA)
        async with client.post("/v1/allocate", json=ALLOCATE_GEMMA) as resp:
            await expect_problem(resp, 403, "quota_exceeded")


async def test_rate_limit_is_429_with_retry_after(session_for: type) -> None:
    config = config_with(tenants=lambda t: {**t, "dev": {**t["dev"], "rate_limit": {"rps": 1, "burst": 2}}})
    async with MockHostedAI(config, clock="manual") as mock, session_for(mock.url, mock.api_key) as client:
        for _ in range(2):
            async with client.get("/v1/pools") as resp:
                assert resp.status == 200
        async with client.get("/v1/pools") as resp:
            problem = await expect_problem(resp, 429, "rate_limited")
            assert resp.headers["Retry-After"] == "1"
        assert problem["retry_after"] == 1
        mock.advance(1)
        async with client.get("/v1/pools") as resp:
            assert resp.status == 200


async def _until(condition: object, attempts: int = 1000) -> None:
    """Yield to the event loop until the condition holds (bounded by count, not by time)."""
    for _ in range(attempts):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")
