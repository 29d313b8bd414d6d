"""Reading a `/v2/process` request: media type, JSON, then the contract's rules, in that order."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from aiohttp import web

from harness.service.contract import TENANT_HEADER, ProcessContract
from harness.service.problems import Problem


@dataclass(frozen=True, slots=True)
class ProcessInput:
    text: str
    tenant: str | None


async def read_process_input(request: web.Request, contract: ProcessContract) -> ProcessInput:
    """The validated request, or a `Problem`: 415, 400, 413 (raised by aiohttp) or 422."""
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
