"""Strict mode: a response that breaks the contract becomes a loud 500, never a silent lie."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from mock_server import MockHostedAI
from mock_server.api import render
from mock_server.api.app import check_routes
from mock_server.api.contract import Contract
from mock_server.api.handlers import HANDLERS
from tests.conftest import ALLOCATE_QWEN


async def test_a_response_violating_the_contract_is_a_500_and_a_log_line(
    client: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_pool = render.pool

    def broken_pool(stats: Any) -> dict[str, Any]:
        body = real_pool(stats)
        body["gpus"] = "eight"
        return body

    monkeypatch.setattr(render, "pool", broken_pool)
    async with client.get("/v1/pools/gpu-pool-1") as resp:
        assert resp.status == 500
        problem = await resp.json(content_type=None)
    assert problem["code"] == "internal_error"
    assert "/body/gpus" in problem["detail"]
    assert any("STRICT MODE" in r.message and "getPool" in r.message for r in caplog.records)


async def test_an_undocumented_status_is_caught(client: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    from aiohttp import web

    async def teapot(request: web.Request, call: Any) -> web.StreamResponse:
        return web.json_response({}, status=418)

    monkeypatch.setitem(HANDLERS, "listModels", teapot)
    async with MockHostedAI(clock="manual") as mock, aiohttp.ClientSession(base_url=mock.url) as s:
        headers = {"Authorization": f"Bearer {mock.api_key}"}
        async with s.get("/v1/models", headers=headers) as resp:
            assert resp.status == 500
            assert "status 418 is not documented" in (await resp.json(content_type=None))["detail"]


async def test_without_strict_mode_the_response_goes_out_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "pool", lambda stats: {"pool_id": stats.pool_id})
    async with (
        MockHostedAI(clock="manual", strict=False) as mock,
        aiohttp.ClientSession() as s,
        s.get(f"{mock.url}/v1/pools/gpu-pool-1", headers={"Authorization": f"Bearer {mock.api_key}"}) as resp,
    ):
        assert resp.status == 200
        assert await resp.json() == {"pool_id": "gpu-pool-1"}


async def test_strict_mode_passes_conforming_answers(client: aiohttp.ClientSession) -> None:
    async with client.post("/v1/allocate", json=ALLOCATE_QWEN) as resp:
        assert resp.status == 201


def test_every_operation_has_a_handler_and_every_handler_an_operation() -> None:
    contract = Contract.load()
    check_routes(contract, HANDLERS)
    assert set(contract.operations) == set(HANDLERS)
    with pytest.raises(RuntimeError, match="no handler for \\['getPool'\\]"):
        check_routes(contract, {k: v for k, v in HANDLERS.items() if k != "getPool"})
    with pytest.raises(RuntimeError, match="no operation for \\['extra'\\]"):
        check_routes(contract, {**HANDLERS, "extra": HANDLERS["getPool"]})
