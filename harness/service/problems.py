"""The one place that turns an error into an RFC 9457 problem+json response.

Handlers and the middleware raise `Problem` (or let a `HostedAiError` or an aiohttp `HTTPException`
through); the middleware calls `render`. Each code's status and title are written here once, and so is
the mapping of HostedAI's errors to the service's three upstream codes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from harness.connector import (
    ApiError,
    CircuitOpen,
    GatewayTimeout,
    HostedAiError,
    RateLimited,
    RequestTimeout,
    Unavailable,
)

PROBLEM_JSON = "application/problem+json"

# code -> (HTTP status, title)
PROBLEMS: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "Invalid request"),
    "not_found": (404, "Not found"),
    "method_not_allowed": (405, "Method not allowed"),
    "payload_too_large": (413, "Payload too large"),
    "unsupported_media_type": (415, "Unsupported media type"),
    "validation_failed": (422, "Validation failed"),
    "internal_error": (500, "Internal error"),
    "upstream_error": (502, "Upstream error"),
    "upstream_unavailable": (503, "Upstream unavailable"),
    "upstream_timeout": (504, "Upstream timeout"),
}


class Problem(Exception):
    """An error to answer as a problem document."""

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        if code not in PROBLEMS:
            raise ValueError(f"unknown problem code {code!r}")
        self.code = code
        self.detail = detail
        self.status, self.title = PROBLEMS[code]
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


def render(problem: Problem, request_id: str) -> web.Response:
    body = {
        "type": f"urn:harpoon:problem:{problem.code}",
        "title": problem.title,
        "status": problem.status,
        "code": problem.code,
        "detail": problem.detail,
        "request_id": request_id,
        **problem.extra,
    }
    return web.Response(
        status=problem.status, body=orjson.dumps(body), content_type=PROBLEM_JSON, headers=problem.headers
    )


def from_http(exc: web.HTTPException) -> Problem:
    """aiohttp's own refusals (routing, body size) as problems."""
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return Problem(
            "method_not_allowed", f"{exc.method} is not allowed here; use {allowed}.", headers={"Allow": allowed}
        )
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return Problem("payload_too_large", "The body is larger than the service accepts.")
    if isinstance(exc, web.HTTPNotFound):
        return Problem("not_found", "No such path.")
    return Problem("invalid_request", exc.reason)


def _retry_after(seconds: float | None) -> dict[str, Any]:
    if seconds is None:
        return {}
    whole = max(0, math.ceil(seconds))  # Retry-After is whole seconds; rounding down would retry too early
    return {"retry_after": whole}


def from_upstream(error: HostedAiError) -> Problem:
    """HostedAI's failure, after the connector's retries, as the service's 502, 503 or 504.

    503 `upstream_unavailable`: HostedAI said "not now" (unavailable, no capacity in any pool, rate
    limited), with its Retry-After passed on. 504 `upstream_timeout`: nobody answered in time.
    502 `upstream_error`: anything else, a broken answer or an error Harpoon cannot recover from (such as
    `pool_not_permitted`: no pool of Harpoon's HostedAI tier serves the model). Whenever HostedAI named
    its problem, `upstream_code` carries its `code`."""
    detail = str(error)
    upstream = {"upstream_code": error.code} if isinstance(error, ApiError) else {}
    if isinstance(error, Unavailable | RateLimited):
        extra = _retry_after(error.retry_after)
        headers = {"Retry-After": str(extra["retry_after"])} if extra else {}
        return Problem("upstream_unavailable", detail, extra={**extra, **upstream}, headers=headers)
    if isinstance(error, CircuitOpen):
        # The orchestrator answers a fallback instead; kept so the mapping is total.
        extra = _retry_after(error.retry_in_s)
        return Problem("upstream_unavailable", detail, extra=extra, headers={"Retry-After": str(extra["retry_after"])})
    if isinstance(error, RequestTimeout | GatewayTimeout):
        return Problem("upstream_timeout", detail, extra=upstream)
    return Problem("upstream_error", detail, extra=upstream)
