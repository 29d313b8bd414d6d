"""What a fired fault rule does to the HTTP exchange (the catalogue is docs/faults.md).

The simulator decides (`mock_server/sim/faults.py`); this module acts. A `before` fault acts before the
handler runs, so nothing happened; an `after` fault acts on the handler's finished answer, so the work
was done and only the answer is lost or spoiled. `delay` is simulated time (scaled by the time scale,
not slept on the manual clock); `hang` and `drip` act on the wire in real seconds whatever the clock,
because they exist to trip the client's own timeouts.
"""

from __future__ import annotations

import asyncio
import socket
import struct

from aiohttp import web

from mock_server.api.inputs import Call
from mock_server.api.journal import Outcome
from mock_server.api.problems import ApiError, retry_later
from mock_server.api.state import REQUEST_ID, TRUNCATE_AFTER, ServerState
from mock_server.sim.faults import Decision
from mock_server.sim.model import Allocation

# Marks an answer the fault layer made on purpose, so strict mode does not "correct" it.
INJECTED = web.ResponseKey("fault_injected", bool)

MALFORMED_BODY = b'{"allocation_id": "alloc_3f9c2a1b7d4e5f60", "state": "act'


def target(state: ServerState, operation: str, call: Call) -> tuple[str | None, str | None, Allocation | None]:
    """The pool, model and allocation a request is about, for matching rules."""
    sim = state.sim
    if operation == "allocate":
        return call.body["pool_id"], call.body["requirements"]["model"], None
    allocation_id = call.body.get("allocation_id") if operation == "inference" else call.path.get("allocation_id")
    if allocation_id is not None:
        alloc = sim.allocations.get(allocation_id)
        if alloc is not None and alloc.tenant_id == call.tenant_id:
            return alloc.pool_id, alloc.model, alloc
        return None, None, None
    return call.path.get("pool_id"), None, None


def decide(
    state: ServerState,
    outcome: Outcome,
    operation: str,
    phase: str,
    now: float,
    *,
    tenant_id: str | None,
    pool_id: str | None,
    model: str | None,
) -> Decision | None:
    """The fault rule that fires on this request in this phase (before or after the work), if any:
    noted on the request's outcome (the journal's fault) and counted in the metrics."""
    decision = state.sim.faults.decide(
        operation=operation, phase=phase, now=now, tenant_id=tenant_id, pool_id=pool_id, model=model
    )
    if decision is not None:
        outcome.fault = decision
        state.metrics.faults.labels(decision.kind, operation).inc()
    return decision


def _error(decision: Decision) -> ApiError:
    action = decision.rule.action
    kind = decision.kind
    note = f"Injected by fault rule {decision.rule.id}."
    if kind == "rate_limit":
        return retry_later("rate_limited", f"Rate limited. {note}", decision.retry_after or 1)
    if kind == "quota":
        return ApiError("quota_exceeded", action.get("detail") or f"Quota exceeded. {note}")
    retry_after = action.get("retry_after")
    if retry_after is None and action["status"] in (429, 503):
        # The contract promises Retry-After with every 429 and 503; a rule that names none gets 1 s.
        retry_after = 1
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    extra = {"retry_after": retry_after} if retry_after is not None else {}
    return ApiError(
        action["code"],
        action.get("detail") or f"{note}",
        status=action["status"],
        extra=extra,
        headers=headers,
    )


def cut_connection(request: web.Request, *, reset: bool) -> None:
    transport = request.transport
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER with a zero timeout turns close into a TCP RST instead of a FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


def _killed(request: web.Request, outcome: Outcome, *, reset: bool) -> web.Response:
    cut_connection(request, reset=reset)
    outcome.status_sent = False
    response = web.Response(status=499)
    response[INJECTED] = True
    return response


def _malformed() -> web.Response:
    response = web.Response(status=200, body=MALFORMED_BODY, content_type="application/json")
    response[INJECTED] = True
    return response


