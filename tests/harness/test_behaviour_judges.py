"""The contract suite's behaviour checks are pure functions of the evidence the probes gathered: here
they are fed tables of evidence, correct and broken, and must say passed, failed or skipped (and why)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from harness.connector import Requirements
from harness.suites.base import CheckResult
from harness.suites.contract import judges
from harness.suites.contract.probes import Evidence, Exchange
from harness.suites.contract.proxy import RetryLater
from harness.suites.shapes import Shape

SHAPE = Shape("gemma-270m", "gpu-pool-2", Requirements(model="gemma-270m", tflops=5, vram_mb=2048))
A, B, C = "alloc_a", "alloc_b", "alloc_c"


def ex(label: str, status: int, body: Any = None, *, headers: dict[str, str] | None = None, sent_id: bool = True,
       content_type: str = "application/json", method: str = "GET", path: str = "/v1/x") -> Exchange:  # fmt: skip
    sent = {"Authorization": "Bearer $HOSTED_AI_API_KEY"}
    if sent_id:
        sent["X-Request-Id"] = f"rid-{label}"
    answer = {"content-type": content_type, "x-request-id": f"rid-{label}" if sent_id else "req_server"}
    answer.update({k.lower(): v for k, v in (headers or {}).items()})
    text = body if isinstance(body, str) else json.dumps(body) if body is not None else ""
    return Exchange(label, method, path, sent, None, status, answer, text)


def problem(label: str, status: int, code: str, **extra: Any) -> Exchange:
    body = {"type": f"https://errors.hosted.ai/{code}", "title": code, "status": status, "code": code,
            "detail": "d", "request_id": f"rid-{label}", **extra}  # fmt: skip
    return ex(label, status, body, content_type="application/problem+json")


def allocation(label: str, allocation_id: str, status: int = 201, **headers: str) -> Exchange:
    default = {"Location": f"/v1/allocate/{allocation_id}"} if status == 201 else {}
    return ex(label, status, {"allocation_id": allocation_id, "state": "active"}, headers={**default, **headers})


def pool(label: str, active: int, tflops: float, vram: int) -> Exchange:
    return ex(label, 200, {"allocations_active": active, "tflops_allocated": tflops, "vram_mb_allocated": vram})


def listing(label: str, *ids: str, next_cursor: str | None = None) -> Exchange:
    return ex(label, 200, {"allocations": [{"allocation_id": i} for i in ids], "next_cursor": next_cursor})


def inference(label: str, prompt: int, completion: int, finish: str = "stop") -> Exchange:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return ex(label, 200, {"usage": usage, "finish_reason": finish, "output": "x" * completion})


def stream(label: str, tokens: int, done_tokens: int | None = None, done: bool = True) -> Exchange:
    events = [f'event: token\ndata: {{"index": {i}, "text": " w"}}\n' for i in range(tokens)]
    count = tokens if done_tokens is None else done_tokens
    usage = {"prompt_tokens": 3, "completion_tokens": count, "total_tokens": 3 + count}
    if done:
        events.append(f"event: done\ndata: {json.dumps({'usage': usage, 'finish_reason': 'stop'})}\n")
    return ex(label, 200, "\n".join(events) + "\n", content_type="text/event-stream")


def usage(records: list[dict[str, Any]], **totals: Any) -> Exchange:
    sums = {k: sum(r[k] for r in records) for k in ("tflops_seconds", "vram_mb_seconds", "prompt_tokens",
                                                    "completion_tokens", "cost")}  # fmt: skip
    return ex("usage", 200, {"records": records, "totals": {"allocations": len(records), **sums, **totals}})


def record(allocation_id: str, prompt: int, completion: int) -> dict[str, Any]:
    return {"allocation_id": allocation_id, "tflops_seconds": 10.0, "vram_mb_seconds": 2048.0,
            "prompt_tokens": prompt, "completion_tokens": completion, "cost": 0.001}  # fmt: skip


def correct() -> list[Exchange]:
    """What a correct server answers to the probes, in their order."""
    return [
        problem("error:not_found", 404, "not_found"),
        problem("error:unauthorized", 401, "unauthorized"),
        problem("error:invalid_request", 400, "invalid_request"),
        problem("error:unsupported_media_type", 415, "unsupported_media_type"),
        problem("error:validation_failed", 422, "validation_failed", errors=[{"path": "/body", "message": "m"}]),
        problem("edge:huge_tflops", 422, "validation_failed", errors=[{"path": "/body", "message": "m"}]),
        problem("edge:tiny_max_tokens", 422, "validation_failed", errors=[{"path": "/body", "message": "m"}]),
        ex("request_id:generated", 200, {"models": []}, sent_id=False),
        pool("pool:before", 0, 0, 0),
        allocation("allocate:a", A),
        pool("pool:after_allocate", 1, 5, 2048),
        allocation("idempotency:replay", A, **{"Idempotent-Replayed": "true"}),
        problem("idempotency:conflict", 409, "idempotency_conflict"),
        allocation("allocate:b", B),
        allocation("allocate:c", C),
        inference("infer:plain", 3, 3, "length"),
        inference("infer:float_max_tokens", 4, 2, "length"),
        stream("infer:stream", 4),
        ex("release:c", 204),
        listing("list:page:0", A, next_cursor="c1"),
        listing("list:page:1", B, next_cursor="c2"),
        listing("list:page:2", C),
        listing("list:active", A, B),
        listing("list:released", C),
        listing("list:two_labels", A),
        problem("foreign:get", 404, "not_found"),
        problem("foreign:inference", 404, "not_found"),
        problem("foreign:release", 404, "not_found"),
        listing("foreign:list"),
        ex("foreign:after", 200, {"allocation_id": A, "state": "active"}),
        usage([record(A, 10, 9), record("alloc_old", 5, 5)]),
        ex("release:a", 204),
        ex("release:a_again", 204),
        ex("get:a_released", 200, {"allocation_id": A, "state": "released"}),
        problem("use_after_release", 409, "allocation_not_active", state="released"),
        pool("pool:after_release", 0, 0, 0),
        problem("tier:foreign_allocate", 403, "pool_not_permitted"),
        problem("tier:foreign_get_pool", 403, "pool_not_permitted"),
    ]


def evidence(exchanges: list[Exchange], *, owned: bool = True, **fields: Any) -> Evidence:
    found = Evidence("http://127.0.0.1:1", "HOSTED_AI_API_KEY", owned=owned, idempotency_key=True, shape=SHAPE)
    found.exchanges = exchanges
    found.allocated = {A: "allocate:a", B: "allocate:b", C: "allocate:c"}
    for name, value in fields.items():
        setattr(found, name, value)
    return found


def replaced(label: str, exchange: Exchange | None) -> list[Exchange]:
    """The correct evidence with one exchange changed (None: removed)."""
    return [exchange if e.label == label else e for e in correct() if not (e.label == label and exchange is None)]


def test_a_correct_server_passes_every_behaviour_check() -> None:
    results = judges.judge_all(evidence(correct()))
    assert {r.name: r.outcome for r in results} == dict.fromkeys(
        {r.name for r in results} - {judges.RETRY_AFTER}, "passed"
    ) | {judges.RETRY_AFTER: "skipped"}


def swap(label: str, exchange: Exchange) -> Callable[[], Evidence]:
    return lambda: evidence(replaced(label, exchange))


BROKEN: list[tuple[str, Callable[[], Evidence], str, str]] = [
    ("another tier's pool served", swap("tier:foreign_allocate", allocation("tier:foreign_allocate", C)),
     judges.TIERS, "another tier's allocate"),
    ("allocate 200", swap("allocate:b", allocation("allocate:b", B, status=200)),
     judges.ALLOCATE_201, "the contract answers a new allocation with 201"),
    ("no Location", swap("allocate:c", ex("allocate:c", 201, {"allocation_id": C})),
     judges.ALLOCATE_201, "no Location header"),
    ("id not echoed", swap("release:c", ex("release:c", 204, headers={"X-Request-Id": "x"})),
     judges.REQUEST_ID, "sent X-Request-Id 'rid-release:c'"),
    ("problem as json", swap("error:not_found", ex("error:not_found", 404, {"code": "not_found"})),
     judges.PROBLEMS, "content type application/json"),
    ("401 as 403", swap("error:unauthorized", problem("error:unauthorized", 403, "unauthorized")),
     judges.PROBLEMS, "expected 401 unauthorized"),
    ("replay allocates", swap("idempotency:replay", allocation("idempotency:replay", "alloc_z")),
     judges.IDEMPOTENCY, "allocated again"),
    ("capacity kept", swap("pool:after_release", pool("pool:after_release", 3, 15, 6144)),
     judges.CAPACITY, "did not give back"),
    ("second release 409", swap("release:a_again", problem("release:a_again", 409, "allocation_not_active")),
     judges.RELEASE, "expected 204"),
    ("use after release", swap("use_after_release", inference("use_after_release", 2, 2)),
     judges.USE_AFTER_RELEASE, "expected 409"),
    ("page repeats", swap("list:page:1", listing("list:page:1", A, next_cursor="c2")),
     judges.LISTS, "more than once"),
    ("state filter ignored", swap("list:active", listing("list:active", A, B, C)),
     judges.LISTS, "listed ['alloc_a', 'alloc_b', 'alloc_c'], expected ['alloc_a', 'alloc_b']"),
    ("foreign read", swap("foreign:get", ex("foreign:get", 200, {"allocation_id": A})),
     judges.ISOLATION, "another tenant's GET our allocation"),
    ("no done", swap("infer:stream", stream("infer:stream", 3, done=False)),
     judges.STREAM, "expected token events then one done"),
    ("stream miscount", swap("infer:stream", stream("infer:stream", 3, done_tokens=4)),
     judges.STREAM, "done says 4 completion tokens, 3 were streamed"),
    ("max_tokens ignored", swap("infer:plain", inference("infer:plain", 3, 30)),
     judges.MAX_TOKENS, "max_tokens 3 answered 30"),
    ("usage wrong", swap("usage", usage([record(A, 20, 9)])),
     judges.USAGE, "bills 20 prompt_tokens"),
    ("totals wrong", swap("usage", usage([record(A, 10, 9)], cost=1.5)),
     judges.TOTALS, "totals.cost is 1.5"),
    ("float crash", swap("infer:float_max_tokens", problem("infer:float_max_tokens", 500, "internal_error")),
     judges.EDGE_NUMBERS, "→ 500"),
    ("429 without Retry-After", lambda: evidence(correct(), retry_later=[RetryLater("listPools", 429, None, "r1")]),
     judges.RETRY_AFTER, "Retry-After None"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "make", "check", "says"), BROKEN, ids=[b[0] for b in BROKEN])
def test_each_broken_behaviour_fails_its_check(case: str, make: Callable[[], Evidence], check: str, says: str) -> None:
    results = {r.name: r for r in judges.judge_all(make())}
    found: CheckResult = results[check]
    assert found.outcome == "failed", found.message
    assert says in found.message


def test_a_live_target_that_refuses_to_allocate_leaves_the_allocation_checks_undecided() -> None:
    refused = [e for e in correct() if not e.label.startswith(("allocate", "pool", "idempotency", "list", "infer"))]
    refused.append(problem("allocate:a", 503, "capacity_exhausted"))
    results = {r.name: r for r in judges.judge_all(evidence(refused, owned=False))}
    for check in (judges.ALLOCATE_201, judges.CAPACITY, judges.LISTS, judges.STREAM, judges.USAGE):
        assert results[check].outcome == "skipped", (check, results[check].message)
        assert "refused" in results[check].message


def test_a_shared_pool_that_moved_under_other_traffic_is_inconclusive_not_a_failure() -> None:
    moved = replaced("pool:after_release", pool("pool:after_release", 7, 35, 14336))
    result = {r.name: r for r in judges.judge_all(evidence(moved, owned=False))}[judges.CAPACITY]
    assert result.outcome == "skipped"
    assert "inconclusive" in result.message


def test_a_small_budget_says_so_instead_of_passing() -> None:
    found = evidence([e for e in correct() if e.label.startswith(("error", "edge", "request_id"))])
    found.not_gathered["allocations"] = "the probes need 5 allocations and the budget (--max-allocations) is 2"
    results = {r.name: r for r in judges.judge_all(found)}
    assert results[judges.LISTS].outcome == "skipped"
    assert "--max-allocations" in results[judges.LISTS].message
    assert results[judges.PROBLEMS].outcome == "passed"


def test_failures_carry_curl_commands_with_the_key_as_a_variable() -> None:
    broken = replaced("release:a_again", problem("release:a_again", 409, "allocation_not_active"))
    result = {r.name: r for r in judges.judge_all(evidence(broken))}[judges.RELEASE]
    assert result.reproduce
    assert result.reproduce[0].startswith("curl ")
    assert '-H "Authorization: Bearer $HOSTED_AI_API_KEY"' in result.reproduce[0]


def test_a_correct_server_that_rate_limits_is_not_a_failure() -> None:
    """429s with Retry-After were waited out (kept as `<label>:429`); what came back after is judged."""
    waited = problem("error:not_found:429", 429, "rate_limited", retry_after=1)
    waited.headers["retry-after"] = "1"
    results = {r.name: r for r in judges.judge_all(evidence([waited, *correct()]))}
    assert results[judges.PROBLEMS].outcome == "passed"
    assert results[judges.RETRY_AFTER].outcome == "passed"
    assert "1 answer(s) 429/503" in results[judges.RETRY_AFTER].message


def test_a_429_that_outlasts_the_probes_patience_leaves_the_check_untested() -> None:
    limited = problem("error:not_found", 429, "rate_limited")
    limited.headers["retry-after"] = "30"
    result = {r.name: r for r in judges.judge_all(evidence(replaced("error:not_found", limited)))}[judges.PROBLEMS]
    assert result.outcome == "skipped"
    assert "untested: the target kept answering 429" in result.message
