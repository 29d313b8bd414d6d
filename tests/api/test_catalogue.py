"""Pools, models, usage, health, metrics and the served contract."""

from __future__ import annotations

import csv
import io

import aiohttp
import yaml

from mock_server import MockHostedAI
from tests.conftest import ALLOCATE_GEMMA, ALLOCATE_QWEN, config_with
from tests.helpers import allocate, expect_problem


async def test_pools_report_capacity_and_use(client: aiohttp.ClientSession) -> None:
    await allocate(client, ALLOCATE_QWEN)
    async with client.get("/v1/pools") as resp:
        pools = {p["pool_id"]: p for p in (await resp.json())["pools"]}
    h100 = pools["gpu-pool-1"]
    assert (h100["gpu_type"], h100["gpus"], h100["overcommit_ratio"]) == ("H100-80GB", 8, 2)
    assert h100["tflops_total"] == 8 * 989
    assert h100["vram_mb_total"] == 8 * 81920
    assert (h100["tflops_allocated"], h100["vram_mb_allocated"], h100["allocations_active"]) == (30, 20480, 1)
    l4 = pools["gpu-pool-2"]
    assert (l4["gpus"], l4["overcommit_ratio"]) == (4, 4)
    assert l4["price_per_tflops_hour"] < h100["price_per_tflops_hour"]
    async with client.get("/v1/pools/gpu-pool-2") as resp:
        assert await resp.json() == l4


async def test_unknown_pool_is_404(client: aiohttp.ClientSession) -> None:
    async with client.get("/v1/pools/gpu-pool-9") as resp:
        await expect_problem(resp, 404, "not_found")


async def test_models_list_requirements_and_limits(client: aiohttp.ClientSession) -> None:
    async with client.get("/v1/models") as resp:
        models = {m["model"]: m for m in (await resp.json())["models"]}
    assert (models["gemma-270m"]["vram_mb"], models["gemma-270m"]["tflops"]) == (2048, 5)
    assert (models["qwen-30b"]["vram_mb"], models["qwen-30b"]["tflops"]) == (20480, 30)
    assert models["qwen-30b"]["pools"] == ["gpu-pool-1", "gpu-pool-2"]


async def test_usage_meters_held_capacity_and_tokens_with_cost(
    client: aiohttp.ClientSession, mock: MockHostedAI
) -> None:
    alloc = await allocate(client, {**ALLOCATE_QWEN, "labels": {"team": "search"}})
    async with client.post(
        "/v1/inference", json={"allocation_id": alloc["allocation_id"], "prompt": "one two", "max_tokens": 4, "seed": 3}
    ) as resp:
        answer = await resp.json()
    mock.advance(120)
    async with client.delete(f"/v1/allocate/{alloc['allocation_id']}"):
        pass
    mock.advance(60)  # after the release: no more accrual
    async with client.get("/v1/usage") as resp:
        usage = await resp.json()
    (record,) = usage["records"]
    assert usage["tenant_id"] == "dev"
    assert record["labels"] == {"team": "search"}
    assert record["tflops_seconds"] == 30 * 120
    assert record["vram_mb_seconds"] == 20480 * 120
    assert record["prompt_tokens"] == answer["usage"]["prompt_tokens"]
    assert record["completion_tokens"] == answer["usage"]["completion_tokens"]
    assert record["cost"] == round(30 * 120 / 3600 * 0.003, 9)
    assert record["started_at"] == "2026-01-01T00:00:00.000Z"
    assert record["ended_at"] == "2026-01-01T00:02:00.000Z"
    assert usage["totals"]["cost"] == record["cost"]
    assert usage["totals"]["allocations"] == 1


async def test_usage_window_is_widened_to_whole_periods(client: aiohttp.ClientSession, mock: MockHostedAI) -> None:
    await allocate(client, ALLOCATE_GEMMA)
    mock.advance(7200)
    params = {"since": "2026-01-01T00:30:00Z", "until": "2026-01-01T00:45:00Z"}
    async with client.get("/v1/usage", params=params) as resp:
        usage = await resp.json()
    (record,) = usage["records"]
    assert (usage["since"], usage["until"]) == ("2026-01-01T00:00:00.000Z", "2026-01-01T01:00:00.000Z")
    assert usage["period_seconds"] == 3600
    assert record["tflops_seconds"] == usage["totals"]["tflops_seconds"] == 5 * 3600
    async with client.get("/v1/usage", params={"since": "2026-01-02T00:00:00Z"}) as resp:
        assert (await resp.json())["records"] == []


