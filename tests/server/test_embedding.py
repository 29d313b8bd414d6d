"""`MockHostedAI` as a library: in-process, free loopback port, state in reach."""

from __future__ import annotations

import aiohttp
import pytest

from mock_server import MockHostedAI
from mock_server.sim.clock import ManualClock


async def test_embedded_mock_runs_on_a_free_loopback_port_with_state_in_reach() -> None:
    async with MockHostedAI(clock="manual", seed=3) as mock:
        assert mock.url.startswith("http://127.0.0.1:")
        assert mock.api_key == "dev-key"
        assert isinstance(mock.clock, ManualClock)
        assert mock.sim.seed == 3
        headers = {"Authorization": f"Bearer {mock.api_key}"}
        async with aiohttp.ClientSession() as s:
            body = {"pool_id": "gpu-pool-2", "requirements": {"tflops": 5, "vram_mb": 2048, "model": "gemma-270m"}}
            async with s.post(f"{mock.url}/v1/allocate", json=body, headers=headers) as resp:
                created = await resp.json()
        assert mock.sim.allocations[created["allocation_id"]].tenant_id == "dev"


async def test_two_embedded_mocks_are_independent() -> None:
    async with MockHostedAI(clock="manual") as a, MockHostedAI(clock="manual", tenant="team-b") as b:
        assert a.url != b.url
        assert b.api_key == "team-b-key"
        assert a.sim is not b.sim


async def test_advance_needs_the_manual_clock() -> None:
    async with MockHostedAI(clock="real") as mock:
        with pytest.raises(RuntimeError, match="manual clock"):
            mock.advance(1)


def test_unknown_tenant_is_refused() -> None:
    with pytest.raises(ValueError, match="no tenant 'nobody'"):
        MockHostedAI(tenant="nobody")
