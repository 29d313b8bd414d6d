"""The public HostedAI endpoints. Each is thin: a validated `Call` in, one simulator call, a rendered
answer out. Errors propagate (as `SimError` or `ApiError`) to the middleware, which renders them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from mock_server.api import inference, render
from mock_server.api.inputs import Call
from mock_server.api.problems import ApiError, dump_json
from mock_server.api.state import RESPONSE_DATA, STATE, ServerState
from mock_server.sim.errors import CapacityExhausted, SimError
from mock_server.sim.simulator import AllocationSpec, InferenceSpec, fingerprint
from mock_server.version import __version__

log = logging.getLogger("mock_server.strict")

Handler = Callable[[web.Request, Call], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    response = web.Response(status=status, body=dump_json(data), content_type="application/json")
    if headers:
        response.headers.update(headers)
    response[RESPONSE_DATA] = data
    return response


def _state(request: web.Request) -> ServerState:
    return request.app[STATE]


# ---- allocations -----------------------------------------------------------------------------------


async def create_allocation(request: web.Request, call: Call) -> web.StreamResponse:
    state = _state(request)
    body = call.body
    req = body["requirements"]
    spec = AllocationSpec(
        pool_id=body["pool_id"],
        model=req["model"],
        tflops=req["tflops"],
        vram_mb=req["vram_mb"],
        overcommit=body.get("overcommit", False),
        priority=body.get("priority", 5),
        ttl_seconds=body.get("ttl_seconds"),
        labels=body.get("labels", {}),
    )
    key = call.headers.get("Idempotency-Key")
    clock = state.clock
    deadline = clock.now() + body.get("wait_seconds", 0)
    while True:
        try:
            result = state.sim.allocate(
                call.tenant_id,
                spec,
                request_id=call.request_id,
                idempotency_key=key,
                body_fingerprint=fingerprint(body) if key else None,
            )
            break
        except CapacityExhausted:
            remaining = deadline - clock.now()
            if remaining <= 0:
                state.metrics.count_allocation(spec.pool_id, "capacity_exhausted")
                raise
            # Queue: look again when capacity is freed or simulated time moves; with the manual clock
            # only a release or a clock advance ends the wait.
            await state.waiters.wait_for_change(clock.real_seconds(remaining) if clock.waits else None)
        except SimError as exc:
            state.metrics.count_allocation(spec.pool_id, exc.code)
            raise
    alloc = result.allocation
    state.metrics.count_allocation(alloc.pool_id, "replayed" if result.replayed else "created")
    if result.preempted:
        state.metrics.preemptions.labels(alloc.pool_id).inc(len(result.preempted))
    if result.provision_s:
        # Provisioning takes time on a real provider; the capacity is already held meanwhile.
        await _sleep(state, result.provision_s)
    headers = {"Location": f"/v1/allocate/{alloc.allocation_id}"}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(render.allocation(alloc, clock), status=201, headers=headers)


async def _sleep(state: ServerState, sim_seconds: float) -> None:
    real = state.clock.real_seconds(sim_seconds)
    if real > 0:
        await asyncio.sleep(real)


async def list_allocations(request: web.Request, call: Call) -> web.StreamResponse:
    state = _state(request)
    labels = dict(label.split("=", 1) for label in call.query.get("label", []))
    page, last_seq = state.sim.list_allocations(
        call.tenant_id,
        states=call.query.get("state", []),
        labels=labels,
        limit=call.query["limit"],
        after_seq=after_cursor(call.query.get("cursor")),
    )
    return json_response(
        {
            "allocations": [render.allocation(a, state.clock) for a in page],
            "next_cursor": cursor_for(last_seq),
        }
    )


async def get_allocation(request: web.Request, call: Call) -> web.StreamResponse:
    state = _state(request)
    alloc = state.sim.get_allocation(call.tenant_id, call.path["allocation_id"])
    return json_response(render.allocation(alloc, state.clock))


async def release_allocation(request: web.Request, call: Call) -> web.StreamResponse:
    _state(request).sim.release(call.tenant_id, call.path["allocation_id"])
    return web.Response(status=204)


# ---- inference -------------------------------------------------------------------------------------


def _inference_spec(body: dict[str, Any]) -> InferenceSpec:
    return InferenceSpec(
        allocation_id=body["allocation_id"],
        prompt=body["prompt"],
        max_tokens=body.get("max_tokens"),
        temperature=body.get("temperature", 1.0),
        stop=tuple(body.get("stop", ())),
        seed=body.get("seed"),
        model=body.get("model"),
    )


async def create_inference(request: web.Request, call: Call) -> web.StreamResponse:
    state = _state(request)
    plan = state.sim.start_inference(call.tenant_id, _inference_spec(call.body))
    return await inference.serve(request, state, plan, stream=bool(call.body.get("stream", False)))


# ---- catalogue -------------------------------------------------------------------------------------


async def list_pools(request: web.Request, call: Call) -> web.StreamResponse:
    pools = _state(request).sim.pool_stats(tenant_id=call.tenant_id)
    return json_response({"pools": [render.pool(p) for p in pools]})


async def get_pool(request: web.Request, call: Call) -> web.StreamResponse:
    (pool,) = _state(request).sim.pool_stats(call.path["pool_id"], tenant_id=call.tenant_id)
    return json_response(render.pool(pool))


async def list_models(request: web.Request, call: Call) -> web.StreamResponse:
    sim = _state(request).sim
    models, usable = sim.models, sim.pools_of(call.tenant_id)
    return json_response(
        {
            "models": [
                {
                    "model": name,
                    "vram_mb": m.vram_mb,
                    "tflops": m.tflops,
                    "max_tokens": m.max_tokens,
                    "context_tokens": m.context_tokens,
                    # Pool segregation: only the pools the tenant's tier may use.
                    "pools": [p for p in m.pools if p in usable],
                }
                for name, m in models.items()
            ]
        }
    )


def _sim_seconds(state: ServerState, rfc3339: str | None) -> float | None:
    if rfc3339 is None:
        return None
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() - state.clock.epoch


async def get_usage(request: web.Request, call: Call) -> web.StreamResponse:
    state = _state(request)
    try:
        since = _sim_seconds(state, call.query.get("since"))
        until = _sim_seconds(state, call.query.get("until"))
    except (ValueError, OverflowError):
        raise ApiError(
            "validation_failed",
            "since and until must be RFC 3339 timestamps.",
            extra={"errors": [{"path": "/query", "message": "not an RFC 3339 timestamp"}]},
        ) from None
    page = state.sim.usage(
        call.tenant_id, since, until, limit=call.query["limit"], after_seq=after_cursor(call.query.get("cursor"))
    )
    rendered = [render.usage_record(r, state.clock) for r in page.records]
    next_cursor = cursor_for(page.next_seq)
    if "text/csv" in request.headers.get("Accept", ""):
        response = web.Response(text=render.usage_csv(rendered), content_type="text/csv")
        if next_cursor is not None:
            response.headers["Link"] = f'<{request.rel_url.update_query(cursor=next_cursor)}>; rel="next"'
        return response
    return json_response(
        {
            "tenant_id": call.tenant_id,
            "since": render.timestamp(state.clock, page.window.since),
            "until": render.timestamp(state.clock, page.window.until),
            "period_seconds": state.sim.ledger.period_s,
            "records": rendered,
            "totals": render.usage_totals(page.totals),
            "next_cursor": next_cursor,
        }
    )


def after_cursor(cursor: str | None) -> int:
    """The seq a `c<seq>` cursor continues after (the contract's pattern has been checked)."""
    return int(cursor[1:]) if cursor else 0


def cursor_for(next_seq: int | None) -> str | None:
    return f"c{next_seq}" if next_seq is not None else None


# ---- operations ------------------------------------------------------------------------------------


async def get_health(request: web.Request, call: Call) -> web.StreamResponse:
    # A cell names itself, so a client behind a router (nginx) can tell which cell answered it.
    cell = _state(request).config.simulation.cell
    return json_response({"status": "ok", "version": __version__, **({"cell": cell} if cell else {})})


async def get_metrics(request: web.Request, call: Call) -> web.StreamResponse:
    body = _state(request).metrics.exposition()
    # prometheus-client's text format 0.0.4 is plain text.
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


async def get_openapi_yaml(request: web.Request, call: Call) -> web.StreamResponse:
    return web.Response(text=_state(request).contract.yaml_text, content_type="application/yaml")


async def get_openapi_json(request: web.Request, call: Call) -> web.StreamResponse:
    return web.Response(text=_state(request).contract.json_text, content_type="application/json")


HANDLERS: dict[str, Handler] = {
    "createAllocation": create_allocation,
    "listAllocations": list_allocations,
    "getAllocation": get_allocation,
    "releaseAllocation": release_allocation,
    "createInference": create_inference,
    "listPools": list_pools,
    "getPool": get_pool,
    "listModels": list_models,
    "getUsage": get_usage,
    "getHealth": get_health,
    "getMetrics": get_metrics,
    "getOpenApiYaml": get_openapi_yaml,
    "getOpenApiJson": get_openapi_json,
}
