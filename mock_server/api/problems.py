"""The one place that turns an error into an RFC 9457 problem+json response.

Handlers and middleware raise `ApiError` (or let a domain `SimError` through); the error middleware
calls `render`. The status of each problem code is written here once.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web

from mock_server.api.state import RESPONSE_DATA
from mock_server.sim.errors import AllocationNotActive, InvalidInput, SimError, _RetryLater

PROBLEM_JSON = "application/problem+json"

# code -> (HTTP status, title)
PROBLEMS: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "Invalid request"),
    "unauthorized": (401, "Unauthorized"),
    "quota_exceeded": (403, "Quota exceeded"),
    "pool_not_permitted": (403, "Pool not permitted"),
    "not_found": (404, "Not found"),
    "method_not_allowed": (405, "Method not allowed"),
    "allocation_not_active": (409, "Allocation not active"),
    "idempotency_conflict": (409, "Idempotency conflict"),
    "payload_too_large": (413, "Payload too large"),
    "unsupported_media_type": (415, "Unsupported media type"),
    "validation_failed": (422, "Validation failed"),
    "rate_limited": (429, "Rate limited"),
    "internal_error": (500, "Internal error"),
    "bad_gateway": (502, "Bad gateway"),
    "capacity_exhausted": (503, "Capacity exhausted"),
    "unavailable": (503, "Service unavailable"),
    "gateway_timeout": (504, "Gateway timeout"),
    # The control plane's own.
    "clock_not_manual": (409, "Clock not manual"),
}


class ApiError(Exception):
    """An error to answer as a problem document."""

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        status: int | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """`status` overrides the code's usual status: injected faults may pair any status and code."""
        super().__init__(detail)
        if code not in PROBLEMS and status is None:
            raise ValueError(f"unknown problem code {code!r}")
        self.code = code
        self.detail = detail
        self.status = status if status is not None else PROBLEMS[code][0]
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    @property
    def title(self) -> str:
        known = PROBLEMS.get(self.code)
        if known is not None and known[0] == self.status:
            return known[1]
        return HTTPStatus(self.status).phrase if self.status in HTTPStatus._value2member_map_ else "Error"

    @classmethod
    def from_sim(cls, error: SimError) -> ApiError:
        extra: dict[str, Any] = {}
        if isinstance(error, InvalidInput):
            extra["errors"] = [{"path": e.path, "message": e.message} for e in error.errors]
        if isinstance(error, AllocationNotActive):
            extra["state"] = error.state
        if isinstance(error, _RetryLater):
            return retry_later(error.code, error.detail, error.retry_after)
        return cls(error.code, error.detail, extra=extra)


def retry_later(code: str, detail: str, retry_after: int) -> ApiError:
    """A 429/503 problem: `Retry-After` in the header and the same number in the body."""
    return ApiError(code, detail, extra={"retry_after": retry_after}, headers={"Retry-After": str(retry_after)})


def problem_body(error: ApiError, request_id: str) -> dict[str, Any]:
    return {
        "type": f"https://errors.hosted.ai/{error.code}",
        "title": error.title,
        "status": error.status,
        "code": error.code,
        "detail": error.detail,
        "request_id": request_id,
        **error.extra,
    }


def dump_json(data: Any) -> bytes:
    """JSON bytes of an answer. Text from a request can hold lone surrogates (aiohttp's reading of bytes
    that are not UTF-8, in a header or a path), which JSON cannot carry: such text is sent with U+FFFD."""
    try:
        return orjson.dumps(data)
    except TypeError:
        return orjson.dumps(_valid_unicode(data))


def _valid_unicode(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {_valid_unicode(k): _valid_unicode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_valid_unicode(v) for v in value]
    return value


def render(error: ApiError, request_id: str) -> web.Response:
    body = problem_body(error, request_id)
    response = web.Response(
        status=error.status,
        body=dump_json(body),
        content_type=PROBLEM_JSON,
        headers=error.headers,
    )
    response[RESPONSE_DATA] = body
    return response
