"""The service's handlers: read, call the orchestrator or the connector, render. Nothing else."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from harness.connector import CircuitState, HostedAiConnector
from harness.orchestrator import TextTooLong
from harness.service.inputs import read_process_input
from harness.service.keys import CONFIG, CONNECTOR, CONTRACT, METRICS, ORCHESTRATOR, REGISTRY
from harness.service.problems import Problem

_CIRCUIT_NAMES = {CircuitState.CLOSED: "closed", CircuitState.HALF_OPEN: "half_open", CircuitState.OPEN: "open"}


def _json(data: object) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


async def process(request: web.Request) -> web.Response:
    app = request.app
    given = await read_process_input(request, app[CONTRACT])
    try:
        result = await app[ORCHESTRATOR].process(given.text, given.tenant)
    except TextTooLong as exc:
        raise Problem(
            "validation_failed",
            "The text is too long for the model its class runs on; nothing was allocated.",
            extra={"errors": [{"path": "/body/text", "message": str(exc)}]},
        ) from None
    if result.fallback:
        app[METRICS].fallbacks.inc()
    return _json(result.model_dump(mode="json"))


async def _reachable(connector: HostedAiConnector, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            return await connector.reachable()
    except TimeoutError:
        return False


async def health(request: web.Request) -> web.Response:
    app = request.app
    connector = app[CONNECTOR]
    circuit = connector.circuit_state
    reachable = await _reachable(connector, app[CONFIG].service.health_timeout_secs)
    status = "ok" if circuit is CircuitState.CLOSED and reachable else "degraded"
    return _json({"status": status, "circuit": _CIRCUIT_NAMES[circuit], "hostedai_reachable": reachable})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(request.app[REGISTRY]), headers={"Content-Type": CONTENT_TYPE_LATEST})
