"""What a client with a request in flight meets when its allocation ends under it, as its pool says:
the typed 409 (an SSE `error` event), a reset connection, a stream cut without `done` (a plain answer
cut short), or a 502 — after the preemption's grace period, if it has one."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from harness.control_plane import ControlPlane
from mock_server import MockHostedAI
from tests.conftest import SLOW_PROFILE, config_with, slow_config
from tests.helpers import allocate

SMALL_QWEN = {"pool_id": "gpu-pool-2", "requirements": {"tflops": 30, "vram_mb": 20480, "model": "qwen-30b"}}


def _config(on_end: dict[str, Any], key: str) -> Any:
    return slow_config(
        pools=lambda pools: [{**pools[1], "gpus": 1, key: on_end}],
        models=lambda models: {name: {**m, "pools": ["gpu-pool-2"]} for name, m in models.items()},
    )


async def _fail_gpu_under(mock: MockHostedAI, client: aiohttp.ClientSession, stream: bool) -> aiohttp.ClientResponse:
    alloc = await allocate(client, SMALL_QWEN)
    body = {"allocation_id": alloc["allocation_id"], "prompt": "hi", "max_tokens": 5, "stream": stream}
    running = asyncio.create_task(client.post("/v1/inference", json=body))
    await _until_inflight(mock, alloc["allocation_id"])
    if stream:
        response = await running
        await response.content.readline()  # the first token's event is under way
        async with ControlPlane(mock.url, mock.admin_token or "") as admin:
            await admin.fail_gpu(alloc["gpu_id"])
        return response
    async with ControlPlane(mock.url, mock.admin_token or "") as admin:
        await admin.fail_gpu(alloc["gpu_id"])
    return await asyncio.wait_for(running, timeout=30)


async def _until_inflight(mock: MockHostedAI, allocation_id: str) -> None:
    for _ in range(10_000):
        if mock.sim.allocations[allocation_id].inflight:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the inference never started")


def _client(mock: MockHostedAI) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(base_url=mock.url, headers={"Authorization": f"Bearer {mock.api_key}"})


@pytest.mark.parametrize("wire", ["event", "error_5xx"])
async def test_a_plain_request_on_a_failed_gpu_gets_the_pools_answer(wire: str) -> None:
    async with MockHostedAI(_config({"wire": wire}, "on_gpu_failure"), clock="real") as mock, _client(mock) as client:
        response = await _fail_gpu_under(mock, client, stream=False)
        answer = await response.json()
    assert (response.status, answer["code"]) == (
        (409, "allocation_not_active") if wire == "event" else (502, "bad_gateway")
    )


async def test_a_cut_connection_is_what_a_client_meets_on_a_failed_gpu() -> None:
    async with MockHostedAI(_config({"wire": "cut"}, "on_gpu_failure"), clock="real") as mock, _client(mock) as client:
        with pytest.raises(aiohttp.ClientError):
            await (await _fail_gpu_under(mock, client, stream=False)).read()
        (entry,) = await ControlPlane(mock.url, mock.admin_token or "").journal(operation="inference")
    assert entry["status"] is None  # no status line ever went out


async def test_a_truncated_plain_answer_is_cut_short_under_its_length() -> None:
    async with (
        MockHostedAI(_config({"wire": "truncate"}, "on_gpu_failure"), clock="real") as mock,
        _client(mock) as client,
    ):
        response = await _fail_gpu_under(mock, client, stream=False)
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


@pytest.mark.parametrize(("wire", "ends_with"), [("event", "error"), ("truncate", None), ("cut", None)])
async def test_a_stream_on_a_failed_gpu_ends_as_the_pool_says(wire: str, ends_with: str | None) -> None:
    async with MockHostedAI(_config({"wire": wire}, "on_gpu_failure"), clock="real") as mock, _client(mock) as client:
        response = await _fail_gpu_under(mock, client, stream=True)
        names = []
        try:
            async for line in response.content:
                if line.startswith(b"event: "):
                    names.append(line[7:].strip().decode())
        except aiohttp.ClientError:
            names.append("(connection broke)")
    assert "done" not in names
    if ends_with is not None:
        assert names[-1] == ends_with
    else:
        assert "error" not in names


async def test_a_preempted_allocation_serves_out_its_grace_then_the_client_meets_the_cut() -> None:
    config = _config({"grace_s": 0.2, "wire": "cut"}, "on_preemption")
    async with MockHostedAI(config, clock="real") as mock, _client(mock) as client:
        low = await allocate(client, {**SMALL_QWEN, "overcommit": True, "priority": 1})
        body = {"allocation_id": low["allocation_id"], "prompt": "hi", "max_tokens": 5}
        running = asyncio.create_task(client.post("/v1/inference", json=body))
        await _until_inflight(mock, low["allocation_id"])
        high = await allocate(client, {**SMALL_QWEN, "overcommit": True, "priority": 9})
        assert high["state"] == "provisioning"  # its GPU is the victim's until the grace ends
        assert mock.sim.allocations[low["allocation_id"]].active
        with pytest.raises(aiohttp.ClientError):
            await (await asyncio.wait_for(running, timeout=30)).read()
        async with client.get(f"/v1/allocate/{low['allocation_id']}") as got:
            victim = await got.json()
    assert (victim["state"], victim["preempted_by"]) == ("preempted", high["allocation_id"])


def _slow_frontend_config(on_end: dict[str, Any]) -> Any:
    # The frontend's share of every request lasts a minute: the GPU fails before the request reaches
    # its model server, whatever the machine's speed.
    profile = {**SLOW_PROFILE, "request_overhead_ms": 60_000}
    return config_with(
        pools=lambda pools: [{**pools[1], "gpus": 1, "on_gpu_failure": on_end}],
        models=lambda models: {
            name: {**m, "pools": ["gpu-pool-2"], "serving": dict.fromkeys(m["serving"], "slow-frontend")}
            for name, m in models.items()
        },
        serving_profiles={"slow-frontend": profile},
    )


@pytest.mark.parametrize(("wire", "stream"), [("truncate", False), ("error_5xx", False), ("truncate", True)])
async def test_a_request_whose_gpu_fails_before_it_reaches_the_model_server_meets_what_the_pool_says(
    wire: str, stream: bool
) -> None:
    # It once met the typed 409 whatever the pool said: a client cannot tell the frontend's share from
    # the model server's, and the pool's answer to a failed GPU is the same for both.
    async with MockHostedAI(_slow_frontend_config({"wire": wire}), clock="real") as mock, _client(mock) as client:
        alloc = await allocate(client, SMALL_QWEN)
        body = {"allocation_id": alloc["allocation_id"], "prompt": "hi", "max_tokens": 5, "stream": stream}
        running = asyncio.create_task(client.post("/v1/inference", json=body))
        await _until_inflight(mock, alloc["allocation_id"])
        async with ControlPlane(mock.url, mock.admin_token or "") as admin:
            await admin.fail_gpu(alloc["gpu_id"])
        response = await asyncio.wait_for(running, timeout=30)
        if wire == "error_5xx":
            assert (response.status, (await response.json())["code"]) == (502, "bad_gateway")
        elif stream:
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):  # a stream that stops, without `done`
                await response.read()
        else:
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
        assert mock.sim.allocations[alloc["allocation_id"]].inflight == 0
