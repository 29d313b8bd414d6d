"""The control plane's handlers (`contracts/admin.v1.yaml`, under `/_admin`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mock_server.api import render
from mock_server.api.contract import Contract
from mock_server.api.handlers import Handler, after_cursor, cursor_for, json_response
from mock_server.api.inputs import Call
from mock_server.api.problems import ApiError
from mock_server.api.state import STATE, ServerState
from mock_server.resources import ADMIN_CONTRACT
from mock_server.sim.clock import ManualClock, ScaledClock
from mock_server.sim.model import Gpu
from mock_server.sim.scenarios import SCENARIOS
from mock_server.sim.simulator import paginate


def _state(request: web.Request) -> ServerState:
    return request.app[STATE]


def clock_view(state: ServerState) -> dict[str, Any]:
    clock = state.clock
    return {
        "kind": "manual" if isinstance(clock, ManualClock) else "real",
        "now_s": round(clock.now(), 6),
        "time_scale": clock.time_scale if isinstance(clock, ScaledClock) else 0.0,
        "now": render.timestamp(clock, clock.now()),
    }


def gpu_view(gpu: Gpu) -> dict[str, Any]:
    return {
        "gpu_id": gpu.gpu_id,
        "pool_id": gpu.pool_id,
        "healthy": gpu.healthy,
        "tflops": gpu.tflops,
        "vram_mb": gpu.vram_mb,
        "tflops_allocated": round(gpu.tflops_allocated, 6),
        "vram_mb_allocated": gpu.vram_mb_allocated,
        "inflight": gpu.inflight,
        "allocations": sorted(gpu.allocations),
    }


# Allocations per page of `/_admin/state` when the request names no `limit` (the reset answer's too).
STATE_PAGE = 1000


def state_view(state: ServerState, *, limit: int = STATE_PAGE, after_seq: int = 0) -> dict[str, Any]:
    sim = state.sim
    sim.tick()
    allocations, next_seq = paginate(sim.allocations.values(), after_seq, limit)
    return {
        "cell": sim.config.simulation.cell,
        "seed": sim.seed,
        "clock": clock_view(state),
        "pools": [render.pool(p) for p in sim.pool_stats()],
        "gpus": [gpu_view(g) for g in sim.gpus.values()],
        "allocations": [render.allocation(a, state.clock) for a in allocations],
        "next_cursor": cursor_for(next_seq),
        "rules": [r.describe() for r in sim.faults.rules],
        "journal_entries": len(state.journal),
    }


async def get_state(request: web.Request, call: Call) -> web.StreamResponse:
    after_seq = after_cursor(call.query.get("cursor"))
    return json_response(state_view(_state(request), limit=call.query["limit"], after_seq=after_seq))


async def reset(request: web.Request, call: Call) -> web.StreamResponse:
    state = _state(request)
    seed = call.body.get("seed") if call.body else None
    state.sim.reset(seed)
    state.journal.restart()
    state.latency.clear()
    state.reseed_request_ids()
    state.waiters.notify()
    return json_response(state_view(state))


async def list_faults(request: web.Request, call: Call) -> web.StreamResponse:
    return json_response({"rules": [r.describe() for r in _state(request).sim.faults.rules]})


async def add_fault(request: web.Request, call: Call) -> web.StreamResponse:
    rule = _state(request).sim.faults.add(call.body, source="api")
    return json_response(rule.describe(), status=201)


async def clear_faults(request: web.Request, call: Call) -> web.StreamResponse:
    _state(request).sim.faults.clear()
    return web.Response(status=204)


async def delete_fault(request: web.Request, call: Call) -> web.StreamResponse:
    _state(request).sim.faults.remove(call.path["rule_id"])
    return web.Response(status=204)


async def list_scenarios(request: web.Request, call: Call) -> web.StreamResponse:
    return json_response({"scenarios": [{"name": s.name, "description": s.description} for s in SCENARIOS.values()]})


async def apply_scenario(request: web.Request, call: Call) -> web.StreamResponse:
    rules = _state(request).sim.apply_scenario(call.path["name"])
    return json_response({"rules": [r.describe() for r in rules]}, status=201)


async def advance_clock(request: web.Request, call: Call) -> web.StreamResponse:
    state = _state(request)
    if not isinstance(state.clock, ManualClock):
        raise ApiError("clock_not_manual", "The clock is real; start the server with --clock manual to move it.")
    state.clock.advance(call.body["seconds"])
    state.sim.tick()
    state.waiters.notify()
    return json_response(clock_view(state))


async def get_journal(request: web.Request, call: Call) -> web.StreamResponse:
    q = call.query
    entries, next_since_seq = _state(request).journal.query(
        operation=q.get("operation"),
        status=q.get("status"),
        tenant_id=q.get("tenant_id"),
        allocation_id=q.get("allocation_id"),
        since_seq=q.get("since_seq", 0),
        limit=q["limit"],
    )
    return json_response({"entries": entries, "next_since_seq": next_since_seq})


async def clear_journal(request: web.Request, call: Call) -> web.StreamResponse:
    _state(request).journal.clear()
    return web.Response(status=204)


async def get_leaks(request: web.Request, call: Call) -> web.StreamResponse:
    state = _state(request)
    grace = call.query.get("grace_s", state.config.simulation.leak_grace_s)
    now = state.clock.now()
    leaks = [
        {
            "allocation_id": alloc.allocation_id,
            "tenant_id": alloc.tenant_id,
            "pool_id": alloc.pool_id,
            "state": alloc.state.value,
            "reason": reason,
            "age_s": round(now - alloc.created_at, 6),
            "request_id": alloc.request_id,
        }
        for alloc, reason in state.sim.leaks(grace, call.query.get("tenant_id"))
    ]
    return json_response({"leaks": leaks})


async def fail_gpu(request: web.Request, call: Call) -> web.StreamResponse:
    sim = _state(request).sim
    failed = sim.fail_gpu(call.path["gpu_id"])
    return json_response({"gpu": gpu_view(sim.gpu(call.path["gpu_id"])), "failed_allocations": failed})


async def recover_gpu(request: web.Request, call: Call) -> web.StreamResponse:
    gpu = _state(request).sim.recover_gpu(call.path["gpu_id"])
    return json_response({"gpu": gpu_view(gpu), "failed_allocations": []})


async def get_openapi_yaml(request: web.Request, call: Call) -> web.StreamResponse:
    return web.Response(text=Contract.load(ADMIN_CONTRACT).yaml_text, content_type="application/yaml")


async def get_openapi_json(request: web.Request, call: Call) -> web.StreamResponse:
    return web.Response(text=Contract.load(ADMIN_CONTRACT).json_text, content_type="application/json")


ADMIN_HANDLERS: dict[str, Handler] = {
    "adminGetState": get_state,
    "adminReset": reset,
    "adminListFaults": list_faults,
    "adminAddFault": add_fault,
    "adminClearFaults": clear_faults,
    "adminDeleteFault": delete_fault,
    "adminListScenarios": list_scenarios,
    "adminApplyScenario": apply_scenario,
    "adminAdvanceClock": advance_clock,
    "adminGetJournal": get_journal,
    "adminClearJournal": clear_journal,
    "adminGetLeaks": get_leaks,
    "adminFailGpu": fail_gpu,
    "adminRecoverGpu": recover_gpu,
    "adminGetOpenApiYaml": get_openapi_yaml,
    "adminGetOpenApiJson": get_openapi_json,
}