async def test_usage_pages_json_and_csv_with_totals_of_the_whole_window(
    client: aiohttp.ClientSession, mock: MockHostedAI
) -> None:
    made = []
    for _ in range(5):
        alloc = await allocate(client, ALLOCATE_GEMMA)
        made.append(alloc["allocation_id"])
        mock.advance(10)
    seen, cursor = [], None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        async with client.get("/v1/usage", params=params) as resp:
            page = await resp.json()
        assert page["totals"]["allocations"] == 5  # every page: the whole window's
        seen += [r["allocation_id"] for r in page["records"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made
    rows, url = [], "/v1/usage?limit=2"
    while url:
        async with client.get(url, headers={"Accept": "text/csv"}) as resp:
            rows += list(csv.DictReader(io.StringIO(await resp.text())))
            url = str(resp.links["next"]["url"]) if "next" in resp.links else ""
    assert [r["allocation_id"] for r in rows] == made


async def test_usage_totals_stay_exact_after_the_detail_is_gone(session_for: type) -> None:
    config = config_with(simulation=lambda s: {**s, "retention_max_allocations": 2})
    async with MockHostedAI(config, clock="manual") as mock, session_for(mock.url, mock.api_key) as client:
        for _ in range(6):
            alloc = await allocate(client, ALLOCATE_GEMMA)
            mock.advance(60)
            async with client.delete(f"/v1/allocate/{alloc['allocation_id']}"):
                pass
        async with client.get("/v1/usage") as resp:
            usage = await resp.json()
    assert len(usage["records"]) == 2  # the detail of the last two only
    assert usage["totals"]["allocations"] == 6
    assert usage["totals"]["tflops_seconds"] == 6 * 5 * 60
    assert usage["totals"]["cost"] == round(6 * 5 * 60 / 3600 * 0.002, 9)


async def test_usage_exports_csv(client: aiohttp.ClientSession, mock: MockHostedAI) -> None:
    alloc = await allocate(client, {**ALLOCATE_GEMMA, "labels": {"b": "2", "a": "1"}})
    mock.advance(10)
    async with client.get("/v1/usage", headers={"Accept": "text/csv"}) as resp:
        assert resp.content_type == "text/csv"
        rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert rows[0]["allocation_id"] == alloc["allocation_id"]
    assert rows[0]["labels"] == "a=1;b=2"
    assert float(rows[0]["tflops_seconds"]) == 50.0
    assert rows[0]["ended_at"] == ""


async def test_bad_usage_window_is_422(client: aiohttp.ClientSession) -> None:
    async with client.get("/v1/usage", params={"since": "yesterday"}) as resp:
        await expect_problem(resp, 422, "validation_failed")


async def test_health_reports_ok_and_version(anonymous: aiohttp.ClientSession) -> None:
    async with anonymous.get("/health") as resp:
        assert await resp.json() == {"status": "ok", "version": "0.1.0"}


async def test_metrics_count_requests_and_report_pools(client: aiohttp.ClientSession) -> None:
    await allocate(client, ALLOCATE_QWEN)
    async with client.get("/metrics") as resp:
        assert resp.content_type == "text/plain"
        text = await resp.text()
    assert 'hostedai_sim_http_requests_total{operation="createAllocation",status="201"} 1.0' in text
    assert 'hostedai_sim_allocations_active{pool="gpu-pool-1"} 1.0' in text
    assert 'hostedai_sim_pool_tflops_allocated{pool="gpu-pool-1"} 30.0' in text
    assert 'hostedai_sim_allocations_total{outcome="created",pool="gpu-pool-1"} 1.0' in text
    assert "hostedai_sim_http_request_duration_seconds_bucket" in text


async def test_the_contract_is_served_as_yaml_and_json(anonymous: aiohttp.ClientSession) -> None:
    async with anonymous.get("/openapi.yaml") as resp:
        as_yaml = yaml.safe_load(await resp.text())
    async with anonymous.get("/openapi.json") as resp:
        as_json = await resp.json()
    assert as_yaml == as_json
    assert as_json["openapi"].startswith("3.1")
    assert "/v1/allocate" in as_json["paths"]


async def test_metrics_labels_come_only_from_the_config_whatever_clients_send(client: aiohttp.ClientSession) -> None:
    for i in range(50):
        body = {**ALLOCATE_GEMMA, "pool_id": f"made-up-{i}"}
        async with client.post("/v1/allocate", json=body) as resp:
            await expect_problem(resp, 404, "not_found")
    async with client.post("/v1/bogus-path-0") as resp:
        assert resp.status == 404
    async with client.get("/metrics") as resp:
        text = await resp.text()
    assert "made-up" not in text
    assert "bogus" not in text
    assert 'hostedai_sim_allocations_total{outcome="not_found",pool="unknown"} 50.0' in text
