"""The fan-out: the control plane of N cells at one URL (`hostedai-mock fanout`, docs/cells.md).

It answers the `/_admin` calls of `contracts/admin.v1.yaml` that a test run makes (state, reset,
faults, scenarios, clock, journal, leaks, GPU failures) by making each of them on every cell, then
judging and merging the answers (`verdict`, `merge`, `rules`). It holds no token: the caller's
`X-Admin-Token` goes to the cells, which check it, so a wrong one is their 401, relayed. Cells validate
what is sent to them; the fan-out validates only what it reads itself (paging parameters). Handlers are
thin; every error is problem+json through `mock_server.api.problems`.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from mock_server.api.problems import ApiError, dump_json, render
from mock_server.api.state import CLIENT_REQUEST_ID
from mock_server.cells import merge
from mock_server.cells.rules import RuleIds, combine
from mock_server.cells.topology import Cell
from mock_server.cells.verdict import Agreed, Answer, Broken, Relay, Unreachable, judge
from mock_server.version import __version__

ADMIN = "/_admin"
# Allocations fetched per page from each cell to build the merged state (the contract's maximum).
CELL_STATE_PAGE = 10_000
_FAULT_ID = re.compile(r"^fault_[0-9]{1,9}$")
_CURSOR = re.compile(r"^c[0-9]{1,12}$")
# Path parameters are checked before they go into a cell's URL (aiohttp has decoded them: `%2F` is `/`).
_SCENARIO = re.compile(r"^[a-z0-9\-]{1,64}$")
_GPU_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


class _Reply(Exception):
    """A cell's refusal, relayed as it was sent (a 4xx every cell gave alike)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


class FanOut:
    """The cells, one HTTP session to them, and the fault ids handed out."""

    def __init__(self, cells: list[Cell], timeout_s: float) -> None:
        self.cells = cells
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.rules = RuleIds()
        # Calls that change the cells run one at a time, so every cell sees them in the same order and
        # the id table is never read half-updated.
        self.lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self.timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(
        self,
        request: web.Request,
        method: str,
        path: str,
        *,
        query: Callable[[int], Mapping[str, str]] | None = None,
        cells: Mapping[str, str] | None = None,
    ) -> list[Answer]:
        """`method path` on every cell (or, with `cells`, on those named, each at its own path), with the
        caller's token, request id, query (`query(index)`) and body; the 2xx answers, in cell order.
        A refusal every cell gave alike is relayed; anything else that is not 2xx is a 502."""
        body = await request.read()
        headers = {"X-Request-Id": request[REQUEST_ID]}
        if "X-Admin-Token" in request.headers:
            headers["X-Admin-Token"] = request.headers["X-Admin-Token"]
        if body:
            headers["Content-Type"] = request.headers.get("Content-Type", "application/octet-stream")
        targets = [
            (index, cell, path if cells is None else cells[cell.name])
            for index, cell in enumerate(self.cells)
            if cells is None or cell.name in cells
        ]
        answers = await asyncio.gather(
            *(
                self._one(cell, method, target, query(index) if query else request.query, body, headers)
                for index, cell, target in targets
            )
        )
        verdict = judge(list(answers))
        if isinstance(verdict, Relay):
            raise _Reply(verdict.answer)
        if isinstance(verdict, Broken):
            raise ApiError("bad_gateway", verdict.detail, extra={"cells": verdict.cells})
        assert isinstance(verdict, Agreed)
        return verdict.answers

    async def _one(
        self, cell: Cell, method: str, path: str, query: Mapping[str, str], body: bytes, headers: dict[str, str]
    ) -> Answer | Unreachable:
        assert self._session is not None, "the fan-out is not started"
        try:
            async with self._session.request(
                method, cell.url + path, params=dict(query), data=body or None, headers=headers
            ) as resp:
                raw = await resp.read()
                content_type = resp.headers.get("Content-Type", "")
                status, retry_after = resp.status, resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            said = f": {exc}" if str(exc) else ""
            return Unreachable(cell, f"no answer ({type(exc).__name__}{said})")
        try:
            parsed = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return Unreachable(cell, f"answered {status} with a body that is not JSON")
        return Answer(cell, status, parsed, raw, content_type, retry_after)


FANOUT = web.AppKey("fanout", FanOut)
REQUEST_ID = web.RequestKey("request_id", str)


def _fanout(request: web.Request) -> FanOut:
    return request.app[FANOUT]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=dump_json(data), content_type="application/json")


def _path_param(request: web.Request, name: str, pattern: re.Pattern[str]) -> str:
    value = request.match_info[name]
    if not pattern.match(value):
        raise ApiError(
            "validation_failed",
            f"Path parameter {name} does not match {pattern.pattern}.",
            extra={"errors": [{"path": f"path.{name}", "message": f"does not match {pattern.pattern}"}]},
        )
    return value


def _int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,16}", raw) or not low <= int(raw) <= high:
        raise ApiError(
            "validation_failed",
            f"Query parameter {name} must be an integer from {low} to {high}.",
            extra={"errors": [{"path": f"query.{name}", "message": f"not an integer in [{low}, {high}]"}]},
        )
    return int(raw)


