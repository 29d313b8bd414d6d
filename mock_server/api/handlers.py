"""The public HostedAI endpoints. Each is thin: a validated `Call` in, one simulator call, a rendered
answer out. Errors propagate (as `SimError` or `ApiError`) to the middleware, which renders them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from mock_server.api import render
from mock_server.api.inputs import Call
from mock_server.api.problems import ApiError, problem_body
from mock_server.api.state import RESPONSE_DATA, STATE, TRUNCATE_AFTER, ServerState
from mock_server.sim.errors import AllocationNotActive, CapacityExhausted, SimError
from mock_server.sim.simulator import AllocationSpec, InferencePlan, InferenceSpec, fingerprint
from mock_server.version import __version__

log = logging.getLogger("mock_server.strict")

Handler = Callable[[web.Request, Call], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    response = web.Response(status=status, body=orjson.dumps(data), content_type="application/json")
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
                state.metrics.allocations.labels(spec.pool_id, "capacity_exhausted").inc()
                raise
            # Queue: look again when capacity is freed or simulated time moves; with the manual clock
            # only a release or a clock advance ends the wait.
            await state.waiters.wait_for_change(clock.real_seconds(remaining) if clock.waits else None)
        except SimError as exc:
            state.metrics.allocations.labels(spec.pool_id, exc.code).inc()
            raise
    alloc = result.allocation
    state.metrics.allocations.labels(alloc.pool_id, "replayed" if result.replayed else "created").inc()
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
    cursor = call.query.get("cursor")
    page, last_seq = state.sim.list_allocations(
        call.tenant_id,
        states=call.query.get("state", []),
        labels=labels,
        limit=call.query["limit"],
        after_seq=int(cursor[1:]) if cursor else 0,
    )
    return json_response(
        {
            "allocations": [render.allocation(a, state.clock) for a in page],
            "next_cursor": f"c{last_seq}" if last_seq is not None else None,
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


def _not_active(plan: InferencePlan) -> AllocationNotActive:
    alloc = plan.allocation
    return AllocationNotActive(
        f"Allocation {alloc.allocation_id} ended ({alloc.state.value}) while the inference ran.", alloc.state.value
    )


async def create_inference(request: web.Request, call: Call) -> web.StreamResponse:
    state = _state(request)
    plan = state.sim.start_inference(call.tenant_id, _inference_spec(call.body))
    if call.body.get("stream", False):
        return await _stream_inference(request, state, plan, call.request_id)
    delivered = 0
    try:
        if not await state.waiters.sleep_while_active(plan.allocation, state.clock.real_seconds(plan.timings.total_s)):
            raise _not_active(plan)
        delivered = plan.completion_tokens
    finally:
        state.sim.finish_inference(plan, delivered)
    _observe(state, plan, delivered)
    return json_response(render.inference(plan))


def _observe(state: ServerState, plan: InferencePlan, delivered: int) -> None:
    complete = delivered == plan.completion_tokens
    state.metrics.observe_inference(
        plan.model, plan.prompt_tokens, delivered, plan.timings.ttft_s, plan.timings.total_s if complete else None
    )
    state.latency.observe(plan.timings.ttft_s, plan.timings.itl_s if delivered > 1 else None)


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def _stream_inference(
    request: web.Request, state: ServerState, plan: InferencePlan, request_id: str
) -> web.StreamResponse:
    """Tokens as server-sent events, paced by the plan: the first after TTFT, then one per ITL."""
    contract = state.contract
    check = state.strict
    response = web.StreamResponse(
        status=200,
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Request-Id": request_id},
    )
    await response.prepare(request)
    delivered = 0
    cut_after = request.get(TRUNCATE_AFTER)
    try:
        for index, token in enumerate(plan.tokens):
            if cut_after is not None and index >= cut_after:
                # A truncated stream: the connection closes mid-answer, no `done`.
                if request.transport is not None:
                    request.transport.close()
                return response
            pause = plan.timings.ttft_s if index == 0 else plan.timings.itl_s
            if not await state.waiters.sleep_while_active(plan.allocation, state.clock.real_seconds(pause)):
                error = ApiError.from_sim(_not_active(plan))
                await response.write(_event("error", problem_body(error, request_id)))
                return response
            data = {"index": index, "text": token}
            if check and not await _event_conforms(response, contract, "InferenceTokenEvent", data, request_id):
                return response
            await response.write(_event("token", data))
            delivered += 1
        done = render.inference_done(plan, delivered)
        if check and not await _event_conforms(response, contract, "InferenceDoneEvent", done, request_id):
            return response
        await response.write(_event("done", done))
        await response.write_eof()
    except ConnectionResetError:
        # The client went away mid-stream: nothing left to tell it; the finally clause settles the books.
        pass
    finally:
        state.sim.finish_inference(plan, delivered)
        _observe(state, plan, delivered)
    return response


async def _event_conforms(
    response: web.StreamResponse, contract: Any, schema: str, data: dict[str, Any], request_id: str
) -> bool:
    """Strict mode, streamed: the status is already sent, so a violation ends the stream with an
    `internal_error` event, and is logged loudly."""
    violations = contract.schema(schema).violations(data, "/event")
    if not violations:
        return True
    detail = "; ".join(f"{v.path}: {v.message}" for v in violations)
    log.error("STRICT MODE: %s event violates the contract: %s", schema, detail)
    error = ApiError("internal_error", f"Strict mode: the server's {schema} violated the contract: {detail}")
    await response.write(_event("error", problem_body(error, request_id)))
    return False


# ---- catalogue -------------------------------------------------------------------------------------


async def list_pools(request: web.Request, call: Call) -> web.StreamResponse:
    return json_response({"pools": [render.pool(p) for p in _state(request).sim.pool_stats()]})


async def get_pool(request: web.Request, call: Call) -> web.StreamResponse:
    (pool,) = _state(request).sim.pool_stats(call.path["pool_id"])
    return json_response(render.pool(pool))


async def list_models(request: web.Request, call: Call) -> web.StreamResponse:
    models = _state(request).sim.models
    return json_response(
        {
            "models": [
                {
                    "model": name,
                    "vram_mb": m.vram_mb,
                    "tflops": m.tflops,
                    "max_tokens": m.max_tokens,
                    "context_tokens": m.context_tokens,
                    "pools": list(m.pools),
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
    records, totals = state.sim.usage(call.tenant_id, since, until)
    rendered = [render.usage_record(r, state.clock) for r in records]
    if "text/csv" in request.headers.get("Accept", ""):
        return web.Response(text=render.usage_csv(rendered), content_type="text/csv")
    return json_response({"tenant_id": call.tenant_id, "records": rendered, "totals": render.usage_totals(totals)})


# ---- operations ------------------------------------------------------------------------------------


async def get_health(request: web.Request, call: Call) -> web.StreamResponse:
    return json_response({"status": "ok", "version": __version__})


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
