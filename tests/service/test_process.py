"""POST /v2/process over HTTP: answers that match contracts/harpoon.v2.yaml, refusals of bad input, and
HostedAI's failures as 502/503/504 problems, with nothing left allocated."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import ClientResponse

from mock_server import MockHostedAI
from tests.orchestrator.support import COMPLEX_TEXT, SIMPLE_TEXT, UNAVAILABLE, add_fault, assert_nothing_held
from tests.service.conftest import ServiceClient, StartService, contract_validator

PROCESS_RESULT = contract_validator("ProcessResult")
PROBLEM = contract_validator("Problem")


async def expect_problem(resp: ClientResponse, status: int, code: str) -> dict[str, Any]:
    """The documented problem+json error, valid against the contract and tied to its request id."""
    text = await resp.text()
    assert resp.status == status, f"expected {status} {code}, got {resp.status}: {text}"
    assert resp.content_type == "application/problem+json"
    body: dict[str, Any] = await resp.json(content_type=None)
    PROBLEM.validate(body)
    assert (body["code"], body["status"], body["type"]) == (code, status, f"urn:harpoon:problem:{code}")
    assert body["request_id"] == resp.headers["X-Request-Id"]
    return body


def process_body(text: str = SIMPLE_TEXT, **extra: Any) -> dict[str, Any]:
    return {"text": text, "deployment": "HostedAI", **extra}


async def test_happy_path_matches_the_contract(hostedai: MockHostedAI, service: ServiceClient) -> None:
    resp = await service.post("/v2/process", json=process_body(COMPLEX_TEXT), headers={"X-Tenant-Id": "acme"})
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    PROCESS_RESULT.validate(body)
    assert resp.headers["X-Request-Id"].startswith("req_")
    assert body["fallback"] is False
    assert (body["model"], body["pool_id"], body["tenant"]) == ("qwen-30b", "gpu-pool-1", "acme")
    assert body["classification"]["label"] == "complex"
    assert body["usage"]["completion_tokens"] <= 1024
    await assert_nothing_held(hostedai)


async def test_the_clients_request_id_is_kept(service: ServiceClient) -> None:
    resp = await service.post("/v2/process", json=process_body(), headers={"X-Request-Id": "trace-42"})
    assert resp.status == 200
    assert resp.headers["X-Request-Id"] == "trace-42"
    assert (await resp.json())["tenant"] == "default"


async def test_bad_json_is_400(service: ServiceClient) -> None:
    resp = await service.post("/v2/process", data=b'{"text": ', headers={"Content-Type": "application/json"})
    await expect_problem(resp, 400, "invalid_request")


async def test_a_body_that_is_not_json_is_415(service: ServiceClient) -> None:
    resp = await service.post("/v2/process", data="text=hello", headers={"Content-Type": "text/plain"})
    await expect_problem(resp, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (process_body(deployment="AWS"), "/body/deployment"),
        ({"text": SIMPLE_TEXT}, "/body"),
        (process_body(""), "/body/text"),
        (process_body("x" * 100_001), "/body/text"),
        (process_body(extra_field=1), "/body"),
        ([SIMPLE_TEXT], "/body"),
    ],
    ids=["wrong-deployment", "no-deployment", "empty-text", "text-too-long", "unknown-field", "not-an-object"],
)
async def test_a_body_against_the_contract_is_422(
    hostedai: MockHostedAI, service: ServiceClient, body: Any, path: str
) -> None:
    problem = await expect_problem(await service.post("/v2/process", json=body), 422, "validation_failed")
    assert path in [error["path"] for error in problem["errors"]]
    assert hostedai.sim.allocations == {}  # refused before HostedAI was asked for anything


async def test_a_body_over_the_size_limit_is_413(hostedai: MockHostedAI, service: ServiceClient) -> None:
    resp = await service.post("/v2/process", json=process_body("x" * (3 * 1024 * 1024)))
    await expect_problem(resp, 413, "payload_too_large")
    assert hostedai.sim.allocations == {}


async def test_a_body_over_the_limit_is_refused_from_its_content_length_before_it_is_read(
    hostedai: MockHostedAI, service: ServiceClient
) -> None:
    url = service.make_url("/")
    reader, writer = await asyncio.open_connection(url.host, url.port)
    head = (
        "POST /v2/process HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {3 * 1024 * 1024}\r\n\r\n"
    )
    writer.write(head.encode())  # and not a byte of the body: the answer must not wait for it
    async with asyncio.timeout(5):
        status_line = await reader.readline()
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 413"), status_line
    assert hostedai.sim.allocations == {}


@pytest.mark.parametrize(
    "text",
    [
        " ".join(["a"] * 40_000),  # a 40,000-word text within the contract's 100,000 characters
        "🙂" * 90_000,  # 90,000 emoji: one token each
    ],
    ids=["40k-words", "90k-emoji"],
)
async def test_a_text_the_model_cannot_take_is_422_before_anything_is_allocated(
    hostedai: MockHostedAI, service: ServiceClient, text: str
) -> None:
    problem = await expect_problem(await service.post("/v2/process", json=process_body(text)), 422, "validation_failed")
    assert [error["path"] for error in problem["errors"]] == ["/body/text"]
    assert hostedai.sim.allocations == {}  # nothing allocated, nothing billed
    assert [e["operation"] for e in hostedai.state.journal.query()[0]] == ["pools", "models"]  # only the catalogue


async def test_a_bad_tenant_header_is_422(service: ServiceClient) -> None:
    resp = await service.post("/v2/process", json=process_body(), headers={"X-Tenant-Id": "no spaces, please"})
    problem = await expect_problem(resp, 422, "validation_failed")
    assert [error["path"] for error in problem["errors"]] == ["/header/X-Tenant-Id"]


async def test_unknown_paths_and_methods_are_problems(service: ServiceClient) -> None:
    await expect_problem(await service.get("/v1/process"), 404, "not_found")
    resp = await service.get("/v2/process")
    await expect_problem(resp, 405, "method_not_allowed")
    assert resp.headers["Allow"] == "POST"


@pytest.mark.parametrize(
    ("operation", "action", "status", "code"),
    [
        ("inference", {"type": "error", "status": 500, "code": "internal_error"}, 502, "upstream_error"),
        ("inference", {"type": "error", "status": 504, "code": "gateway_timeout"}, 504, "upstream_timeout"),
        ("allocate", {"type": "error", "status": 403, "code": "quota_exceeded"}, 502, "upstream_error"),
    ],
    ids=["500", "504", "403"],
)
async def test_upstream_failures_are_problems(
    hostedai: MockHostedAI, service: ServiceClient, operation: str, action: dict[str, Any], status: int, code: str
) -> None:
    await add_fault(hostedai, action, operation=operation)
    problem = await expect_problem(await service.post("/v2/process", json=process_body()), status, code)
    assert f"HostedAI {action['status']} {action['code']}" in problem["detail"]
    await assert_nothing_held(hostedai)


async def test_no_capacity_anywhere_is_503_with_retry_after(hostedai: MockHostedAI, service: ServiceClient) -> None:
    await add_fault(hostedai, {"type": "error", "status": 503, "code": "capacity_exhausted", "retry_after": 7})
    resp = await service.post("/v2/process", json=process_body())
    problem = await expect_problem(resp, 503, "upstream_unavailable")
    assert resp.headers["Retry-After"] == "7"
    assert problem["retry_after"] == 7
    await assert_nothing_held(hostedai)


async def test_unavailable_is_503(hostedai: MockHostedAI, service: ServiceClient) -> None:
    await add_fault(hostedai, {**UNAVAILABLE, "retry_after": 2}, operation="inference")
    resp = await service.post("/v2/process", json=process_body())
    await expect_problem(resp, 503, "upstream_unavailable")
    assert resp.headers["Retry-After"] == "2"
    await assert_nothing_held(hostedai)


async def test_an_open_circuit_answers_a_marked_fallback(hostedai: MockHostedAI, start_service: StartService) -> None:
    service = await start_service(circuit_breaker={"failure_threshold": 2, "recovery_timeout": 60})
    await add_fault(hostedai, UNAVAILABLE)
    resp = await service.post("/v2/process", json=process_body())
    assert resp.status == 200
    body = await resp.json()
    PROCESS_RESULT.validate(body)
    assert body["fallback"] is True
    assert body["reason"].startswith("circuit_open:")
    assert body["allocation_id"] is None
    await assert_nothing_held(hostedai)
