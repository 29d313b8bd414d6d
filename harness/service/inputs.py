"""Reading a `/v2/process` request: media type, JSON, then the contract's rules, in that order."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from aiohttp import web

from harness.service.contract import TENANT_HEADER, ProcessContract
from harness.service.problems import Problem

# A 100 000-character text is at most 400 KB of UTF-8, or 1.2 MB fully \u-escaped; a little more
# than that, so no valid body is refused before the contract's own limit can answer.
MAX_BODY_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ProcessInput:
    text: str
    tenant: str | None


async def read_process_input(request: web.Request, contract: ProcessContract) -> ProcessInput:
    """The validated request, or a `Problem`: 415, 400, 413 (raised by aiohttp) or 422."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        # Refused from the header, before a byte of the body is read.
        raise Problem("payload_too_large", "The body is larger than the service accepts.")
    if request.content_type != "application/json":
        raise Problem("unsupported_media_type", "Send Content-Type: application/json.")
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Problem("invalid_request", f"The body is not valid JSON: {exc}.") from None
    violations = contract.body_violations(body)
    tenant = request.headers.get(TENANT_HEADER)
    if tenant is not None:
        violations += contract.tenant_violations(tenant)
    if violations:
        raise Problem(
            "validation_failed",
            "The request does not match the contract.",
            extra={"errors": [{"path": v.path, "message": v.message} for v in violations]},
        )
    return ProcessInput(text=body["text"], tenant=tenant)
