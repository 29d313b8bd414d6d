"""A catalogue of broken HostedAI servers: the real mock with one behaviour broken, each a defect a team
could meet in a real provider, and the harness check that must flag it in live mode.

A defect breaks the mock in one of three ways: a config change (a rate limit, a fault rule), a patch of
the simulator or the HTTP layer (`patch`, applied with `pytest.MonkeyPatch`), or an aiohttp middleware
outside the mock's own (`middleware`) that rewrites what goes on the wire.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp import web

from harness.suites.contract import judges
from mock_server.api import inference, inputs, render
from mock_server.sim import errors, ledger, textgen
from mock_server.sim.idempotency import IdempotencyStore, as_first_answered
from mock_server.sim.model import Allocation, Gpu
from mock_server.sim.simulator import Simulator

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Defect:
    name: str
    description: str
    check: str
    """The harness check named for this defect: it must fail."""
    patch: Callable[[pytest.MonkeyPatch], None] | None = None
    middleware: Middleware | None = None
    config: dict[str, Any] | None = None
    """Sections merged into the default config (e.g. a tenant's rate limit)."""
    owned: bool = False
    """Only a run that owns the target (its control plane) can tell: a correct live service may answer the
    same (usage totals above the records: older records may be dropped, by contract)."""


# ---- wire rewrites ---------------------------------------------------------------------------------


def _rewrite(
    when: Callable[[web.Request, web.Response], bool], change: Callable[[web.Request, web.Response], web.Response]
) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if isinstance(response, web.Response) and not response.prepared and when(request, response):
            return change(request, response)
        return response

    return middleware


def _json(response: web.Response) -> Any:
    return orjson.loads(response.body) if isinstance(response.body, bytes) and response.body else None


def _with_body(
    response: web.Response, body: Any, status: int | None = None, content_type: str | None = None
) -> web.Response:
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
    return web.Response(
        status=status or response.status,
        body=orjson.dumps(body),
        headers=headers,
        content_type=content_type or response.content_type,
    )


def _is(method: str, path_prefix: str, status: int | None = None) -> Callable[[web.Request, web.Response], bool]:
    def when(request: web.Request, response: web.Response) -> bool:
        return (
            request.method == method
            and request.path.startswith(path_prefix)
            and (status is None or response.status == status)
        )

    return when


def _status(status: int) -> Callable[[web.Request, web.Response], bool]:
    return lambda request, response: response.status == status


def _drop_header(name: str) -> Callable[[web.Request, web.Response], web.Response]:
    def change(request: web.Request, response: web.Response) -> web.Response:
        response.headers.popall(name, None)
        return response

    return change


def _set_status(status: int, **fields: Any) -> Callable[[web.Request, web.Response], web.Response]:
    def change(request: web.Request, response: web.Response) -> web.Response:
        body = _json(response)
        if isinstance(body, dict):
            body = {**body, "status": status, **fields}
            return _with_body(response, body, status)
        response.set_status(status)
        return response

    return change


def _new_request_id(request: web.Request, response: web.Response) -> web.Response:
    response.headers["X-Request-Id"] = f"req_{uuid.uuid4().hex[:16]}"
    return response


def _problem_as_json(request: web.Request, response: web.Response) -> web.Response:
    return _with_body(response, _json(response), content_type="application/json")


def _release_200(request: web.Request, response: web.Response) -> web.Response:
    headers = {"X-Request-Id": response.headers.get("X-Request-Id", "")}
    return web.Response(status=200, body=b"{}", content_type="application/json", headers=headers)


def _released_reads_active(request: web.Request, response: web.Response) -> web.Response:
    body = _json(response)
    if isinstance(body, dict) and body.get("state") == "released":
        return _with_body(response, {**body, "state": "active", "ended_at": None, "end_reason": None})
    return response


async def _serve_released(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answers an inference on a released allocation as if it had run."""
    response = await handler(request)
    if request.path == "/v1/inference" and isinstance(response, web.Response) and response.status == 409:
        sent = orjson.loads(await request.read())
        body = {
            "inference_id": "inf_0000000000000000",
            "allocation_id": sent.get("allocation_id"),
            "model": "gemma-270m",
            "output": " done",
            "finish_reason": "stop",
            "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
            "timings": {"queue_ms": 0.0, "ttft_ms": 1.0, "total_ms": 1.0},
        }
        return _with_body(response, body, 200, "application/json")
    return response


# ---- simulator patches -----------------------------------------------------------------------------


def _ignore_idempotency(mp: pytest.MonkeyPatch) -> None:
    real = Simulator.allocate

    def forgetful(self: Simulator, tenant_id: str, spec: Any, **kwargs: Any) -> Any:
        return real(self, tenant_id, spec, request_id=kwargs["request_id"])

    mp.setattr(Simulator, "allocate", forgetful)


def _ignore_conflicts(mp: pytest.MonkeyPatch) -> None:
    real = IdempotencyStore.replay

    def lenient(self: IdempotencyStore, tenant_id: str, key: str, fingerprint: str) -> Allocation | None:
        record = self._records.get(tenant_id, {}).get(key)
        return as_first_answered(record.allocation) if record is not None else real(self, tenant_id, key, fingerprint)

    mp.setattr(IdempotencyStore, "replay", lenient)


def _keep_capacity(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(Gpu, "give_back", lambda self, alloc: None)


def _release_conflicts(mp: pytest.MonkeyPatch) -> None:
    real = Simulator.release

    def strict(self: Simulator, tenant_id: str, allocation_id: str) -> Allocation:
        alloc = self.get_allocation(tenant_id, allocation_id)
        if not alloc.active:
            raise errors.AllocationNotActive("already ended", alloc.state.value)
        return real(self, tenant_id, allocation_id)

    mp.setattr(Simulator, "release", strict)


def _any_tenant_reads(mp: pytest.MonkeyPatch) -> None:
    def any_tenant(self: Simulator, tenant_id: str, allocation_id: str) -> Allocation:
        alloc = self.allocations.get(allocation_id)
        if alloc is None:
            raise errors.NotFound(f"No allocation {allocation_id}.")
        return alloc

    mp.setattr(Simulator, "get_allocation", any_tenant)


def _any_tenant_releases(mp: pytest.MonkeyPatch) -> None:
    real = Simulator.release

    def careless(self: Simulator, tenant_id: str, allocation_id: str) -> Allocation:
        alloc = self.allocations.get(allocation_id)
        if alloc is not None and alloc.tenant_id != tenant_id:
            return real(self, alloc.tenant_id, allocation_id)
        return real(self, tenant_id, allocation_id)

    mp.setattr(Simulator, "release", careless)


def _list_with(**override: Any) -> Callable[[pytest.MonkeyPatch], None]:
    def patch(mp: pytest.MonkeyPatch) -> None:
        real = Simulator.list_allocations

        def listing(self: Simulator, tenant_id: str, **kwargs: Any) -> Any:
            return real(self, tenant_id, **{**kwargs, **override})

        mp.setattr(Simulator, "list_allocations", listing)

    return patch


def _pages_repeat(mp: pytest.MonkeyPatch) -> None:
    real = Simulator.list_allocations

    def repeating(self: Simulator, tenant_id: str, *, after_seq: int = 0, **kwargs: Any) -> Any:
        return real(self, tenant_id, after_seq=max(0, after_seq - 1), **kwargs)

    mp.setattr(Simulator, "list_allocations", repeating)


def _pages_skip(mp: pytest.MonkeyPatch) -> None:
    real = Simulator.list_allocations

    def skipping(self: Simulator, tenant_id: str, *, limit: int = 100, **kwargs: Any) -> Any:
        page, _ = real(self, tenant_id, limit=limit + 1, **kwargs)
        if len(page) > limit:
            return page[:limit], page[limit].seq  # the cursor steps over one allocation
        return page, None

    mp.setattr(Simulator, "list_allocations", skipping)


def _ignore_max_tokens(mp: pytest.MonkeyPatch) -> None:
    real = textgen.generate
    mp.setattr(textgen, "generate", lambda draws, max_tokens, stop=None: real(draws, 10_000, stop))


def _no_done_event(mp: pytest.MonkeyPatch) -> None:
    real = inference.event
    mp.setattr(inference, "event", lambda name, data: b"" if name == "done" else real(name, data))


def _first_token_lost(mp: pytest.MonkeyPatch) -> None:
    real = inference.event
    mp.setattr(
        inference, "event", lambda name, data: b"" if name == "token" and data["index"] == 0 else real(name, data)
    )


def _bill_double_prompt(mp: pytest.MonkeyPatch) -> None:
    real = ledger.Ledger.record

    def doubled(self: ledger.Ledger, *args: Any, **kwargs: Any) -> ledger.UsageRecord:
        record = real(self, *args, **kwargs)
        return dataclasses.replace(record, prompt_tokens=2 * record.prompt_tokens)

    mp.setattr(ledger.Ledger, "record", doubled)


def _totals_off(mp: pytest.MonkeyPatch) -> None:
    real = ledger.Ledger.totals

    def off(self: ledger.Ledger, *args: Any, **kwargs: Any) -> ledger.UsageTotals:
        totals = real(self, *args, **kwargs)
        return dataclasses.replace(totals, cost=totals.cost + 0.5)

    mp.setattr(ledger.Ledger, "totals", off)


def _totals_under(mp: pytest.MonkeyPatch) -> None:
    real = ledger.Ledger.totals

    def under(self: ledger.Ledger, *args: Any, **kwargs: Any) -> ledger.UsageTotals:
        totals = real(self, *args, **kwargs)
        return dataclasses.replace(totals, completion_tokens=max(0, totals.completion_tokens - 1))

    mp.setattr(ledger.Ledger, "totals", under)


def _floats_kept(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(inputs, "integral", lambda value: value)


def _gpus_as_text(mp: pytest.MonkeyPatch) -> None:
    real = render.pool
    mp.setattr(render, "pool", lambda stats: {**real(stats), "gpus": str(stats.gpus)})


def _validation_crashes(mp: pytest.MonkeyPatch) -> None:
    real = inputs._body

    async def crashing(request: Any, operation: Any, max_bytes: int) -> Any:
        body, found = await real(request, operation, max_bytes)
        if found:
            raise RuntimeError("validation crashed")
        return body, found

    mp.setattr(inputs, "_body", crashing)


# On the real clock, so the bucket refills as a live service's does (the manual clock never moves here).
RATE_LIMITED = {
    "simulation": {"clock": "real"},
    "tenants": {"dev": {"api_keys": ["dev-key"], "rate_limit": {"rps": 5, "burst": 6}}},
}
FLAKY_POOLS = {
    "faults": [
        {
            "match": {"operation": "pools"},
            "skip": 3,
            "times": 2,
            "action": {"type": "error", "status": 503, "code": "unavailable"},
        }
    ]
}

CATALOGUE: tuple[Defect, ...] = (
    Defect(
        "allocate-200",
        "allocate answers 200 instead of 201",
        judges.ALLOCATE_201,
        middleware=_rewrite(_is("POST", "/v1/allocate", 201), _set_status(200)),
    ),
    Defect(
        "no-location",
        "a new allocation comes without its Location header",
        judges.ALLOCATE_201,
        middleware=_rewrite(_is("POST", "/v1/allocate", 201), _drop_header("Location")),
    ),
    Defect(
        "request-id-not-echoed",
        "X-Request-Id is always the server's own, never the client's",
        judges.REQUEST_ID,
        middleware=_rewrite(lambda q, r: True, _new_request_id),
    ),
    Defect(
        "problem-as-json",
        "errors are served as application/json, not problem+json",
        judges.PROBLEMS,
        middleware=_rewrite(lambda q, r: r.content_type == "application/problem+json", _problem_as_json),
    ),
    Defect(
        "wrong-problem-code",
        "a 404 carries the code `missing` instead of `not_found`",
        judges.PROBLEMS,
        middleware=_rewrite(_status(404), _set_status(404, code="missing")),
    ),
    Defect(
        "problem-request-id",
        "a problem's request_id differs from its X-Request-Id",
        judges.PROBLEMS,
        middleware=_rewrite(_status(404), _set_status(404, request_id="req_somewhere_else")),
    ),
    Defect(
        "unauthorized-as-403",
        "a wrong key is answered 403 instead of 401",
        judges.PROBLEMS,
        middleware=_rewrite(_status(401), _set_status(403)),
    ),
    Defect(
        "validation-as-400",
        "a schema violation is a 400 invalid_request instead of 422",
        judges.PROBLEMS,
        middleware=_rewrite(_status(422), _set_status(400, code="invalid_request")),
    ),
    Defect(
        "429-without-retry-after",
        "rate limiting (429) without Retry-After",
        judges.RETRY_AFTER,
        middleware=_rewrite(_status(429), _drop_header("Retry-After")),
        config=RATE_LIMITED,
    ),
    Defect(
        "503-without-retry-after",
        "a flaky 503 unavailable without Retry-After",
        judges.RETRY_AFTER,
        middleware=_rewrite(_status(503), _drop_header("Retry-After")),
        config=FLAKY_POOLS,
    ),
    Defect(
        "idempotency-ignored",
        "the same Idempotency-Key and body allocate twice",
        judges.IDEMPOTENCY,
        patch=_ignore_idempotency,
    ),
    Defect(
        "idempotency-conflict-ignored",
        "the same key with another body replays instead of a 409",
        judges.IDEMPOTENCY,
        patch=_ignore_conflicts,
    ),
    Defect(
        "no-replay-header",
        "a replayed allocate lacks Idempotent-Replayed: true",
        judges.IDEMPOTENCY,
        middleware=_rewrite(_is("POST", "/v1/allocate"), _drop_header("Idempotent-Replayed")),
    ),
    Defect(
        "capacity-never-given-back",
        "release frees nothing: the pool fills up for good",
        judges.CAPACITY,
        patch=_keep_capacity,
    ),
    Defect(
        "release-not-idempotent", "releasing an ended allocation is a 409", judges.RELEASE, patch=_release_conflicts
    ),
    Defect(
        "release-answers-200",
        "release answers 200 with a body instead of 204",
        judges.RELEASE,
        middleware=_rewrite(_is("DELETE", "/v1/allocate/", 204), _release_200),
    ),
    Defect(
        "use-after-release",
        "an inference on a released allocation runs",
        judges.USE_AFTER_RELEASE,
        middleware=web.middleware(_serve_released),
    ),
    Defect(
        "released-reads-active",
        "a released allocation still reads `active`",
        judges.RELEASE,
        middleware=_rewrite(_is("GET", "/v1/allocate/", 200), _released_reads_active),
    ),
    Defect(
        "foreign-allocation-visible",
        "another tenant can read our allocation",
        judges.ISOLATION,
        patch=_any_tenant_reads,
    ),
    Defect(
        "foreign-release", "another tenant can release our allocation", judges.ISOLATION, patch=_any_tenant_releases
    ),
    Defect(
        "label-filter-ignored", "listing by label returns every allocation", judges.LISTS, patch=_list_with(labels=None)
    ),
    Defect("state-filter-ignored", "listing by state returns every state", judges.LISTS, patch=_list_with(states=())),
    Defect(
        "pages-repeat", "the cursor repeats the last allocation of the previous page", judges.LISTS, patch=_pages_repeat
    ),
    Defect("pages-skip", "the cursor steps over one allocation between pages", judges.LISTS, patch=_pages_skip),
    Defect(
        "max-tokens-ignored",
        "max_tokens is ignored: answers run to their natural length",
        judges.MAX_TOKENS,
        patch=_ignore_max_tokens,
    ),
    Defect("stream-without-done", "a stream ends without its done event", judges.STREAM, patch=_no_done_event),
    Defect("stream-token-lost", "a stream drops its first token but bills it", judges.STREAM, patch=_first_token_lost),
    Defect("usage-overbills-prompt", "usage bills twice the prompt tokens", judges.USAGE, patch=_bill_double_prompt),
    # Over-billed totals are caught only on a target the run owns: a live one may have dropped older records
    # (the contract allows it), so there the records may sum to less than the totals, never to more.
    Defect(
        "usage-totals-off", "usage totals above the sum of the records", judges.TOTALS, patch=_totals_off, owned=True
    ),
    Defect("usage-totals-under", "usage totals below the sum of the records", judges.TOTALS, patch=_totals_under),
    Defect(
        "integer-floats-crash",
        "an integer-valued float (vram_mb: 2048.0) is a 500",
        judges.EDGE_NUMBERS,
        patch=_floats_kept,
    ),
    Defect("wrong-field-type", "a pool's `gpus` is a string", "contract: GET /v1/pools", patch=_gpus_as_text),
    Defect(
        "validation-crashes",
        "a request that breaks the schema is a 500 instead of a 422",
        judges.PROBLEMS,
        patch=_validation_crashes,
    ),
)