# ---- handlers ---------------------------------------------------------------------------------------


async def get_health(request: web.Request) -> web.Response:
    return _json({"status": "ok", "version": __version__, "cells": [c.name for c in _fanout(request).cells]})


async def get_state(request: web.Request) -> web.Response:
    limit = _int(request.query, "limit", 1000, 1, 10_000)
    cursor = request.query.get("cursor")
    if cursor is not None and not _CURSOR.match(cursor):
        raise ApiError("validation_failed", "Query parameter cursor must be a next_cursor of this fan-out.")
    fanout = _fanout(request)
    states = await _full_states(request, fanout)
    rules = fanout.rules.merge({cell.name: s["rules"] for cell, s in states})
    offset = int(cursor[1:]) if cursor else 0
    return _json(merge.state(states, rules, offset=offset, limit=limit))


async def _full_states(request: web.Request, fanout: FanOut) -> list[tuple[Cell, dict[str, Any]]]:
    """Every cell's state with all its allocations (its pages followed, all cells in step)."""
    pages = await fanout.call(request, "GET", f"{ADMIN}/state", query=lambda _: {"limit": str(CELL_STATE_PAGE)})
    states = [(a.cell, dict(a.body)) for a in pages]
    cursors = {a.cell.name: a.body["next_cursor"] for a in pages if a.body["next_cursor"]}
    while cursors:
        following = await fanout.call(
            request,
            "GET",
            f"{ADMIN}/state",
            cells={name: f"{ADMIN}/state" for name in cursors},
            query=_next_page(fanout, cursors),
        )
        for answer in following:
            whole = next(s for cell, s in states if cell.name == answer.cell.name)
            whole["allocations"] = [*whole["allocations"], *answer.body["allocations"]]
        cursors = {a.cell.name: a.body["next_cursor"] for a in following if a.body["next_cursor"]}
    return states


def _next_page(fanout: FanOut, cursors: dict[str, str]) -> Callable[[int], Mapping[str, str]]:
    return lambda index: {"limit": str(CELL_STATE_PAGE), "cursor": cursors[fanout.cells[index].name]}


async def reset(request: web.Request) -> web.Response:
    fanout = _fanout(request)
    async with fanout.lock:
        answers = await fanout.call(request, "POST", f"{ADMIN}/reset")
        fanout.rules.clear()
        states = [(a.cell, a.body) for a in answers]
        rules = fanout.rules.merge({cell.name: s["rules"] for cell, s in states})
    return _json(merge.state(states, rules, offset=0, limit=1000))


async def list_faults(request: web.Request) -> web.Response:
    fanout = _fanout(request)
    async with fanout.lock:
        answers = await fanout.call(request, "GET", f"{ADMIN}/faults")
        return _json({"rules": fanout.rules.merge({a.cell.name: a.body["rules"] for a in answers})})


async def add_fault(request: web.Request) -> web.Response:
    fanout = _fanout(request)
    async with fanout.lock:
        answers = await fanout.call(request, "POST", f"{ADMIN}/faults")
        rule_id = fanout.rules.add({a.cell.name: a.body["id"] for a in answers})
    return _json(combine(rule_id, [a.body for a in answers]), status=201)


async def clear_faults(request: web.Request) -> web.Response:
    fanout = _fanout(request)
    async with fanout.lock:
        await fanout.call(request, "DELETE", f"{ADMIN}/faults")
        fanout.rules.clear()
    return web.Response(status=204)


async def delete_fault(request: web.Request) -> web.Response:
    rule_id = _path_param(request, "rule_id", _FAULT_ID)
    fanout = _fanout(request)
    async with fanout.lock:
        ids = fanout.rules.lookup(rule_id)
        if ids is None:
            raise ApiError("not_found", f"No fault rule {rule_id} (GET /_admin/faults lists the fan-out's ids).")
        await fanout.call(request, "DELETE", "", cells={cell: f"{ADMIN}/faults/{cid}" for cell, cid in ids.items()})
        fanout.rules.forget(rule_id)
    return web.Response(status=204)


async def list_scenarios(request: web.Request) -> web.Response:
    answers = await _fanout(request).call(request, "GET", f"{ADMIN}/scenarios")
    return _json(answers[0].body)


async def apply_scenario(request: web.Request) -> web.Response:
    fanout = _fanout(request)
    async with fanout.lock:
        answers = await fanout.call(request, "POST", f"{ADMIN}/scenarios/{_path_param(request, 'name', _SCENARIO)}")
        listed = [a.body["rules"] for a in answers]
        if len({len(rules) for rules in listed}) != 1:
            counts = ", ".join(f"{a.cell.name} {len(a.body['rules'])}" for a in answers)
            raise ApiError("bad_gateway", f"The cells added different numbers of rules ({counts}).")
        added = []
        for copies in zip(*listed, strict=True):
            rule_id = fanout.rules.add({a.cell.name: rule["id"] for a, rule in zip(answers, copies, strict=True)})
            added.append(combine(rule_id, list(copies)))
    return _json({"rules": added}, status=201)