async def _hang(state: ServerState, decision: Decision) -> ApiError:
    await asyncio.sleep(float(decision.rule.action["max_s"]))
    return ApiError("gateway_timeout", f"Hung for {decision.rule.action['max_s']} s by fault rule {decision.rule.id}.")


def _fail_gpu_later(state: ServerState, alloc: Allocation | None, after_ms: float) -> None:
    if alloc is None:
        return
    gpu_id = alloc.gpu_id
    delay = state.clock.real_seconds(after_ms / 1000)
    if delay > 0:
        asyncio.get_running_loop().call_later(delay, state.sim.fail_gpu, gpu_id)
    else:
        state.sim.fail_gpu(gpu_id)


async def before(
    request: web.Request, state: ServerState, decision: Decision, outcome: Outcome, alloc: Allocation | None
) -> web.StreamResponse | None:
    """Act before the handler: an answer to send instead, or None to go on handling."""
    kind = decision.kind
    if kind in ("error", "quota", "rate_limit"):
        raise _error(decision)
    if kind == "delay":
        await _sleep_simulated(state, decision.delay_s)
        return None
    if kind == "hang":
        raise await _hang(state, decision)
    if kind in ("reset", "empty"):
        return _killed(request, outcome, reset=kind == "reset")
    if kind == "malformed":
        return _malformed()
    if kind == "truncate":
        request[TRUNCATE_AFTER] = int(decision.rule.action["after_tokens"])
        return None
    if kind == "gpu_fail":
        _fail_gpu_later(state, alloc, float(decision.rule.action.get("after_ms", 0)))
        return None
    return None  # drip acts on the answer: see `shape_answer`


async def after(
    request: web.Request,
    state: ServerState,
    decision: Decision,
    outcome: Outcome,
    alloc: Allocation | None,
    response: web.StreamResponse,
) -> web.StreamResponse:
    """Act on the handler's finished answer: the work is done; the answer is lost, late or spoiled."""
    kind = decision.kind
    if kind == "delay":
        await _sleep_simulated(state, decision.delay_s)
        return response
    if kind in ("reset", "empty"):
        return _killed(request, outcome, reset=kind == "reset")
    if kind == "gpu_fail":
        _fail_gpu_later(state, alloc or _created(state, response), float(decision.rule.action.get("after_ms", 0)))
        return response
    if response.prepared:
        # A streamed answer is already on the wire; nothing else can spoil it now.
        return response
    if kind in ("error", "quota", "rate_limit"):
        raise _error(decision)
    if kind == "hang":
        raise await _hang(state, decision)
    if kind == "malformed":
        return _malformed()
    return response  # truncate and drip: see `shape_answer`


def _created(state: ServerState, response: web.StreamResponse) -> Allocation | None:
    location = response.headers.get("Location", "")
    return state.sim.allocations.get(location.rsplit("/", 1)[-1]) if location else None


async def shape_answer(
    request: web.Request, decision: Decision | None, response: web.StreamResponse
) -> web.StreamResponse:
    """`truncate` and `drip` on a plain (not streamed) answer: send it here, cut short or slowly."""
    if decision is None or decision.kind not in ("truncate", "drip") or response.prepared:
        return response
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        return response
    body = response.body
    stream = web.StreamResponse(status=response.status, headers=response.headers)
    stream.content_length = len(body)
    stream.headers["X-Request-Id"] = request[REQUEST_ID]
    stream[INJECTED] = True
    await stream.prepare(request)
    if decision.kind == "truncate":
        await stream.write(body[: len(body) // 2])
        cut_connection(request, reset=False)
        return stream
    rate = int(decision.rule.action["bytes_per_s"])
    chunk = max(1, rate // 10)
    for start in range(0, len(body), chunk):
        await stream.write(body[start : start + chunk])
        await asyncio.sleep(chunk / rate)
    await stream.write_eof()
    return stream


async def _sleep_simulated(state: ServerState, sim_seconds: float) -> None:
    real = state.clock.real_seconds(sim_seconds)
    if real > 0:
        await asyncio.sleep(real)
