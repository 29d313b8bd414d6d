"""Assertions shared by the API tests."""

from __future__ import annotations

from typing import Any

import aiohttp


async def expect_problem(resp: aiohttp.ClientResponse, status: int, code: str) -> dict[str, Any]:
    """The response is the documented problem+json error, tied to its request id."""
    text = await resp.text()
    assert resp.status == status, f"expected {status} {code}, got {resp.status}: {text}"
    assert resp.content_type == "application/problem+json"
    body: dict[str, Any] = await resp.json(content_type=None)
    assert body["code"] == code
    assert body["status"] == status
    assert body["type"].endswith("/" + code)
    assert body["request_id"] == resp.headers["X-Request-Id"]
    return body


async def allocate(session: aiohttp.ClientSession, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    async with session.post("/v1/allocate", json=body, **kwargs) as resp:
        assert resp.status == 201, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data