async def advance_clock(request: web.Request) -> web.Response:
    fanout = _fanout(request)
    async with fanout.lock:
        answers = await fanout.call(request, "POST", f"{ADMIN}/clock/advance")
    # Every cell moved by the same seconds from the same start: the first one's clock is theirs.
    return _json(answers[0].body)


async def get_journal(request: web.Request) -> web.Response:
    since = _int(request.query, "since_seq", 0, 0, 2**53)
    limit = _int(request.query, "limit", 1000, 1, 100_000)
    fanout = _fanout(request)
    count = len(fanout.cells)
    passed = {k: v for k, v in request.query.items() if k not in ("since_seq", "limit")}

    def query(index: int) -> dict[str, str]:
        return {**passed, "since_seq": str(merge.cell_since(since, index, count)), "limit": str(limit)}

    answers = await fanout.call(request, "GET", f"{ADMIN}/journal", query=query)
    page = merge.journal_page([a.body for a in answers], limit)
    for entry in page["entries"]:
        entry["cell"] = fanout.cells[entry["seq"] % count].name
    return _json(page)


async def clear_journal(request: web.Request) -> web.Response:
    await _fanout(request).call(request, "DELETE", f"{ADMIN}/journal")
    return web.Response(status=204)


async def get_leaks(request: web.Request) -> web.Response:
    answers = await _fanout(request).call(request, "GET", f"{ADMIN}/leaks")
    return _json(merge.leaks([(a.cell, a.body) for a in answers]))


def _gpu_event(action: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        gpu_id = _path_param(request, "gpu_id", _GPU_ID)
        fanout = _fanout(request)
        async with fanout.lock:
            answers = await fanout.call(request, "POST", f"{ADMIN}/gpus/{gpu_id}/{action}")
        # Identical configs have the same GPUs: the one named fails (or recovers) in every cell.
        failed = [alloc for a in answers for alloc in a.body["failed_allocations"]]
        return _json({"gpu": answers[0].body["gpu"], "failed_allocations": failed})

    return handler


# ---- the application ---------------------------------------------------------------------------------


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
_NO_ROUTE = "The fan-out serves the control plane's calls listed in docs/cells.md."
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    sent = request.headers.get("X-Request-Id")
    request[REQUEST_ID] = sent if sent and CLIENT_REQUEST_ID.match(sent) else f"req_{secrets.token_hex(8)}"
    try:
        response = await handler(request)
    except _Reply as reply:
        answer = reply.answer
        response = web.Response(status=answer.status, body=answer.raw)
        response.content_type = answer.content_type.split(";")[0] or "application/problem+json"
        if answer.retry_after is not None:
            response.headers["Retry-After"] = answer.retry_after
    except ApiError as error:
        response = render(error, request[REQUEST_ID])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        # A 2xx whose body lacks what the contract promises (a cell of another version, or not a mock):
        # the cells' fault, answered as a gateway's, never as the fan-out's own 500.
        detail = f"A cell's answer does not have the control plane contract's shape ({type(exc).__name__}: {exc})."
        response = render(ApiError("bad_gateway", detail), request[REQUEST_ID])
    except web.HTTPException as exc:
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status, "invalid_request"
        )
        detail = (
            "The fan-out serves the control plane's calls listed in docs/cells.md." if exc.status == 404 else exc.reason
        )
        response = render(ApiError(code, detail, status=exc.status), request[REQUEST_ID])
    response.headers["X-Request-Id"] = request[REQUEST_ID]
    return response


def create_fanout_app(cells: list[Cell], *, timeout_s: float = 30.0) -> web.Application:
    app = web.Application(middlewares=[_problems])
    fanout = FanOut(cells, timeout_s)
    app[FANOUT] = fanout

    async def session(app: web.Application) -> Any:
        await fanout.start()
        yield
        await fanout.close()

    app.cleanup_ctx.append(session)
    routes = [
        web.get("/health", get_health),
        web.get(f"{ADMIN}/state", get_state),
        web.post(f"{ADMIN}/reset", reset),
        web.get(f"{ADMIN}/faults", list_faults),
        web.post(f"{ADMIN}/faults", add_fault),
        web.delete(f"{ADMIN}/faults", clear_faults),
        web.delete(f"{ADMIN}/faults/{{rule_id}}", delete_fault),
        web.get(f"{ADMIN}/scenarios", list_scenarios),
        web.post(f"{ADMIN}/scenarios/{{name}}", apply_scenario),
        web.post(f"{ADMIN}/clock/advance", advance_clock),
        web.get(f"{ADMIN}/journal", get_journal),
        web.delete(f"{ADMIN}/journal", clear_journal),
        web.get(f"{ADMIN}/leaks", get_leaks),
        web.post(f"{ADMIN}/gpus/{{gpu_id}}/fail", _gpu_event("fail")),
        web.post(f"{ADMIN}/gpus/{{gpu_id}}/recover", _gpu_event("recover")),
    ]
    app.add_routes(routes)
    return app
