"""Serving one inference over HTTP, plain or streamed, at the pace of its model server.

On the real (scaled) clock the handler waits for its request on the simulated model server: a stream
naps until its next token is due, a plain answer until the soonest it could end, and each wakes early
when a request leaves its GPU (arrivals only delay it) and looks again — so a request's inter-token
time changes as the batch changes, as on a real server. Tokens due by the time it wakes are written
together, so a stream keeps its pace on the wire whatever the time scale. On the
manual clock nothing waits: the request's whole future, as the server would run it if nothing else
arrived, is answered at once.

If the allocation ends under the request, the client meets what the pool says it meets
(`on_preemption`, `on_gpu_failure`): the typed 409 (an SSE `error` event), a reset connection, a stream
cut without `done` (a plain body cut short), or a 502. A release or an expiry is always the typed 409.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import orjson
from aiohttp import web

from mock_server.api import render
from mock_server.api.faults import INJECTED, cut_connection
from mock_server.api.problems import ApiError, problem_body
from mock_server.api.state import ARRIVED, OUTCOME, REQUEST_ID, RESPONSE_DATA, TRUNCATE_AFTER, ServerState
from mock_server.serving_profiles import OnEnd
from mock_server.sim.errors import AllocationNotActive
from mock_server.sim.model import EndReason
from mock_server.sim.serving.service import Timeline
from mock_server.sim.simulator import InferencePlan

strict_log = logging.getLogger("mock_server.strict")

# The longest nap between looks when nothing is scheduled (a request waiting to be admitted).
_IDLE_LOOK_S = 0.5
_AS_DOCUMENTED = OnEnd(wire="event")


async def serve(request: web.Request, state: ServerState, plan: InferencePlan, stream: bool) -> web.StreamResponse:
    """The answer to an accepted inference (`Simulator.start_inference` checked it)."""
    clock = state.clock
    try:
        if not clock.waits and not stream:
            return _answered_at_once(state, plan)
        if clock.waits and plan.overhead_s:
            # The frontend's share (HTTP, tokenizing) comes before the model server sees the request. It
            # is counted from the request's first byte: the time this server already spent on it (or it
            # waited behind a burst of others) is part of that share, not added to it.
            spent = asyncio.get_running_loop().time() - request.get(ARRIVED, math.inf)
            left = max(0.0, clock.real_seconds(plan.overhead_s) - max(0.0, spent))
            await state.waiters.sleep_unless_ended(plan.allocation.allocation_id, left)
        state.sim.submit_inference(plan)
    except AllocationNotActive:
        if plan.allocation.end_reason is None:
            state.sim.finish_inference(plan, 0)
            raise
        # It ended during the frontend's share: the client meets what its pool says, as it would had
        # the request reached the model server a moment sooner.
        try:
            return await _ended_before_serving(request, state, plan, stream)
        finally:
            state.sim.finish_inference(plan, 0)
    except BaseException:
        state.sim.finish_inference(plan, 0)
        raise
    if stream:
        return await _streamed(request, state, plan)
    return await _plain(request, state, plan)


def _not_active(plan: InferencePlan) -> AllocationNotActive:
    alloc = plan.allocation
    return AllocationNotActive(
        f"Allocation {alloc.allocation_id} ended ({alloc.state.value}) while the inference ran.", alloc.state.value
    )


def on_end(state: ServerState, plan: InferencePlan) -> OnEnd:
    """What the client meets when its allocation ended under the request."""
    pool = state.sim.pools[plan.allocation.pool_id].config
    reason = plan.allocation.end_reason
    if reason is EndReason.PREEMPTED:
        return pool.on_preemption
    if reason in (EndReason.GPU_FAILURE, EndReason.OOM):
        return pool.on_gpu_failure
    return _AS_DOCUMENTED


async def _look_again(state: ServerState, plan: InferencePlan, *, every_token: bool = True) -> None:
    """Nap until the request's next token or end is due, or until its GPU changes. A plain answer
    (`every_token` False) has no use for its tokens one by one: it naps until it could end."""
    sim, clock = state.sim, state.clock
    due = sim.inference_next_change(plan, every_token=every_token) - clock.now()
    real = clock.real_seconds(due) if math.isfinite(due) else _IDLE_LOOK_S
    await state.waiters.nap(plan.allocation.gpu_id, min(max(real, 0.0), _IDLE_LOOK_S) if real > 0 else 0.0005)


def _timeline(state: ServerState, plan: InferencePlan) -> Timeline:
    """Where the request is now; on the manual clock, its whole projected future."""
    if not state.clock.waits:
        return state.sim.project_inference(plan)
    return state.sim.inference_progress(plan)


def _answered_at_once(state: ServerState, plan: InferencePlan) -> web.StreamResponse:
    """The manual clock's plain answer: nothing waits, so the request's whole future is its answer.
    (A stream is answered through `_streamed`: its writes let other requests in mid-answer.)"""
    delivered = 0
    try:
        state.sim.answer_at_once(plan)
        delivered = plan.completion_tokens
    finally:
        state.sim.finish_inference(plan, delivered)
    observe(state, plan, delivered)
    return _json(render.inference(plan))


async def _plain(request: web.Request, state: ServerState, plan: InferencePlan) -> web.StreamResponse:
    delivered = 0
    try:
        while True:
            timeline = _timeline(state, plan)
            # On the manual clock the projection is the answer, however far it reaches.
            if timeline.total_s is not None or not state.clock.waits:
                break
            if not plan.allocation.active:
                return await _ended_plain(request, state, plan)
            await _look_again(state, plan, every_token=False)
        delivered = plan.completion_tokens
    finally:
        state.sim.finish_inference(plan, delivered)
        observe(state, plan, delivered)
    return _json(render.inference(plan))


async def _ended_before_serving(
    request: web.Request, state: ServerState, plan: InferencePlan, stream: bool
) -> web.StreamResponse:
    if not stream:
        return await _ended_plain(request, state, plan)
    response = _event_stream(request[REQUEST_ID])
    await response.prepare(request)
    await _ended_stream(request, response, state, plan, request[REQUEST_ID])
    return response


def _event_stream(request_id: str) -> web.StreamResponse:
    return web.StreamResponse(
        status=200,
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Request-Id": request_id},
    )


async def _ended_plain(request: web.Request, state: ServerState, plan: InferencePlan) -> web.StreamResponse:
    wire = on_end(state, plan).wire
    if wire == "cut":
        cut_connection(request, reset=True)
        request[OUTCOME].status_sent = False
        response = web.Response(status=499)
        response[INJECTED] = True
        return response
    if wire == "error_5xx":
        raise ApiError("bad_gateway", "The model server went away while the request ran.")
    if wire == "truncate":
        body = orjson.dumps(render.inference(plan))
        cut = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        cut.content_length = len(body)
        cut[INJECTED] = True
        await cut.prepare(request)
        await cut.write(body[: len(body) // 2])
        cut_connection(request, reset=False)
        return cut
    raise _not_active(plan)


def _json(data: dict[str, Any]) -> web.Response:
    response = web.Response(body=orjson.dumps(data), content_type="application/json")
    response[RESPONSE_DATA] = data
    return response


def event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def _streamed(request: web.Request, state: ServerState, plan: InferencePlan) -> web.StreamResponse:
    """Tokens as server-sent events, each written once the model server has made it."""
    request_id = request[REQUEST_ID]
    contract = state.contract
    check = state.strict
    response = _event_stream(request_id)
    await response.prepare(request)
    delivered = 0
    cut_after = request.get(TRUNCATE_AFTER)
    tokens = plan.tokens
    try:
        while True:
            timeline = _timeline(state, plan)
            finished = timeline.total_s is not None or not state.clock.waits
            ready = len(tokens) if finished else min(timeline.tokens, len(tokens))
            if cut_after is not None and ready >= cut_after:
                await _write_tokens(response, contract, check, request_id, tokens, delivered, cut_after)
                delivered = cut_after
                # A truncated stream (a `truncate` fault): the connection closes mid-answer, no `done`.
                cut_connection(request, reset=False)
                return response
            if ready > delivered:
                if not await _write_tokens(response, contract, check, request_id, tokens, delivered, ready):
                    return response
                delivered = ready
            if timeline.total_s is not None or not state.clock.waits:
                break
            if not plan.allocation.active:
                await _ended_stream(request, response, state, plan, request_id)
                return response
            await _look_again(state, plan)
        done = render.inference_done(plan, delivered)
        if check and not await _event_conforms(response, contract, "InferenceDoneEvent", done, request_id):
            return response
        await response.write(event("done", done))
        await response.write_eof()
    except ConnectionResetError:
        # The client went away mid-stream: nothing left to tell it; the finally clause settles the books.
        pass
    finally:
        state.sim.finish_inference(plan, delivered)
        observe(state, plan, delivered)
    return response


async def _write_tokens(
    response: web.StreamResponse,
    contract: Any,
    check: bool,
    request_id: str,
    tokens: list[str],
    start: int,
    end: int,
) -> bool:
    """Tokens `start:end` in one write; False when strict mode refused one (the stream has ended)."""
    chunks: list[bytes] = []
    for index in range(start, end):
        data = {"index": index, "text": tokens[index]}
        if check and contract.schema("InferenceTokenEvent").violations(data, "/event"):
            return await _event_conforms(response, contract, "InferenceTokenEvent", data, request_id)
        chunks.append(event("token", data))
    if chunks:
        await response.write(b"".join(chunks))
    return True


async def _ended_stream(
    request: web.Request, response: web.StreamResponse, state: ServerState, plan: InferencePlan, request_id: str
) -> None:
    wire = on_end(state, plan).wire
    if wire == "event":
        error = ApiError.from_sim(_not_active(plan))
        await response.write(event("error", problem_body(error, request_id)))
        return
    # The status line is long gone: a reset, or a stream that simply stops without `done`.
    cut_connection(request, reset=wire == "cut")


async def _event_conforms(
    response: web.StreamResponse, contract: Any, schema: str, data: dict[str, Any], request_id: str
) -> bool:
    """Strict mode, streamed: the status is already sent, so a violation ends the stream with an
    `internal_error` event, and is logged loudly."""
    violations = contract.schema(schema).violations(data, "/event")
    if not violations:
        return True
    detail = "; ".join(f"{v.path}: {v.message}" for v in violations)
    strict_log.error("STRICT MODE: %s event violates the contract: %s", schema, detail)
    error = ApiError("internal_error", f"Strict mode: the server's {schema} violated the contract: {detail}")
    await response.write(event("error", problem_body(error, request_id)))
    return False


def observe(state: ServerState, plan: InferencePlan, delivered: int) -> None:
    timeline = plan.timeline
    complete = delivered == plan.completion_tokens and timeline is not None and timeline.total_s is not None
    state.metrics.observe_inference(
        plan.model,
        plan.prompt_tokens,
        delivered,
        (timeline.ttft_s or 0.0) if timeline is not None else 0.0,
        timeline.total_s if complete and timeline is not None else None,
    )
    if timeline is not None and timeline.ttft_s is not None and delivered > 0:
        # The dashboard's window: TTFT of every answer that began, the mean ITL of those that finished.
        state.latency.observe(timeline.ttft_s, timeline.tpot_s if complete else None)
