"""Turn an HTTP request into a validated `Call` for a handler: authenticate, charge the rate limit,
parse and validate parameters and body against the contract. Anything wrong raises `ApiError`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from mock_server.api.contract import Operation, ParameterParseError, Violation
from mock_server.api.problems import ApiError, retry_later
from mock_server.api.state import STATE
from mock_server.sim.errors import SimError
from mock_server.sim.simulator import Simulator


@dataclass(slots=True)
class Call:
    operation: Operation
    request_id: str
    tenant_id: str
    """The authenticated tenant; empty for operations that need no key."""
    body: Any
    query: dict[str, Any]
    path: dict[str, Any]
    headers: dict[str, Any]


def authenticate(request: web.Request, sim: Simulator) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    tenant = sim.tenant_for_key(key.strip()) if scheme.lower() == "bearer" else None
    if tenant is None:
        reason = "Missing API key." if not header else "Unknown API key."
        raise ApiError(
            "unauthorized",
            f"{reason} Send Authorization: Bearer <api key>.",
            headers={"WWW-Authenticate": 'Bearer realm="hostedai"'},
        )
    return tenant


def check_admin_token(request: web.Request, token: str | None) -> None:
    """401 for a missing or wrong token; 429 while the sender is blocked for failing too often."""
    gate, sent, source = request.app[STATE].admin_gate, request.headers.get("X-Admin-Token"), request.remote
    wait = gate.blocked_for(source)
    if wait:
        # The token is not even looked at: a blocked sender learns nothing from its guess.
        raise retry_later("rate_limited", "Too many failed X-Admin-Token attempts from this address.", wait)
    if not gate.admits(sent, token, source):
        raise ApiError("unauthorized", "Missing X-Admin-Token." if sent is None else "Wrong X-Admin-Token.")


def _parameters(request: web.Request, operation: Operation) -> tuple[dict[str, dict[str, Any]], list[Violation]]:
    values: dict[str, dict[str, Any]] = {"path": {}, "query": {}, "header": {}}
    problems: list[Violation] = []
    for param in operation.parameters:
        where = f"/{param.location}/{param.name}"
        if param.location == "path":
            raw: list[str] = [request.match_info[param.name]] if param.name in request.match_info else []
        elif param.location == "query":
            raw = request.query.getall(param.name, [])
        elif param.location == "header":
            raw = request.headers.getall(param.name, [])
        else:
            continue
        if not raw:
            if param.required:
                problems.append(Violation(where, f"{param.name} is required"))
            elif param.default is not None:
                values[param.location][param.name] = param.default
            continue
        try:
            parsed = [param.parse(r) for r in raw]
        except ParameterParseError as exc:
            problems.append(Violation(where, str(exc)))
            continue
        value: Any = parsed if param.is_array else parsed[-1]
        found = param.schema.violations(value, where)
        if found:
            problems.extend(found)
        else:
            values[param.location][param.name] = value
    return values, problems


async def _body(request: web.Request, operation: Operation, max_bytes: int) -> tuple[Any, list[Violation]]:
    assert operation.body is not None
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError("payload_too_large", f"The body exceeds {max_bytes} bytes.")
    if not operation.body_required and not request.body_exists:
        return None, []
    if request.content_type != "application/json":
        given = request.headers.get("Content-Type", "none")
        raise ApiError("unsupported_media_type", f"Send Content-Type: application/json (got {given}).")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError("payload_too_large", f"The body exceeds {max_bytes} bytes.") from None
    if not raw.strip():
        raise ApiError("invalid_request", "A JSON body is required.")
    try:
        # orjson is strict where the stdlib is lenient: no NaN, no lone surrogates, UTF-8 only.
        body = integral(orjson.loads(raw))
    except orjson.JSONDecodeError as exc:
        raise ApiError("invalid_request", f"The body is not valid JSON: {exc}.") from None
    return body, operation.body.violations(body, "/body")


def integral(value: Any) -> Any:
    """Integer-valued numbers as ints (`2048.0` is the integer 2048 in JSON Schema): the simulator
    then never meets a float where the contract promises an integer."""
    if type(value) is dict:
        # Most bodies are flat objects with nothing to convert (a temperature of 0.7 stays a float):
        # returned as they are, without building a copy.
        for v in value.values():
            kind = type(v)
            if kind is dict or kind is list or (kind is float and v.is_integer()):
                break
        else:
            return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {k: integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral(v) for v in value]
    return value


async def read_call(
    request: web.Request,
    operation: Operation,
    sim: Simulator,
    request_id: str,
    max_bytes: int,
    admin_token: str | None,
) -> Call:
    tenant = ""
    if operation.security_scheme == "bearerAuth":
        tenant = authenticate(request, sim)
        try:
            sim.take_rate_token(tenant)
        except SimError as exc:
            raise ApiError.from_sim(exc) from None
    elif operation.security_scheme == "adminToken":
        check_admin_token(request, admin_token)
    values, problems = _parameters(request, operation)
    body: Any = None
    if operation.body is not None:
        body, body_problems = await _body(request, operation, max_bytes)
        problems.extend(body_problems)
    if problems:
        raise ApiError(
            "validation_failed",
            "The request does not match the contract.",
            extra={"errors": [{"path": p.path, "message": p.message} for p in problems]},
        )
    return Call(
        operation=operation,
        request_id=request_id,
        tenant_id=tenant,
        body=body,
        query=values["query"],
        path=values["path"],
        headers=values["header"],
    )
