"""`create_app`: the aiohttp application serving the HostedAI contract from a simulator.

Routes are built from the contract's operations, each bound by `operationId` to its handler; start-up
fails if the two disagree. One middleware gives every response its `X-Request-Id`, renders every error
as problem+json, records metrics and, in strict mode, validates every response against the contract.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler as AiohttpHandler

from mock_server.api import faults
from mock_server.api.admin import ADMIN_HANDLERS
from mock_server.api.contract import Contract, Operation
from mock_server.api.dashboard import DASHBOARD_HANDLERS
from mock_server.api.faults import INJECTED
from mock_server.api.handlers import HANDLERS, Handler
from mock_server.api.inputs import read_call
from mock_server.api.journal import Journal, Outcome, operation_name
from mock_server.api.metrics import ServerMetrics
from mock_server.api.problems import ApiError, render
from mock_server.api.proxy import PROXY_RECORDER, UPSTREAM, Upstream, proxy_endpoint
from mock_server.api.proxy_record import ProxyRecorder
from mock_server.api.state import OUTCOME, REQUEST_ID, RESPONSE_DATA, STATE, ServerState, Waiters
from mock_server.config import ConfigError, MockConfig, default_config
from mock_server.dashboard.latency import LatencyWindow
from mock_server.resources import ADMIN_CONTRACT
from mock_server.sim.clock import MANUAL_EPOCH, Clock, ManualClock, ScaledClock
from mock_server.sim.errors import SimError
from mock_server.sim.faults import OPERATIONS
from mock_server.sim.scenarios import SCENARIOS
from mock_server.sim.simulator import Simulator
from mock_server.sim.textgen import stable_seed

log = logging.getLogger("mock_server")
strict_log = logging.getLogger("mock_server.strict")

# How often (real seconds) leases are checked when no request arrives to do it.
_TICK_INTERVAL_S = 0.25


def make_clock(config: MockConfig) -> Clock:
    sim = config.simulation
    if sim.clock == "manual":
        return ManualClock(epoch=sim.start_time if sim.start_time is not None else MANUAL_EPOCH)
    if sim.start_time is not None:
        return ScaledClock(sim.time_scale, time.monotonic, epoch=sim.start_time)
    # Anchored to the wall clock at every reset too: timestamps never jump back.
    return ScaledClock(sim.time_scale, time.monotonic, epoch=time.time(), wall=time.time)


def _from_http(exc: web.HTTPException) -> ApiError:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return ApiError(
            "method_not_allowed", f"{exc.method} is not allowed here; use {allowed}.", headers={"Allow": allowed}
        )
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return ApiError("payload_too_large", "The body is larger than the server accepts.")
    if isinstance(exc, web.HTTPNotFound):
        return ApiError("not_found", "No such path.")
    return ApiError("invalid_request", exc.reason)


def response_violations(operation: Operation, response: web.StreamResponse) -> list[str]:
    """How a response departs from the contract (status, media type, body schema, required headers)."""
    spec = operation.response_for(response.status)
    if spec is None:
        return [f"status {response.status} is not documented for {operation.operation_id}"]
    found: list[str] = []
    if spec.media_types:
        media_type = response.content_type
        if media_type not in spec.media_types:
            found.append(f"media type {media_type} is not one of {sorted(spec.media_types)}")
        else:
            schema = spec.media_types[media_type]
            if schema is not None and RESPONSE_DATA in response:
                found.extend(f"{v.path}: {v.message}" for v in schema.violations(response[RESPONSE_DATA], "/body"))
    elif isinstance(response, web.Response) and response.body:
        found.append(f"status {response.status} must have no body")
    found.extend(f"header {h} is missing" for h in spec.required_headers if h not in response.headers)
    return found


@web.middleware
async def request_middleware(request: web.Request, handler: AiohttpHandler) -> web.StreamResponse:
    state = request.app[STATE]
    request_id = state.request_id(request.headers.get("X-Request-Id"))
    request[REQUEST_ID] = request_id
    outcome = request[OUTCOME] = Outcome()
    route_name = request.match_info.route.name
    operation = state.operations.get(route_name) if route_name else None
    arrived_at = state.clock.now()
    started = time.perf_counter()
    try:
        response = await handler(request)
    except ApiError as exc:
        response = render(exc, request_id)
    except SimError as exc:
        response = render(ApiError.from_sim(exc), request_id)
    except web.HTTPException as exc:
        response = render(_from_http(exc), request_id)
    except asyncio.CancelledError:
        raise
    except ConnectionError:
        # The client went away (mid-body, or while waiting): nobody to answer, and not the server's fault.
        # Returned, not raised: aiohttp would log a raised one as an error; this answer is never sent.
        log.info("client went away during %s (request %s)", route_name or request.path, request_id)
        outcome.status_sent = False
        _settle(request, operation, CLIENT_GONE, outcome, arrived_at, started)
        return web.Response(status=CLIENT_GONE)
    except Exception:
        log.exception("unhandled error in %s (request %s)", route_name, request_id)
        response = render(ApiError("internal_error", "The server failed to handle the request."), request_id)
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
        injected = response.get(INJECTED) or (outcome.fault is not None and outcome.fault.spoils_answer)
        if state.strict and operation is not None and not injected:
            # An injected answer breaks the contract on purpose when its rule says so (a 529, a bad body).
            response = _enforce_contract(operation, response, request_id)
    _settle(request, operation, response.status, outcome, arrived_at, started)
    return response


# The status counted for a request whose client disconnected before its answer (nginx's convention).
CLIENT_GONE = 499


def _settle(
    request: web.Request, operation: Operation | None, status: int, outcome: Outcome, arrived_at: float, started: float
) -> None:
    """Count the request in the metrics and record it in the journal (control-plane requests aside)."""
    state = request.app[STATE]
    elapsed = time.perf_counter() - started
    label = operation.operation_id if operation is not None else "unmatched"
    state.metrics.count_request(label, status, elapsed)
    name = operation_name(operation.operation_id if operation is not None else None)
    if name != "admin":
        state.journal.record(
            request_id=request[REQUEST_ID],
            operation=name,
            method=request.method,
            path=request.path,
            status=status,
            outcome=outcome,
            at=arrived_at,
            duration_ms=elapsed * 1000,
        )


def _enforce_contract(operation: Operation, response: web.StreamResponse, request_id: str) -> web.StreamResponse:
    """Strict mode: a response that departs from the contract becomes a loud 500."""
    violations = response_violations(operation, response)
    if not violations:
        return response
    detail = "; ".join(violations)
    strict_log.error(
        "STRICT MODE: %s answered %s against the contract: %s", operation.operation_id, response.status, detail
    )
    error = render(ApiError("internal_error", f"Strict mode: the response violated the contract: {detail}"), request_id)
    error.headers["X-Request-Id"] = request_id
    return error


def _endpoint(
    operation: Operation, handler: Handler, config: MockConfig
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler of one operation: read and validate the call, let fault rules act, hand over."""
    name = operation_name(operation.operation_id)
    faultable = name in OPERATIONS
    max_bytes, admin_token = config.server.max_body_bytes, config.server.admin_token

    async def endpoint(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        outcome = request[OUTCOME]
        call = await read_call(request, operation, state.sim, request[REQUEST_ID], max_bytes, admin_token)
        if not faultable:
            return await handler(request, call)
        outcome.tenant_id = call.tenant_id
        outcome.idempotency_key = call.headers.get("Idempotency-Key")
        pool_id, model, alloc = faults.target(state, name, call)
        # The allocation the client asked about, found or not: "did it ever call release on X?"
        outcome.allocation_id = call.path.get("allocation_id") or (
            call.body.get("allocation_id") if name == "inference" else None
        )
        now = state.clock.now()
        decision = faults.decide(
            state, outcome, name, "before", now, tenant_id=call.tenant_id, pool_id=pool_id, model=model
        )
        if decision is not None:
            instead = await faults.before(request, state, decision, outcome, alloc)
            if instead is not None:
                return instead
        response = await handler(request, call)
        created = response.get(RESPONSE_DATA) if name == "allocate" else None
        if isinstance(created, dict) and response.status == 201:
            outcome.allocation_id = created["allocation_id"]
        late = faults.decide(state, outcome, name, "after", now, tenant_id=call.tenant_id, pool_id=pool_id, model=model)
        if late is not None:
            response = await faults.after(request, state, late, outcome, alloc, response)
        return await faults.shape_answer(request, outcome.fault, response)

    endpoint.__name__ = handler.__name__
    return endpoint


def check_routes(contract: Contract, handlers: dict[str, Handler]) -> None:
    """Fail at start-up when the contract and the handlers disagree."""
    missing = sorted(set(contract.operations) - set(handlers))
    extra = sorted(set(handlers) - set(contract.operations))
    if missing or extra:
        raise RuntimeError(f"contract and handlers disagree: no handler for {missing}, no operation for {extra}")


async def _lease_ticker(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]

    async def tick_forever() -> None:
        while True:
            await asyncio.sleep(_TICK_INTERVAL_S)
            state.sim.tick()

    task = asyncio.create_task(tick_forever()) if state.clock.waits else None
    yield
    if task is not None:
        task.cancel()


async def _end_streams(app: web.Application) -> None:
    # Before the server waits for open requests to finish: a dashboard stream would never finish.
    app[STATE].closing.set()


def validate_control_plane_config(config: MockConfig, admin: Contract) -> None:
    """Fault rules and scenarios of a config file, checked like the admin API checks them."""
    schema = admin.schema("FaultRuleInput")
    for i, rule in enumerate(config.faults):
        problems = schema.violations(rule, "")
        if problems:
            where = problems[0].path.lstrip("/").replace("/", ".")
            raise ConfigError(f"config key faults[{i}]{'.' + where if where else ''}: {problems[0].message}")
    for name in config.scenarios:
        if name not in SCENARIOS:
            raise ConfigError(f"config key scenarios: no scenario {name!r} (known: {', '.join(SCENARIOS)})")


# In proxy mode, what the proxy answers itself rather than forwarding: its own health, metrics and contract.
_LOCAL_OPERATIONS = frozenset({"getHealth", "getMetrics", "getOpenApiYaml", "getOpenApiJson"})


def create_app(
    config: MockConfig | None = None,
    *,
    clock: Clock | None = None,
    contract: Contract | None = None,
    upstream: str | None = None,
    record: Path | None = None,
) -> web.Application:
    """The mock's aiohttp app. Raises ConfigError for fault rules or scenarios the config gets wrong.
    With `upstream` (a HostedAI base URL), the fault proxy: the public API is forwarded there (`proxy.py`),
    and with `record` the upstream's answers are written there as a drift trace (`proxy_record.py`)."""
    config = config or default_config()
    contract = contract or Contract.load()
    admin = Contract.load(ADMIN_CONTRACT)
    validate_control_plane_config(config, admin)
    check_routes(contract, HANDLERS)
    admin_handlers = {**ADMIN_HANDLERS, **DASHBOARD_HANDLERS}
    check_routes(admin, admin_handlers)
    clock = clock or make_clock(config)
    sim = Simulator(config, clock)
    app = web.Application(middlewares=[request_middleware], client_max_size=config.server.max_body_bytes)
    routes = [(op, HANDLERS[op.operation_id]) for op in contract.operations.values()]
    if config.server.admin_token is not None:
        # Without a token there is no control plane at all: its paths are 404s.
        routes += [(op, admin_handlers[op.operation_id]) for op in admin.operations.values()]
    app[STATE] = ServerState(
        config=config,
        clock=clock,
        sim=sim,
        contract=contract,
        operations={op.operation_id: op for op, _ in routes},
        metrics=ServerMetrics(sim),
        waiters=Waiters(sim),
        journal=Journal(config.simulation.journal_size),
        latency=LatencyWindow(time.monotonic),
        _ids=random.Random(stable_seed("request-ids", sim.id_seed)),
    )
    public = set(contract.operations)
    for operation, handler in routes:
        if upstream is not None and operation.operation_id in public - _LOCAL_OPERATIONS:
            endpoint = proxy_endpoint(operation)
        else:
            endpoint = _endpoint(operation, handler, config)
        app.router.add_route(operation.method, operation.path, endpoint, name=operation.operation_id)
    if upstream is not None:
        app[UPSTREAM] = forwarder = Upstream(upstream)
        app.cleanup_ctx.append(forwarder.session_context)
        if record is not None:
            app[PROXY_RECORDER] = recorder = ProxyRecorder(record, upstream)

            async def close_trace(_: web.Application) -> None:
                recorder.close()

            app.on_cleanup.append(close_trace)
    app.cleanup_ctx.append(_lease_ticker)
    app.on_shutdown.append(_end_streams)
    return app
