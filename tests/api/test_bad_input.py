"""Bad input of every kind gets its documented 4xx problem, never a 500."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from mock_server import MockHostedAI
from tests.conftest import ALLOCATE_GEMMA, ALLOCATE_QWEN, config_with
from tests.helpers import expect_problem


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic ZGV2OmRldi1rZXk=", "Bearer", "dev-key"])
async def test_missing_or_unknown_key_is_401(mock: MockHostedAI, session_for: type, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    async with session_for(mock.url, None) as anon, anon.get("/v1/pools", headers=headers) as resp:
        await expect_problem(resp, 401, "unauthorized")
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_every_key_of_a_tenant_works(session_for: type) -> None:
    config = config_with(tenants=lambda t: {**t, "dev": {**t["dev"], "api_keys": ["old-key", "new-key"]}})
    async with MockHostedAI(config, clock="manual") as mock:
        for key in ("old-key", "new-key"):
            async with session_for(mock.url, key) as client, client.get("/v1/allocate") as resp:
                assert resp.status == 200


async def test_open_endpoints_need_no_key(anonymous: aiohttp.ClientSession) -> None:
    for path in ("/health", "/metrics", "/openapi.yaml", "/openapi.json"):
        async with anonymous.get(path) as resp:
            assert resp.status == 200, path


async def test_malformed_json_is_400(client: aiohttp.ClientSession) -> None:
    for raw in (b"{bad", b"", b"   ", b'{"a": NaN}', b"\xff\xfe"):
        async with client.post("/v1/allocate", data=raw, headers={"Content-Type": "application/json"}) as resp:
            await expect_problem(resp, 400, "invalid_request")


async def test_wrong_content_type_is_415(client: aiohttp.ClientSession) -> None:
    async with client.post("/v1/allocate", data="pool_id=gpu-pool-1", headers={"Content-Type": "text/plain"}) as resp:
        await expect_problem(resp, 415, "unsupported_media_type")


async def test_a_huge_body_is_413(client: aiohttp.ClientSession) -> None:
    body = {"allocation_id": "alloc_0000000000000000", "prompt": "x" * 2_000_000}
    async with client.post("/v1/inference", json=body) as resp:
        await expect_problem(resp, 413, "payload_too_large")


async def test_a_huge_chunked_body_is_413(client: aiohttp.ClientSession) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b"x" * 65536

    async with client.post("/v1/inference", data=chunks(), headers={"Content-Type": "application/json"}) as resp:
        await expect_problem(resp, 413, "payload_too_large")


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"requirements": ALLOCATE_QWEN["requirements"]}, "/body"),
        ({**ALLOCATE_QWEN, "pool_id": 7}, "/body/pool_id"),
        (
            {**ALLOCATE_QWEN, "requirements": {"tflops": -1, "vram_mb": 1, "model": "qwen-30b"}},
            "/body/requirements/tflops",
        ),
        (
            {**ALLOCATE_QWEN, "requirements": {"tflops": 1, "vram_mb": "lots", "model": "qwen-30b"}},
            "/body/requirements/vram_mb",
        ),
        ({**ALLOCATE_QWEN, "priority": 10}, "/body/priority"),
        ({**ALLOCATE_QWEN, "wait_seconds": 31}, "/body/wait_seconds"),
        ({**ALLOCATE_QWEN, "labels": {"k": 1}}, "/body/labels/k"),
        ({**ALLOCATE_QWEN, "vram_gb": 20}, "/body"),
        ([ALLOCATE_QWEN], "/body"),
    ],
)
async def test_wrong_types_and_missing_fields_are_422_with_paths(
    client: aiohttp.ClientSession, body: object, path: str
) -> None:
    async with client.post("/v1/allocate", json=body) as resp:
        problem = await expect_problem(resp, 422, "validation_failed")
    assert path in [e["path"] for e in problem["errors"]]


async def test_a_bad_idempotency_key_is_422(client: aiohttp.ClientSession) -> None:
    async with client.post("/v1/allocate", json=ALLOCATE_QWEN, headers={"Idempotency-Key": "x" * 256}) as resp:
        problem = await expect_problem(resp, 422, "validation_failed")
    assert problem["errors"][0]["path"] == "/header/Idempotency-Key"


async def test_lone_surrogates_are_4xx_not_500(client: aiohttp.ClientSession) -> None:
    raw = b'{"pool_id": "\\ud800", "requirements": {"tflops": 1, "vram_mb": 1, "model": "m"}}'
    async with client.post("/v1/allocate", data=raw, headers={"Content-Type": "application/json"}) as resp:
        await expect_problem(resp, 400, "invalid_request")
    # Non-ASCII bytes in a header (decoded with surrogate escapes when not UTF-8) fail validation.
    async with client.post("/v1/allocate", json={}, headers={"Idempotency-Key": "café"}) as resp:
        await expect_problem(resp, 422, "validation_failed")


async def test_unknown_path_is_a_404_problem(client: aiohttp.ClientSession) -> None:
    async with client.get("/v2/nothing") as resp:
        await expect_problem(resp, 404, "not_found")


async def test_unsupported_method_is_405_with_allow(client: aiohttp.ClientSession) -> None:
    async with client.put("/v1/allocate") as resp:
        await expect_problem(resp, 405, "method_not_allowed")
        assert set(resp.headers["Allow"].split(", ")) == {"GET", "POST"}


async def test_request_id_is_echoed_or_generated(client: aiohttp.ClientSession) -> None:
    async with client.get("/v1/pools", headers={"X-Request-Id": "trace-123"}) as resp:
        assert resp.headers["X-Request-Id"] == "trace-123"
    async with client.get("/v1/pools", headers={"X-Request-Id": "bad id with spaces"}) as resp:
        assert resp.headers["X-Request-Id"].startswith("req_")
    async with client.get("/v1/nothing") as resp:
        generated = resp.headers["X-Request-Id"]
        assert generated.startswith("req_")
        assert (await resp.json(content_type=None))["request_id"] == generated


async def _send_half_a_body_and_hang_up(url: str, head: bytes) -> None:
    host, port = url.removeprefix("http://").split(":")[:2]
    _reader, writer = await asyncio.open_connection(host, int(port.split("/")[0]))
    writer.write(head + b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"pool_id": ')
    await writer.drain()
    await asyncio.sleep(0.1)  # the handler is reading the body now
    writer.close()


async def test_a_client_that_hangs_up_mid_body_is_not_a_500(
    mock: MockHostedAI, anonymous: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await _send_half_a_body_and_hang_up(
        mock.url, b"POST /v1/allocate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + mock.api_key.encode() + b"\r\n"
    )
    for _ in range(100):  # the server notices the hang-up on its next turn of the loop
        entries, _ = mock.state.journal.query(operation="allocate")
        if entries:
            break
        await asyncio.sleep(0.05)
    assert [e["status"] for e in entries] == [None]  # no status was sent
    async with anonymous.get("/metrics") as resp:
        metrics = await resp.text()
    assert 'operation="createAllocation",status="499"' in metrics
    assert 'status="500"' not in metrics
    assert "client went away during createAllocation" in caplog.text
    assert "unhandled error" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_integer_valued_floats_are_integers(client: aiohttp.ClientSession) -> None:
    # `2048.0` is the integer 2048 in JSON Schema: the text generator and the placement index once got
    # the float and crashed.
    body = {**ALLOCATE_GEMMA, "requirements": {**ALLOCATE_GEMMA["requirements"], "vram_mb": 2048.0}}
    async with client.post("/v1/allocate", json=body) as resp:
        assert resp.status == 201, await resp.text()
        created = await resp.json()
    assert created["vram_mb"] == 2048
    inference = {"allocation_id": created["allocation_id"], "prompt": "hi", "max_tokens": 2.0}
    async with client.post("/v1/inference", json=inference) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["usage"]["completion_tokens"] <= 2
