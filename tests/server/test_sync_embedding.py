"""`MockHostedAI` from synchronous code: `with`, and `@mock` on sync and async functions. The server runs
on an event loop of its own in a background thread, so a blocking client (requests) is served."""

from __future__ import annotations

import asyncio
import socket
import threading

import aiohttp
import pytest
import requests

from harness.control_plane import SyncControlPlane
from mock_server import MockHostedAI

GEMMA = {"pool_id": "gpu-pool-2", "requirements": {"tflops": 5, "vram_mb": 2048, "model": "gemma-270m"}}


def _threads() -> set[str]:
    return {thread.name for thread in threading.enumerate()}


def test_with_serves_blocking_clients_from_a_thread_and_stops_after_the_block() -> None:
    before = _threads()
    with MockHostedAI(clock="manual", seed=4) as mock:
        assert "MockHostedAI-loop" in _threads()
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {mock.api_key}"
        created = http.post(f"{mock.url}/v1/allocate", json={**GEMMA, "ttl_seconds": 60})
        assert created.status_code == 201
        allocation_id = created.json()["allocation_id"]
        assert mock.advance(61) == pytest.approx(61)  # on the server's thread
        assert http.get(f"{mock.url}/v1/allocate/{allocation_id}").json()["state"] == "expired"
        assert mock.sim.allocations[allocation_id].state.value == "expired"
        url = mock.url
    assert _threads() == before
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/health", timeout=5)


def test_the_control_plane_client_drives_a_threaded_mock() -> None:
    with MockHostedAI(clock="manual") as mock:
        admin = SyncControlPlane(mock.url, mock.admin_token or "")
        admin.add_fault({"match": {"operation": "pools"}, "times": 1, "action": {"type": "quota"}})
        headers = {"Authorization": f"Bearer {mock.api_key}"}
        assert requests.get(f"{mock.url}/v1/pools", headers=headers).status_code == 403
        assert requests.get(f"{mock.url}/v1/pools", headers=headers).status_code == 200
        assert [entry["status"] for entry in admin.journal(operation="pools")] == [403, 200]
        admin.reset()
        assert admin.journal() == []


def test_a_mock_decorates_a_sync_function_and_runs_afresh_for_each_call() -> None:
    mock = MockHostedAI(clock="manual")
    seen: list[tuple[str, int]] = []

    @mock
    def allocate_once(tag: str) -> str:
        headers = {"Authorization": f"Bearer {mock.api_key}"}
        requests.post(f"{mock.url}/v1/allocate", json={**GEMMA, "labels": {"tag": tag}}, headers=headers)
        seen.append((mock.url, len(mock.sim.allocations)))
        return tag

    assert allocate_once("a") == "a"
    assert allocate_once("b") == "b"
    assert [count for _, count in seen] == [1, 1]  # a fresh simulator each time
    assert allocate_once.__name__ == "allocate_once"


def test_a_mock_decorates_an_async_function_on_the_callers_loop() -> None:
    mock = MockHostedAI(clock="manual")

    @mock
    async def health() -> int:
        async with aiohttp.ClientSession() as http, http.get(f"{mock.url}/health") as resp:
            return resp.status

    assert asyncio.run(health()) == 200
    assert "MockHostedAI-loop" not in _threads()


def test_a_failed_start_raises_and_leaves_no_thread_behind() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = _threads()
        with pytest.raises(OSError, match="address already in use"), MockHostedAI(port=port):
            pass
        assert _threads() == before


def test_one_with_at_a_time() -> None:
    mock = MockHostedAI()
    with mock, pytest.raises(RuntimeError, match="already running in a thread"), mock:
        pass
