"""The control plane over HTTP: state, reset, clock, journal, leaks, GPU failure, determinism."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from harness.control_plane import ControlPlane
from mock_server import MockHostedAI
from mock_server.api.app import create_app
from mock_server.config import ConfigError
from tests.conftest import ALLOCATE_GEMMA, ALLOCATE_QWEN, config_with
from tests.helpers import allocate, expect_problem


@pytest.fixture
async def admin(mock: MockHostedAI) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=mock.url, headers={"X-Admin-Token": mock.admin_token or ""}) as s:
        yield s


async def _json(resp_cm: Any) -> Any:
    async with resp_cm as resp:
        assert resp.status < 300, await resp.text()
        return await resp.json()


async def test_admin_needs_its_token(mock: MockHostedAI, client: aiohttp.ClientSession) -> None:
    async with client.get("/_admin/state") as resp:
        await expect_problem(resp, 401, "unauthorized")
    async with client.get("/_admin/state", headers={"X-Admin-Token": "wrong"}) as resp:
        await expect_problem(resp, 401, "unauthorized")


async def test_without_an_admin_token_there_is_no_control_plane(session_for: type) -> None:
    config = config_with(server=lambda s: {**s, "admin_token": None})
    async with (
        MockHostedAI(config, clock="manual") as mock,
        session_for(mock.url, None) as s,
        s.get("/_admin/state", headers={"X-Admin-Token": "dev-admin"}) as resp,
    ):
        await expect_problem(resp, 404, "not_found")


async def test_state_shows_pools_gpus_allocations_clock_rules_and_seed(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    created = await allocate(client, ALLOCATE_QWEN)
    await _json(admin.post("/_admin/faults", json={"match": {"operation": "usage"}, "action": {"type": "quota"}}))
    state = await _json(admin.get("/_admin/state"))
    assert state["seed"] == 7
    assert state["clock"] == {"kind": "manual", "now_s": 0.0, "time_scale": 0.0, "now": "2026-01-01T00:00:00.000Z"}
    assert [a["allocation_id"] for a in state["allocations"]] == [created["allocation_id"]]
    gpu = next(g for g in state["gpus"] if g["gpu_id"] == created["gpu_id"])
    assert gpu["allocations"] == [created["allocation_id"]]
    assert (gpu["healthy"], gpu["vram_mb_allocated"]) == (True, 20480)
    assert len(state["gpus"]) == 12
    assert [r["action"]["type"] for r in state["rules"]] == ["quota"]


async def test_reset_goes_back_to_the_config_with_a_new_seed(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession, mock: MockHostedAI
) -> None:
    await allocate(client, ALLOCATE_QWEN)
    mock.advance(100)
    await _json(admin.post("/_admin/faults", json={"action": {"type": "quota"}}))
    state = await _json(admin.post("/_admin/reset", json={"seed": 99}))
    assert state["seed"] == 99
    assert state["allocations"] == []
    assert state["rules"] == []
    assert state["clock"]["now_s"] == 0.0
    assert state["journal_entries"] == 0
    async with client.get("/v1/usage") as resp:
        assert (await resp.json())["records"] == []
    # Without a seed: back to the configured one.
    assert (await _json(admin.post("/_admin/reset")))["seed"] == 7


async def test_clock_advance_expires_leases_and_needs_the_manual_clock(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession, session_for: type
) -> None:
    created = await allocate(client, {**ALLOCATE_GEMMA, "ttl_seconds": 3600})
    clock = await _json(admin.post("/_admin/clock/advance", json={"seconds": 3601}))
    assert clock["now_s"] == 3601
    assert clock["now"] == "2026-01-01T01:00:01.000Z"
    async with client.get(f"/v1/allocate/{created['allocation_id']}") as resp:
        assert (await resp.json())["state"] == "expired"
    async with MockHostedAI(clock="real") as real, session_for(real.url, None) as s:
        headers = {"X-Admin-Token": real.admin_token or ""}
        async with s.post("/_admin/clock/advance", json={"seconds": 1}, headers=headers) as resp:
            await expect_problem(resp, 409, "clock_not_manual")


async def test_clock_advance_ends_a_queued_allocate(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession, mock: MockHostedAI
) -> None:
    big = {"pool_id": "gpu-pool-2", "requirements": {"tflops": 30, "vram_mb": 20480, "model": "qwen-30b"}}
    for _ in range(4):
        await allocate(client, big)
    queued = asyncio.create_task(client.post("/v1/allocate", json={**big, "wait_seconds": 5}))
    for _ in range(1000):
        if mock.state.waiters.waiting:
            break
        await asyncio.sleep(0)
    await _json(admin.post("/_admin/clock/advance", json={"seconds": 6}))
    resp = await asyncio.wait_for(queued, timeout=10)
    await expect_problem(resp, 503, "capacity_exhausted")


async def test_journal_records_each_request_and_filters(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession, team_b: aiohttp.ClientSession
) -> None:
    created = await allocate(client, ALLOCATE_QWEN, headers={"Idempotency-Key": "k-1"})
    async with client.delete(f"/v1/allocate/{created['allocation_id']}"):
        pass
    async with team_b.get(f"/v1/allocate/{created['allocation_id']}"):
        pass
    entries = (await _json(admin.get("/_admin/journal")))["entries"]
    assert [(e["operation"], e["status"], e["tenant_id"]) for e in entries] == [
        ("allocate", 201, "dev"),
        ("release", 204, "dev"),
        ("status", 404, "team-b"),
    ]
    first = entries[0]
    assert first["allocation_id"] == created["allocation_id"]
    assert first["idempotency_key"] == "k-1"
    assert (first["method"], first["path"], first["at"], first["fault_id"]) == ("POST", "/v1/allocate", 0.0, None)
    assert first["duration_ms"] >= 0
    assert [e["seq"] for e in entries] == [1, 2, 3]

    only_release = (await _json(admin.get("/_admin/journal", params={"operation": "release"})))["entries"]
    assert [e["seq"] for e in only_release] == [2]
    by_status = (await _json(admin.get("/_admin/journal", params={"status": "404"})))["entries"]
    assert [e["seq"] for e in by_status] == [3]
    by_tenant = (await _json(admin.get("/_admin/journal", params={"tenant_id": "dev"})))["entries"]
    assert [e["seq"] for e in by_tenant] == [1, 2]
    after_mark = (await _json(admin.get("/_admin/journal", params={"since_seq": "2"})))["entries"]
    assert [e["seq"] for e in after_mark] == [3]
    by_alloc = await _json(admin.get("/_admin/journal", params={"allocation_id": created["allocation_id"]}))
    assert len(by_alloc["entries"]) == 3


async def test_journal_clears_and_keeps_counting(admin: aiohttp.ClientSession, client: aiohttp.ClientSession) -> None:
    async with client.get("/v1/pools"):
        pass
    async with admin.delete("/_admin/journal") as resp:
        assert resp.status == 204
    async with client.get("/v1/models"):
        pass
    entries = (await _json(admin.get("/_admin/journal")))["entries"]
    assert [(e["seq"], e["operation"]) for e in entries] == [(2, "models")]


async def test_journal_is_a_bounded_ring_buffer(session_for: type) -> None:
    config = config_with(simulation=lambda s: {**s, "journal_size": 3})
    async with MockHostedAI(config, clock="manual") as mock, session_for(mock.url, mock.api_key) as client:
        for _ in range(5):
            async with client.get("/v1/pools"):
                pass
        async with client.get("/_admin/journal", headers={"X-Admin-Token": "dev-admin"}) as resp:
            entries = (await resp.json())["entries"]
    assert [e["seq"] for e in entries] == [3, 4, 5]


async def test_journal_and_state_come_in_pages_the_control_plane_client_follows(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession, mock: MockHostedAI
) -> None:
    for _ in range(5):
        await allocate(client, ALLOCATE_GEMMA)
    first = await _json(admin.get("/_admin/journal", params={"limit": "2"}))
    assert [e["seq"] for e in first["entries"]] == [1, 2]
    assert first["next_since_seq"] == 2
    last = await _json(admin.get("/_admin/journal", params={"since_seq": "4"}))
    assert ([e["seq"] for e in last["entries"]], last["next_since_seq"]) == ([5], None)
    page = await _json(admin.get("/_admin/state", params={"limit": "2"}))
    assert len(page["allocations"]) == 2
    assert page["next_cursor"] is not None
    async with ControlPlane(mock.url, "dev-admin") as control:
        assert len((await control.state())["allocations"]) == 5
        assert [e["seq"] for e in await control.journal()] == [1, 2, 3, 4, 5]


async def test_leak_report_lists_forgotten_and_expired_allocations(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession, team_b: aiohttp.ClientSession, mock: MockHostedAI
) -> None:
    kept = await allocate(client, ALLOCATE_GEMMA, headers={"X-Request-Id": "made-by-test"})
    released = await allocate(client, ALLOCATE_GEMMA)
    expired = await allocate(client, {**ALLOCATE_GEMMA, "ttl_seconds": 10})
    theirs = await allocate(team_b, ALLOCATE_GEMMA)
    async with client.delete(f"/v1/allocate/{released['allocation_id']}"):
        pass
    mock.advance(30)
    leaks = (await _json(admin.get("/_admin/leaks")))["leaks"]
    assert [(leak["allocation_id"], leak["reason"], leak["state"]) for leak in leaks] == [
        (kept["allocation_id"], "still_active", "active"),
        (expired["allocation_id"], "expired_unreleased", "expired"),
        (theirs["allocation_id"], "still_active", "active"),
    ]
    assert leaks[0]["request_id"] == "made-by-test"
    assert leaks[0]["age_s"] == 30
    graced = (await _json(admin.get("/_admin/leaks", params={"grace_s": "60", "tenant_id": "dev"})))["leaks"]
    assert [leak["allocation_id"] for leak in graced] == [expired["allocation_id"]]


async def test_failing_a_gpu_fails_its_allocations_and_recovery_restores_it(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    created = await allocate(client, ALLOCATE_QWEN)
    gpu_id = created["gpu_id"]
    event = await _json(admin.post(f"/_admin/gpus/{gpu_id}/fail"))
    assert event["failed_allocations"] == [created["allocation_id"]]
    assert event["gpu"]["healthy"] is False
    async with client.get(f"/v1/allocate/{created['allocation_id']}") as resp:
        body = await resp.json()
    assert (body["state"], body["end_reason"]) == ("failed", "gpu_failure")
    async with client.post("/v1/inference", json={"allocation_id": created["allocation_id"], "prompt": "x"}) as resp:
        problem = await expect_problem(resp, 409, "allocation_not_active")
    assert problem["state"] == "failed"
    async with client.get("/v1/pools/gpu-pool-1") as resp:
        assert (await resp.json())["gpus"] == 7
    again = await allocate(client, ALLOCATE_QWEN)
    assert again["gpu_id"] != gpu_id
    recovered = await _json(admin.post(f"/_admin/gpus/{gpu_id}/recover"))
    assert recovered["gpu"]["healthy"] is True
    async with admin.post("/_admin/gpus/gpu-pool-9-gpu-0/fail") as resp:
        await expect_problem(resp, 404, "not_found")


async def test_bad_admin_input_is_422_naming_the_field(admin: aiohttp.ClientSession) -> None:
    async with admin.post("/_admin/clock/advance", json={"seconds": -1}) as resp:
        problem = await expect_problem(resp, 422, "validation_failed")
    assert problem["errors"][0]["path"] == "/body/seconds"
    async with admin.get("/_admin/journal", params={"operation": "dance"}) as resp:
        problem = await expect_problem(resp, 422, "validation_failed")
    assert problem["errors"][0]["path"] == "/query/operation"


async def test_faults_from_the_config_file_apply_from_the_start(session_for: type) -> None:
    rule = {"match": {"operation": "pools"}, "action": {"type": "error", "status": 503, "code": "unavailable"}}
    config = config_with(faults=[rule])
    async with MockHostedAI(config, clock="manual") as mock, session_for(mock.url, mock.api_key) as client:
        async with client.get("/v1/pools") as resp:
            await expect_problem(resp, 503, "unavailable")
        async with client.get("/_admin/faults", headers={"X-Admin-Token": "dev-admin"}) as resp:
            (listed,) = (await resp.json())["rules"]
        async with client.get("/metrics") as resp:
            metrics = await resp.text()
    assert (listed["source"], listed["fired"]) == ("config", 1)
    assert 'hostedai_sim_faults_injected_total{action="error",operation="pools"} 1.0' in metrics


def test_a_bad_fault_rule_in_the_config_is_one_line_naming_the_key() -> None:
    config = config_with(faults=[{"action": {"type": "error", "status": 503, "code": "unavailable"}, "probability": 2}])
    with pytest.raises(ConfigError, match=r"^config key faults\[0\]\.probability: 2 is greater than the maximum of 1$"):
        create_app(config)


def test_an_unknown_scenario_in_the_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no scenario 'nope'"):
        create_app(config_with(scenarios=["nope"]))


async def _run_sequence(seed: int) -> list[Any]:
    """A fixed sequence of requests against a fresh mock, with probabilistic faults on: what the client
    saw (statuses, outputs, simulated timings), then the journal."""
    seen: list[Any] = []
    async with MockHostedAI(clock="manual", seed=seed) as mock:
        async with aiohttp.ClientSession(base_url=mock.url, headers={"X-Admin-Token": "dev-admin"}) as admin:
            await _json(admin.post("/_admin/scenarios/flaky-5xx"))
            await _json(
                admin.post(
                    "/_admin/faults",
                    json={
                        "probability": 0.3,
                        "action": {"type": "delay", "distribution": "lognormal", "median_ms": 100, "sigma": 1},
                    },
                )
            )
        async with aiohttp.ClientSession(base_url=mock.url, headers={"Authorization": f"Bearer {mock.api_key}"}) as c:
            ids: list[str] = []
            for i in range(30):
                async with c.post("/v1/allocate", json=ALLOCATE_GEMMA) as resp:
                    seen.append((resp.status, await resp.read()))
                    if resp.status == 201:
                        ids.append((await resp.json())["allocation_id"])
                for alloc_id in ids[-2:]:
                    body = {"allocation_id": alloc_id, "prompt": f"question {i}", "max_tokens": 20}
                    async with c.post("/v1/inference", json=body) as resp:
                        seen.append((resp.status, await resp.read()))
                mock.advance(1.5)
        async with aiohttp.ClientSession(base_url=mock.url, headers={"X-Admin-Token": "dev-admin"}) as admin:
            entries: list[dict[str, Any]] = (await _json(admin.get("/_admin/journal")))["entries"]
            usage = mock.sim.usage("dev")
    for entry in entries:
        del entry["duration_ms"]  # the only wall-clock field
    return [*seen, *entries, repr(usage)]


async def test_same_seed_same_requests_same_journal_byte_for_byte() -> None:
    first, second = await _run_sequence(5), await _run_sequence(5)
    assert first == second
    journal = [e for e in first if isinstance(e, dict)]
    assert any(e["fault_id"] for e in journal)  # faults did fire, and fired identically
    assert any(status == 200 for status, _ in (e for e in first if isinstance(e, tuple)))
    other = await _run_sequence(6)
    assert other != first


async def test_ids_never_repeat_across_restarts_and_resets_unless_seeded() -> None:
    async def ids(seed: int | None) -> list[str]:
        found = []
        async with MockHostedAI(clock="manual", seed=seed) as mock:
            for _ in range(2):
                async with aiohttp.ClientSession(
                    base_url=mock.url, headers={"Authorization": f"Bearer {mock.api_key}"}
                ) as client:
                    alloc = await allocate(client, ALLOCATE_GEMMA)
                    async with client.get("/health") as resp:
                        found += [alloc["allocation_id"], resp.headers["X-Request-Id"]]
                    async with client.post("/_admin/reset", headers={"X-Admin-Token": "dev-admin"}) as resp:
                        assert resp.status == 200
        return found

    unseeded = [*await ids(None), *await ids(None)]  # two runs, two resets each
    assert len(set(unseeded)) == len(unseeded) == 8
    assert await ids(5) == await ids(5)  # a seeded run replays, ids included


async def test_reset_on_the_real_clock_continues_from_the_wall_clock() -> None:
    async with (
        MockHostedAI(clock="real") as mock,
        aiohttp.ClientSession(base_url=mock.url, headers={"X-Admin-Token": "dev-admin"}) as admin,
    ):
        await asyncio.sleep(0.3)
        before = (await _json(admin.get("/_admin/state")))["clock"]["now"]
        after = (await _json(admin.post("/_admin/reset")))["clock"]["now"]
    assert after >= before  # RFC 3339 in UTC with a fixed width: compared as text


async def test_an_allocation_just_made_is_a_leak_at_grace_0_on_the_manual_clock(
    admin: aiohttp.ClientSession, client: aiohttp.ClientSession
) -> None:
    held = await allocate(client, ALLOCATE_GEMMA)
    # No simulated time has passed: age 0 is not "past" grace 0, but it is still held.
    leaks = (await _json(admin.get("/_admin/leaks", params={"grace_s": "0"})))["leaks"]
    assert [(leak["allocation_id"], leak["reason"], leak["age_s"]) for leak in leaks] == [
        (held["allocation_id"], "still_active", 0)
    ]
