"""Pool segregation by customer tier: a tenant sees and allocates on only the pools serving its tier.

The default config: dev is `enterprise` (both pools), team-b is `standard` (gpu-pool-2 only)."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.conftest import ALLOCATE_GEMMA
from tests.helpers import allocate, expect_problem

GEMMA_ON_POOL_1: dict[str, Any] = {**ALLOCATE_GEMMA, "pool_id": "gpu-pool-1"}


async def _json(session: aiohttp.ClientSession, path: str) -> Any:
    async with session.get(path) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_allocating_outside_the_tenants_tier_is_403_pool_not_permitted(team_b: aiohttp.ClientSession) -> None:
    async with team_b.post("/v1/allocate", json=GEMMA_ON_POOL_1) as resp:
        body = await expect_problem(resp, 403, "pool_not_permitted")
    assert body["detail"] == "Pool gpu-pool-1 serves the tiers enterprise; tenant team-b is standard."


async def test_a_refused_allocate_holds_nothing(team_b: aiohttp.ClientSession, client: aiohttp.ClientSession) -> None:
    async with team_b.post("/v1/allocate", json=GEMMA_ON_POOL_1) as resp:
        assert resp.status == 403
    (pool,) = [p for p in (await _json(client, "/v1/pools"))["pools"] if p["pool_id"] == "gpu-pool-1"]
    assert (pool["allocations_active"], pool["vram_mb_allocated"]) == (0, 0)
    assert (await _json(team_b, "/v1/allocate"))["allocations"] == []


async def test_a_pool_serving_the_tier_is_allocated_as_usual(team_b: aiohttp.ClientSession) -> None:
    allocation = await allocate(team_b, ALLOCATE_GEMMA)
    assert (allocation["pool_id"], allocation["tenant_id"]) == ("gpu-pool-2", "team-b")


async def test_an_unknown_pool_is_still_404_not_403(team_b: aiohttp.ClientSession) -> None:
    async with team_b.post("/v1/allocate", json={**ALLOCATE_GEMMA, "pool_id": "gpu-pool-9"}) as resp:
        await expect_problem(resp, 404, "not_found")


async def test_the_pool_list_holds_only_the_pools_of_the_tenants_tier(
    client: aiohttp.ClientSession, team_b: aiohttp.ClientSession
) -> None:
    assert [p["pool_id"] for p in (await _json(client, "/v1/pools"))["pools"]] == ["gpu-pool-1", "gpu-pool-2"]
    assert [p["pool_id"] for p in (await _json(team_b, "/v1/pools"))["pools"]] == ["gpu-pool-2"]


async def test_reading_a_pool_outside_the_tier_is_403(team_b: aiohttp.ClientSession) -> None:
    async with team_b.get("/v1/pools/gpu-pool-1") as resp:
        await expect_problem(resp, 403, "pool_not_permitted")
    assert (await _json(team_b, "/v1/pools/gpu-pool-2"))["pool_id"] == "gpu-pool-2"


async def test_models_name_only_the_pools_of_the_tenants_tier(
    client: aiohttp.ClientSession, team_b: aiohttp.ClientSession
) -> None:
    for model in (await _json(client, "/v1/models"))["models"]:
        assert model["pools"] == ["gpu-pool-1", "gpu-pool-2"]
    for model in (await _json(team_b, "/v1/models"))["models"]:
        assert model["pools"] == ["gpu-pool-2"]
