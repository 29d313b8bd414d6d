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

from aiohttp import web
from aiohttp.typedefs import Handler as AiohttpHandler

from mock_server.api.contract import Contract, Operation
from mock_server.api.handlers import HANDLERS, Handler
from mock_server.api.inputs import read_call
from mock_server.api.metrics import ServerMetrics
from mock_server.api.problems import ApiError, render
from mock_server.api.state import REQUEST_ID, RESPONSE_DATA, STATE, ServerState, Waiters
from mock_server.config import MockConfig, default_config
from mock_server.sim.clock import MANUAL_EPOCH, Clock, ManualClock, ScaledClock
from mock_server.sim.errors import SimError
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
    return ScaledClock(
        sim.time_scale, time.monotonic, epoch=sim.start_time if sim.start_time is not None else time.time()
    )


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
    route_name = request.match_info.route.name
    operation = state.contract.operations.get(route_name) if route_name else None
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
    except Exception:
        log.exception("unhandled error in %s (request %s)", route_name, request_id)
        response = render(ApiError("internal_error", "The server failed to handle the request."), request_id)
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
        if state.strict and operation is not None:
            violations = response_violations(operation, response)
            if violations:
                detail = "; ".join(violations)
                strict_log.error(
                    "STRICT MODE: %s answered %s against the contract: %s", route_name, response.status, detail
                )
                response = render(
                    ApiError("internal_error", f"Strict mode: the response violated the contract: {detail}"), request_id
                )
                response.headers["X-Request-Id"] = request_id
    label = operation.operation_id if operation is not None else "unmatched"
    state.metrics.count_request(label, response.status, time.perf_counter() - started)
    return response


def _endpoint(
    operation: Operation, handler: Handler, max_bytes: int
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler of one operation: read and validate the call, then hand it over."""

    async def endpoint(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        call = await read_call(request, operation, state.sim, request[REQUEST_ID], max_bytes)
        return await handler(request, call)

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


def create_app(
    config: MockConfig | None = None, *, clock: Clock | None = None, contract: Contract | None = None
) -> web.Application:
    config = config or default_config()
    clock = clock or make_clock(config)
    contract = contract or Contract.load()
    check_routes(contract, HANDLERS)
    sim = Simulator(config, clock)
    max_bytes = config.server.max_body_bytes
    app = web.Application(middlewares=[request_middleware], client_max_size=max_bytes)
    app[STATE] = ServerState(
        config=config,
        clock=clock,
        sim=sim,
        contract=contract,
        metrics=ServerMetrics(sim),
        waiters=Waiters(sim),
        _ids=random.Random(stable_seed("request-ids", config.simulation.seed)),
    )
    for operation in contract.operations.values():
        handler = _endpoint(operation, HANDLERS[operation.operation_id], max_bytes)
        app.router.add_route(operation.method, operation.path, handler, name=operation.operation_id)
    app.cleanup_ctx.append(_lease_ticker)
    return app
