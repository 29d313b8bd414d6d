"""Fault rules over real HTTP: what a client observes for each action and phase, how rules match and
count, and how the control plane rejects bad rules (contracts/admin.v1.yaml, `FaultRuleInput`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from mock_server import MockHostedAI
from tests.conftest import ALLOCATE_GEMMA, ALLOCATE_QWEN
from tests.helpers import allocate, expect_problem

UNAVAILABLE = {"type": "error", "status": 503, "code": "unavailable", "retry_after": 1}
GEMMA_ON_POOL_1 = {**ALLOCATE_GEMMA, "pool_id": "gpu-pool-1"}


# ---- helpers ---------------------------------------------------------------------------------------


@pytest.fixture
async def admin(mock: MockHostedAI) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=mock.url, headers={"X-Admin-Token": mock.admin_token or ""}) as s:
        yield s


def _session(mock: MockHostedAI, key: str | None = None, **headers: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        base_url=mock.url, headers={"Authorization": f"Bearer {key or mock.api_key}", **headers}
    )


def _admin_session(mock: MockHostedAI) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(base_url=mock.url, headers={"X-Admin-Token": mock.admin_token or ""})


async def _ok_json(resp_cm: Any, status: int = 200) -> Any:
    async with resp_cm as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()


async def add_rule(admin: aiohttp.ClientSession, rule: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = await _ok_json(admin.post("/_admin/faults", json=rule), 201)
    assert created["id"].startswith("fault_")
    return created


async def rules(admin: aiohttp.ClientSession) -> dict[str, dict[str, Any]]:
    listed = await _ok_json(admin.get("/_admin/faults"))
    return {r["id"]: r for r in listed["rules"]}


async def journal(admin: aiohttp.ClientSession, **params: Any) -> list[dict[str, Any]]:
    body = await _ok_json(admin.get("/_admin/journal", params={k: str(v) for k, v in params.items()}))
    entries: list[dict[str, Any]] = body["entries"]
    return entries


async def advance(admin: aiohttp.ClientSession, seconds: float) -> None:
    await _ok_json(admin.post("/_admin/clock/advance", json={"seconds": seconds}))


async def status_of(session: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> int:
    async with session.request(method, path, **kwargs) as resp:
        await resp.read()
        return resp.status


async def allocation_ids(client: aiohttp.ClientSession) -> list[str]:
    listed = await _ok_json(client.get("/v1/allocate", params={"limit": "500"}))
    return [a["allocation_id"] for a in listed["allocations"]]


async def _events(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Parse a server-sent event stream into (event, data) pairs."""
    name = None
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            assert name is not None
            yield name, json.loads(line[len("data: ") :])


# ---- error -----------------------------------------------------------------------------------------


