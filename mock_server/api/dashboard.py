"""The dashboard's endpoints (`contracts/admin.v1.yaml`): the page and its files, the snapshot, and
the stream that pushes the snapshot to the page.

The page (`/_admin/ui`) carries no data, so it loads without the token; the page then asks for the
token once, keeps it in the tab's `sessionStorage` and sends it as `X-Admin-Token` on every call,
the stream included: the stream is read with `fetch`, not `EventSource` (which cannot send a header),
so the token never appears in a URL. Server push over server-sent events from a plain
`StreamResponse`: one writer, one event type, nothing for a library to add.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Any

import orjson
from aiohttp import web

from mock_server.api.admin import clock_view
from mock_server.api.contract import Contract
from mock_server.api.handlers import Handler, json_response
from mock_server.api.inputs import Call
from mock_server.api.problems import ApiError, problem_body
from mock_server.api.state import STATE, ServerState
from mock_server.dashboard import snapshot
from mock_server.resources import ADMIN_CONTRACT, DASHBOARD_STATIC

log = logging.getLogger("mock_server.strict")

_MEDIA_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
# The page runs only its own files and talks only to its own origin: a script injected through a
# journal entry (paths are client input) could neither run nor send the token anywhere.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# A stream whose client stopped reading is dropped once a write has waited this long (real seconds).
_STALLED_WRITE_S = 30.0
# The most of the server's time one stream may take: where a snapshot is slow to build (a huge
# cluster, a busy machine), pushes come less often than asked instead of starving the API.
MAX_SHARE = 0.05


@functools.cache
def _static_file(name: str) -> bytes | None:
    """A file of the page, read once (the contract's pattern for `asset` admits no path)."""
    path = DASHBOARD_STATIC / name
    return path.read_bytes() if path.is_file() else None


def _state(request: web.Request) -> ServerState:
    return request.app[STATE]


def view_of(state: ServerState, query: dict[str, Any]) -> snapshot.View:
    return snapshot.View(
        pool_id=query.get("pool_id"),
        gpu_sort=query["gpu_sort"],
        gpu_offset=query["gpu_offset"],
        gpu_limit=query["gpu_limit"],
        allocation_state=query.get("allocation_state"),
        allocation_limit=query["allocation_limit"],
        leak_grace_s=query.get("leak_grace_s", state.config.simulation.leak_grace_s),
    )


def dashboard_of(state: ServerState, view: snapshot.View, query: dict[str, Any]) -> dict[str, Any]:
    journal = state.journal
    tail = journal.tail(
        query["journal_limit"],
        operation=query.get("journal_operation"),
        status=query.get("journal_status"),
        tenant_id=query.get("journal_tenant_id"),
    )
    return snapshot.build(
        state.sim,
        view,
        clock=clock_view(state),
        latency=state.latency,
        journal=snapshot.JournalTail(tail, len(journal)),
        allocates_waiting=state.waiters.waiting,
    )


async def get_dashboard(request: web.Request, call: Call) -> web.StreamResponse:
    state = _state(request)
    return json_response(dashboard_of(state, view_of(state, call.query), call.query))


def next_push_in(interval_s: float, built_in_s: float) -> float:
    """Real seconds until the next push: the interval asked for, stretched so that building snapshots
    takes at most `MAX_SHARE` of the time."""
    return max(interval_s, built_in_s / MAX_SHARE)


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _violations(data: dict[str, Any]) -> str:
    found = Contract.load(ADMIN_CONTRACT).schema("Dashboard").violations(data, "/event")
    return "; ".join(f"{v.path}: {v.message}" for v in found)


async def stream_dashboard(request: web.Request, call: Call) -> web.StreamResponse:
    state = _state(request)
    view = view_of(state, call.query)
    data = dashboard_of(state, view, call.query)  # an unknown pool is a 404, before the stream starts
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # a proxy in front (nginx) must not hold the events back
            "X-Request-Id": call.request_id,
        },
    )
    await response.prepare(request)
    interval = call.query["interval_s"]
    built_in = 0.0
    try:
        while True:
            if state.strict and (detail := _violations(data)):
                log.error("STRICT MODE: a dashboard snapshot violates the contract: %s", detail)
                error = ApiError("internal_error", f"Strict mode: the snapshot violated the contract: {detail}")
                await response.write(_event("error", problem_body(error, call.request_id)))
                break
            await asyncio.wait_for(response.write(_event("snapshot", data)), _STALLED_WRITE_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.closing.wait(), next_push_in(interval, built_in))
            if state.closing.is_set():
                break
            started = time.perf_counter()
            data = dashboard_of(state, view, call.query)
            built_in = time.perf_counter() - started
        await response.write_eof()
    except ConnectionResetError:
        return response  # the viewer went away
    except TimeoutError:
        # The viewer stopped reading: drop it rather than hold its events forever.
        if request.transport is not None:
            request.transport.close()
    return response


async def get_page(request: web.Request, call: Call) -> web.StreamResponse:
    page = _static_file("index.html")
    assert page is not None, f"the dashboard page is missing from {DASHBOARD_STATIC}"
    return web.Response(body=page, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS)


async def get_asset(request: web.Request, call: Call) -> web.StreamResponse:
    name = call.path["asset"]
    body = _static_file(name)
    if body is None:
        raise ApiError("not_found", f"No dashboard file {name}.")
    media_type = _MEDIA_TYPES[name[name.rindex(".") :]]
    return web.Response(body=body, content_type=media_type, charset="utf-8", headers=_PAGE_HEADERS)


DASHBOARD_HANDLERS: dict[str, Handler] = {
    "adminGetDashboard": get_dashboard,
    "adminStreamDashboard": stream_dashboard,
    "adminDashboardPage": get_page,
    "adminDashboardAsset": get_asset,
}