async def test_error_answers_the_configured_status_code_and_retry_after(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    action = {"type": "error", "status": 503, "code": "unavailable", "retry_after": 7}
    await add_rule(admin, {"match": {"operation": "pools"}, "action": action})
    async with client.get("/v1/pools") as resp:
        problem = await expect_problem(resp, 503, "unavailable")
        assert resp.headers["Retry-After"] == "7"
    assert problem["retry_after"] == 7


async def test_error_without_retry_after_sends_no_retry_after_for_a_plain_status(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    await add_rule(
        admin, {"match": {"operation": "pools"}, "action": {"type": "error", "status": 500, "code": "internal_error"}}
    )
    async with client.get("/v1/pools") as resp:
        problem = await expect_problem(resp, 500, "internal_error")
        assert "Retry-After" not in resp.headers
    assert "retry_after" not in problem


async def test_error_may_pair_any_status_with_any_code(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    action = {"type": "error", "status": 529, "code": "overloaded", "retry_after": 3, "detail": "Try later."}
    await add_rule(admin, {"match": {"operation": "pools"}, "action": action})
    async with client.get("/v1/pools") as resp:
        problem = await expect_problem(resp, 529, "overloaded")
        assert resp.headers["Retry-After"] == "3"
    assert problem["detail"] == "Try later."
    assert problem["retry_after"] == 3


async def test_error_before_allocate_creates_nothing(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    rule = await add_rule(admin, {"match": {"operation": "allocate"}, "action": UNAVAILABLE})
    async with client.post("/v1/allocate", json=ALLOCATE_QWEN) as resp:
        await expect_problem(resp, 503, "unavailable")
    assert await allocation_ids(client) == []
    pool = await _ok_json(client.get("/v1/pools/gpu-pool-1"))
    assert (pool["allocations_active"], pool["tflops_allocated"], pool["vram_mb_allocated"]) == (0, 0, 0)
    [entry] = await journal(admin, operation="allocate")
    assert (entry["status"], entry["fault_id"], entry["fault_action"]) == (503, rule["id"], "error")
    assert entry["allocation_id"] is None


async def test_error_after_allocate_loses_the_answer_but_the_allocation_exists(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    await add_rule(admin, {"match": {"operation": "allocate"}, "phase": "after", "action": UNAVAILABLE})
    async with client.post("/v1/allocate", json=ALLOCATE_QWEN) as resp:
        await expect_problem(resp, 503, "unavailable")
        assert resp.headers["Retry-After"] == "1"
    [created] = await allocation_ids(client)
    [entry] = await journal(admin, operation="allocate")
    assert (entry["status"], entry["fault_action"], entry["allocation_id"]) == (503, "error", created)
    await advance(admin, 1)  # a leak is an allocation older than the grace period (0 s)
    leaks = (await _ok_json(admin.get("/_admin/leaks")))["leaks"]
    assert [(leak["allocation_id"], leak["reason"], leak["state"]) for leak in leaks] == [
        (created, "still_active", "active")
    ]


# ---- delay -----------------------------------------------------------------------------------------


async def test_fixed_delay_is_slept_scaled_on_the_real_clock() -> None:
    async with MockHostedAI(clock="real", time_scale=0.01, seed=3) as mock, _admin_session(mock) as admin:
        action = {"type": "delay", "distribution": "fixed", "ms": 2000}
        await add_rule(admin, {"match": {"operation": "pools"}, "action": action})
        async with _session(mock) as client:
            started = time.perf_counter()
            async with client.get("/v1/pools") as resp:
                assert resp.status == 200
                await resp.json()
            elapsed = time.perf_counter() - started
    assert elapsed >= 0.018  # 2000 simulated ms x 0.01 = 20 real ms (a little slack for timer resolution)


async def test_delay_is_not_slept_on_the_manual_clock(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    # An hour of simulated delay: were it slept, the (generous) client timeout would fire.
    action = {"type": "delay", "distribution": "fixed", "ms": 3_600_000}
    rule = await add_rule(admin, {"match": {"operation": "pools"}, "action": action})
    async with client.get("/v1/pools", timeout=aiohttp.ClientTimeout(total=10)) as resp:
        assert resp.status == 200
        assert (await resp.json())["pools"]
    [entry] = await journal(admin, operation="pools")
    assert (entry["fault_id"], entry["fault_action"], entry["status"]) == (rule["id"], "delay", 200)


async def test_uniform_normal_and_lognormal_delays_are_accepted_and_fire(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    delays = [
        {"type": "delay", "distribution": "uniform", "min_ms": 10, "max_ms": 500},
        {"type": "delay", "distribution": "normal", "mean_ms": 100, "stddev_ms": 30},
        {"type": "delay", "distribution": "lognormal", "median_ms": 100, "sigma": 0.5},
    ]
    added = [await add_rule(admin, {"match": {"operation": "pools"}, "times": 1, "action": a}) for a in delays]
    for _ in delays:
        assert await status_of(client, "GET", "/v1/pools") == 200
    listed = await rules(admin)
    assert [listed[r["id"]]["fired"] for r in added] == [1, 1, 1]
    assert [listed[r["id"]]["action"]["distribution"] for r in added] == ["uniform", "normal", "lognormal"]
    entries = await journal(admin, operation="pools")
    assert [e["fault_id"] for e in entries] == [r["id"] for r in added]
    assert {e["fault_action"] for e in entries} == {"delay"}


# ---- hang ------------------------------------------------------------------------------------------


async def test_hang_outlasts_a_client_timeout(admin: aiohttp.ClientSession, client: aiohttp.ClientSession) -> None:
    await add_rule(admin, {"match": {"operation": "pools"}, "action": {"type": "hang", "max_s": 2}})
    with pytest.raises(asyncio.TimeoutError):  # aiohttp's ServerTimeoutError is one too
        async with client.get("/v1/pools", timeout=aiohttp.ClientTimeout(total=0.2)) as resp:
            await resp.read()


async def test_a_short_hang_answers_504_gateway_timeout(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    await add_rule(admin, {"match": {"operation": "pools"}, "action": {"type": "hang", "max_s": 0.05}})
    started = time.perf_counter()
    async with client.get("/v1/pools", timeout=aiohttp.ClientTimeout(total=30)) as resp:
        await expect_problem(resp, 504, "gateway_timeout")
    assert time.perf_counter() - started >= 0.04  # it did hang, in real seconds, on the manual clock


# ---- reset / empty / malformed -----------------------------------------------------------------------


async def test_reset_before_allocate_resets_the_connection_and_creates_nothing(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    rule = await add_rule(admin, {"match": {"operation": "allocate"}, "action": {"type": "reset"}})
    with pytest.raises(aiohttp.ClientOSError):  # a ClientConnectionError: "Connection reset by peer"
        async with client.post("/v1/allocate", json=ALLOCATE_QWEN) as resp:
            await resp.read()
    [entry] = await journal(admin, operation="allocate")
    assert (entry["status"], entry["fault_id"], entry["fault_action"]) == (None, rule["id"], "reset")
    assert entry["allocation_id"] is None
    assert await allocation_ids(client) == []


async def test_reset_on_a_get_is_a_connection_error_journalled_without_status(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    await add_rule(admin, {"match": {"operation": "pools"}, "action": {"type": "reset"}})
    with pytest.raises(aiohttp.ClientConnectionError):
        async with client.get("/v1/pools") as resp:
            await resp.read()
    entries = await journal(admin, operation="pools")
    # aiohttp retries an idempotent request once on a lost connection: one or two attempts.
    assert 1 <= len(entries) <= 2
    assert {(e["status"], e["fault_action"]) for e in entries} == {(None, "reset")}


async def test_empty_closes_the_connection_without_an_answer(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    rule = await add_rule(admin, {"match": {"operation": "allocate"}, "action": {"type": "empty"}})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with client.post("/v1/allocate", json=ALLOCATE_QWEN) as resp:
            await resp.read()
    [entry] = await journal(admin, operation="allocate")
    assert (entry["status"], entry["fault_id"], entry["fault_action"]) == (None, rule["id"], "empty")
    assert await allocation_ids(client) == []


async def test_malformed_answers_200_with_a_body_that_is_not_json(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    await add_rule(admin, {"match": {"operation": "pools"}, "action": {"type": "malformed"}})
    async with client.get("/v1/pools") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        raw = await resp.read()
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    [entry] = await journal(admin, operation="pools")
    assert (entry["status"], entry["fault_action"]) == (200, "malformed")


# ---- truncate / drip ----------------------------------------------------------------------------------


async def test_truncate_stops_a_stream_after_n_tokens_without_done(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    alloc = await allocate(client, ALLOCATE_QWEN)
    request = {"allocation_id": alloc["allocation_id"], "prompt": "Stream this.", "seed": 5, "max_tokens": 10}
    async with client.post("/v1/inference", json=request) as resp:
        assert resp.status == 200
        assert (await resp.json())["usage"]["completion_tokens"] > 2  # there is something to cut
    await add_rule(admin, {"match": {"operation": "inference"}, "action": {"type": "truncate", "after_tokens": 2}})
    events: list[tuple[str, dict[str, Any]]] = []
    async with client.post("/v1/inference", json={**request, "stream": True}) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        # The stream is cut: how the connection ends (clean or not) is not the point; the events are.
        with contextlib.suppress(aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
            async for event in _events(resp):
                events.append(event)
    names = [name for name, _ in events]
    assert names == ["token", "token"], names
    assert [data["index"] for _, data in events] == [0, 1]


async def test_truncate_cuts_a_plain_answer_midway(admin: aiohttp.ClientSession, client: aiohttp.ClientSession) -> None:
    alloc = await allocate(client, ALLOCATE_QWEN)
    await add_rule(admin, {"match": {"operation": "inference"}, "action": {"type": "truncate", "after_tokens": 2}})
    request = {"allocation_id": alloc["allocation_id"], "prompt": "hi", "max_tokens": 10}
    async with client.post("/v1/inference", json=request) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):  # the body ends before its Content-Length
            await resp.read()


async def test_drip_sends_the_whole_answer_slowly(admin: aiohttp.ClientSession, client: aiohttp.ClientSession) -> None:
    async with client.get("/v1/pools") as resp:
        expected = await resp.read()
    assert 200 <= len(expected) <= 2000  # a few hundred bytes
    await add_rule(admin, {"match": {"operation": "pools"}, "action": {"type": "drip", "bytes_per_s": 2000}})
    started = time.perf_counter()
    async with client.get("/v1/pools") as resp:
        assert resp.status == 200
        body = await resp.read()
    elapsed = time.perf_counter() - started
    assert body == expected
    assert json.loads(body)["pools"]
    assert elapsed >= 0.1  # at 2000 bytes/s, more than 200 bytes take at least 0.1 s


# ---- rate_limit / quota --------------------------------------------------------------------------------


async def test_rate_limit_is_a_token_bucket_per_tenant_on_the_simulator_clock(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession, team_b: aiohttp.ClientSession
) -> None:
    await add_rule(admin, {"action": {"type": "rate_limit", "rps": 1, "burst": 2}})
    assert [await status_of(client, "GET", "/v1/pools") for _ in range(2)] == [200, 200]
    async with client.get("/v1/pools") as resp:
        problem = await expect_problem(resp, 429, "rate_limited")
        assert resp.headers["Retry-After"] == "1"
    assert problem["retry_after"] == 1
    # Another tenant has its own bucket.
    assert [await status_of(team_b, "GET", "/v1/models") for _ in range(2)] == [200, 200]
    # A second of simulated time refills one token.
    await advance(admin, 1)
    assert await status_of(client, "GET", "/v1/pools") == 200
    assert await status_of(client, "GET", "/v1/pools") == 429


async def test_quota_answers_403_quota_exceeded(admin: aiohttp.ClientSession, client: aiohttp.ClientSession) -> None:
    await add_rule(admin, {"match": {"operation": "allocate"}, "action": {"type": "quota"}})
    async with client.post("/v1/allocate", json=ALLOCATE_QWEN) as resp:
        await expect_problem(resp, 403, "quota_exceeded")
    assert await allocation_ids(client) == []


# ---- gpu_fail ------------------------------------------------------------------------------------------


async def test_gpu_fail_fails_the_inference_and_every_allocation_on_the_gpu(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    allocs = [await allocate(client, ALLOCATE_QWEN) for _ in range(3)]
    gpu_id = allocs[0]["gpu_id"]
    assert {a["gpu_id"] for a in allocs} == {gpu_id}  # best fit packs them on one GPU
    await add_rule(admin, {"match": {"operation": "inference"}, "action": {"type": "gpu_fail"}})
    async with client.post("/v1/inference", json={"allocation_id": allocs[0]["allocation_id"], "prompt": "hi"}) as r:
        problem = await expect_problem(r, 409, "allocation_not_active")
    assert problem["state"] == "failed"
    for alloc in allocs:
        seen = await _ok_json(client.get(f"/v1/allocate/{alloc['allocation_id']}"))
        assert (seen["state"], seen["end_reason"]) == ("failed", "gpu_failure")
    state = await _ok_json(admin.get("/_admin/state"))
    health = {g["gpu_id"]: g["healthy"] for g in state["gpus"]}
    assert health[gpu_id] is False
    assert sum(1 for healthy in health.values() if not healthy) == 1

    recovered = await _ok_json(admin.post(f"/_admin/gpus/{gpu_id}/recover"))
    assert recovered["gpu"]["healthy"] is True
    state = await _ok_json(admin.get("/_admin/state"))
    assert all(g["healthy"] for g in state["gpus"])


# ---- matching and counting -------------------------------------------------------------------------


async def test_match_operation_restricts_the_rule(admin: aiohttp.ClientSession, client: aiohttp.ClientSession) -> None:
    await add_rule(admin, {"match": {"operation": "models"}, "action": UNAVAILABLE})
    assert await status_of(client, "GET", "/v1/pools") == 200
    assert await status_of(client, "GET", "/v1/models") == 503


async def test_match_pool_id_restricts_the_rule(admin: aiohttp.ClientSession, client: aiohttp.ClientSession) -> None:
    await add_rule(admin, {"match": {"operation": "allocate", "pool_id": "gpu-pool-2"}, "action": UNAVAILABLE})
    assert await status_of(client, "POST", "/v1/allocate", json=ALLOCATE_QWEN) == 201  # gpu-pool-1
    assert await status_of(client, "POST", "/v1/allocate", json=ALLOCATE_GEMMA) == 503  # gpu-pool-2


async def test_match_model_restricts_the_rule(admin: aiohttp.ClientSession, client: aiohttp.ClientSession) -> None:
    await add_rule(admin, {"match": {"operation": "allocate", "model": "gemma-270m"}, "action": UNAVAILABLE})
    assert await status_of(client, "POST", "/v1/allocate", json=ALLOCATE_QWEN) == 201
    assert await status_of(client, "POST", "/v1/allocate", json=GEMMA_ON_POOL_1) == 503  # same pool, other model


async def test_match_tenant_id_restricts_the_rule(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession, team_b: aiohttp.ClientSession
) -> None:
    await add_rule(admin, {"match": {"tenant_id": "team-b"}, "action": UNAVAILABLE})
    assert await status_of(client, "GET", "/v1/pools") == 200
    assert await status_of(team_b, "GET", "/v1/pools") == 503


async def test_times_fires_on_the_first_n_matches_only(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    rule = await add_rule(admin, {"match": {"operation": "pools"}, "times": 1, "action": UNAVAILABLE})
    assert [await status_of(client, "GET", "/v1/pools") for _ in range(3)] == [503, 200, 200]
    counted = (await rules(admin))[rule["id"]]
    assert (counted["matched"], counted["fired"]) == (3, 1)


async def test_skip_lets_the_first_k_matches_pass(admin: aiohttp.ClientSession, client: aiohttp.ClientSession) -> None:
    rule = await add_rule(admin, {"match": {"operation": "pools"}, "skip": 2, "action": UNAVAILABLE})
    assert [await status_of(client, "GET", "/v1/pools") for _ in range(4)] == [200, 200, 503, 503]
    counted = (await rules(admin))[rule["id"]]
    assert (counted["matched"], counted["fired"]) == (4, 2)


async def test_probability_zero_matches_but_never_fires(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    rule = await add_rule(admin, {"match": {"operation": "pools"}, "probability": 0, "action": UNAVAILABLE})
    assert [await status_of(client, "GET", "/v1/pools") for _ in range(5)] == [200] * 5
    counted = (await rules(admin))[rule["id"]]
    assert (counted["matched"], counted["fired"]) == (5, 0)
    assert all(e["fault_id"] is None for e in await journal(admin, operation="pools"))


async def test_window_fires_only_inside_it_on_the_simulator_clock(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    rule = await add_rule(admin, {"match": {"operation": "pools"}, "window_s": [10, 20], "action": UNAVAILABLE})
    seen = [await status_of(client, "GET", "/v1/pools")]  # t = 0
    for step in (10, 9.5, 0.5):  # t = 10, 19.5, 20 (the end is excluded)
        await advance(admin, step)
        seen.append(await status_of(client, "GET", "/v1/pools"))
    assert seen == [200, 503, 503, 200]
    counted = (await rules(admin))[rule["id"]]
    assert (counted["matched"], counted["fired"]) == (2, 2)  # outside the window a request does not match


async def test_phase_before_rules_do_not_act_after(admin: aiohttp.ClientSession, client: aiohttp.ClientSession) -> None:
    before = await add_rule(admin, {"match": {"operation": "allocate"}, "times": 1, "action": UNAVAILABLE})
    after = await add_rule(
        admin, {"match": {"operation": "allocate"}, "phase": "after", "times": 1, "action": UNAVAILABLE}
    )
    # First allocate: the before rule fires, nothing is done, and the after rule never sees it.
    assert await status_of(client, "POST", "/v1/allocate", json=ALLOCATE_QWEN) == 503
    assert await allocation_ids(client) == []
    # Second: the after rule fires on the finished work.
    assert await status_of(client, "POST", "/v1/allocate", json=ALLOCATE_QWEN) == 503
    assert len(await allocation_ids(client)) == 1
    assert await status_of(client, "POST", "/v1/allocate", json=ALLOCATE_QWEN) == 201
    listed = await rules(admin)
    assert (listed[before["id"]]["fired"], listed[after["id"]]["fired"]) == (1, 1)


# ---- removing rules ------------------------------------------------------------------------------------


async def test_deleting_a_rule_stops_it(admin: aiohttp.ClientSession, client: aiohttp.ClientSession) -> None:
    keep = await add_rule(admin, {"match": {"operation": "models"}, "action": UNAVAILABLE})
    gone = await add_rule(admin, {"match": {"operation": "pools"}, "action": UNAVAILABLE})
    assert await status_of(client, "GET", "/v1/pools") == 503
    async with admin.delete(f"/_admin/faults/{gone['id']}") as resp:
        assert resp.status == 204
    assert await status_of(client, "GET", "/v1/pools") == 200
    assert await status_of(client, "GET", "/v1/models") == 503
    assert list(await rules(admin)) == [keep["id"]]


async def test_deleting_all_rules_clears_them(admin: aiohttp.ClientSession, client: aiohttp.ClientSession) -> None:
    await add_rule(admin, {"match": {"operation": "pools"}, "action": UNAVAILABLE})
    await add_rule(admin, {"action": {"type": "rate_limit", "rps": 1, "burst": 1}})
    async with admin.delete("/_admin/faults") as resp:
        assert resp.status == 204
    assert await rules(admin) == {}
    assert [await status_of(client, "GET", "/v1/pools") for _ in range(3)] == [200, 200, 200]


async def test_deleting_an_unknown_rule_is_404(admin: aiohttp.ClientSession) -> None:
    async with admin.delete("/_admin/faults/fault_999999") as resp:
        await expect_problem(resp, 404, "not_found")


# ---- bad admin input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "path", "says"),
    [
        ({"action": {"type": "explode"}}, "/body/action", ""),
        ({"probability": 1.5, "action": {"type": "quota"}}, "/body/probability", "1.5"),
        ({"skip": -1, "action": {"type": "quota"}}, "/body/skip", "-1"),
        ({"times": 0, "action": {"type": "quota"}}, "/body/times", "0"),
        ({"match": {"operation": "pools"}}, "/body", "action"),
    ],
    ids=["unknown-action-type", "probability-above-1", "negative-skip", "times-zero", "missing-action"],
)
async def test_a_bad_rule_is_422_naming_the_field(
    admin: aiohttp.ClientSession, rule: dict[str, Any], path: str, says: str
) -> None:
    async with admin.post("/_admin/faults", json=rule) as resp:
        problem = await expect_problem(resp, 422, "validation_failed")
    assert problem["errors"], problem
    assert problem["errors"][0]["path"] == path
    assert says in problem["errors"][0]["message"]
    assert await rules(admin) == {}


@pytest.mark.parametrize("token", [None, "wrong"], ids=["missing", "wrong"])
async def test_fault_rules_need_the_admin_token(mock: MockHostedAI, token: str | None) -> None:
    headers = {"X-Admin-Token": token} if token is not None else {}
    async with aiohttp.ClientSession(base_url=mock.url, headers=headers) as s:
        async with s.post("/_admin/faults", json={"action": {"type": "quota"}}) as resp:
            await expect_problem(resp, 401, "unauthorized")
        async with s.get("/_admin/faults") as resp:
            await expect_problem(resp, 401, "unauthorized")
    assert mock.sim.faults.rules == []
