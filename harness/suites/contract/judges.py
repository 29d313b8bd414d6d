"""The behaviour checks: pure functions that judge the probes' `Evidence` (no I/O here).

Each returns one `CheckResult`: passed, failed (what was expected, what came back, and the curl
commands of the exchanges that show it), or skipped with the reason the evidence is missing.
`tests/harness/test_behaviour_judges.py` feeds them tables of evidence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from email.utils import parsedate_to_datetime
from typing import Any

from harness.suites.base import CheckResult
from harness.suites.contract.probes import Evidence, Exchange, sse_events

ALLOCATE_201 = "contract: allocate answers 201 with Location"
REQUEST_ID = "contract: X-Request-Id present and echoed"
PROBLEMS = "contract: errors are problem+json with their documented code"
RETRY_AFTER = "contract: Retry-After on every 429 and 503"
IDEMPOTENCY = "contract: Idempotency-Key honoured"
CAPACITY = "contract: capacity given back on release"
RELEASE = "contract: release is idempotent"
USE_AFTER_RELEASE = "contract: use after release refused"
LISTS = "contract: list filters and pagination complete"
ISOLATION = "contract: tenant isolation"
STREAM = "contract: stream ends with its done event"
MAX_TOKENS = "contract: max_tokens honoured"
USAGE = "contract: usage matches what was generated"
TOTALS = "contract: usage totals equal the sum of records"
EDGE_NUMBERS = "contract: edge-value numbers"
TIERS = "contract: pool segregation by tier"

# label of the error probe -> (status, code) the contract documents for it
EXPECTED_ERRORS = {
    "error:not_found": (404, "not_found"),
    "error:unauthorized": (401, "unauthorized"),
    "error:invalid_request": (400, "invalid_request"),
    "error:unsupported_media_type": (415, "unsupported_media_type"),
    "error:validation_failed": (422, "validation_failed"),
    "edge:huge_tflops": (422, "validation_failed"),
}
_PROBLEM = "application/problem+json"
_REFUSED = (403, 503)
"""A live target may refuse an allocate (quota, a full pool): then the probes that needed it are moot."""


def judge_all(evidence: Evidence) -> list[CheckResult]:
    return [judge(evidence) for judge in JUDGES]


# ---- helpers ---------------------------------------------------------------------------------------


def _skipped(name: str, reason: str) -> CheckResult:
    return CheckResult(name, "skipped", message=reason)


def _verdict(
    name: str,
    evidence: Evidence,
    problems: Sequence[tuple[str, Exchange | None]],
    passed: str,
    *,
    judges_429s: bool = False,
) -> CheckResult:
    """Passed without problems; failed with them — unless every one is a 429 that outlasted the probes'
    patience (`Prober.send` waits out a Retry-After five times): then the check went untested."""
    if not judges_429s:
        limited = [e for _, e in problems if e is not None and e.status == 429]
        if problems and len(limited) == len(problems):
            return _skipped(name, f"untested: the target kept answering 429 rate_limited ({limited[0].describe()})")
    if not problems:
        return CheckResult(name, "passed", message=passed)
    lines = [text for text, _ in problems]
    shown: list[Exchange] = []
    for _, exchange in problems:
        if exchange is not None and exchange not in shown:
            shown.append(exchange)
    return CheckResult(
        name, "failed", message="\n".join(lines), reproduce=[e.curl(evidence.base_url) for e in shown[:5]]
    )


def _no_allocations(name: str, evidence: Evidence) -> CheckResult | None:
    """Skipped when the probes could not allocate (budget), or a live target refused every allocate."""
    if "allocations" in evidence.not_gathered:
        return _skipped(name, evidence.not_gathered["allocations"])
    a = evidence.get("allocate:a")
    if a is None:
        return _skipped(name, "the allocation probes did not run")
    if a.status in _REFUSED and not evidence.owned:
        return _skipped(name, f"the target refused the probe's allocate ({a.status}: {_code(a) or 'no code'})")
    return None


def _allocation_of(evidence: Evidence, label: str) -> str | None:
    return next((i for i, made_by in evidence.allocated.items() if made_by == label), None)


def _code(exchange: Exchange) -> str | None:
    body = exchange.json
    return body.get("code") if isinstance(body, dict) else None


def _field(exchange: Exchange | None, *path: str) -> Any:
    node: Any = exchange.json if exchange is not None else None
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _answered(exchanges: Iterable[Exchange]) -> list[Exchange]:
    return [e for e in exchanges if e.status is not None]


def _expect_status(exchange: Exchange | None, status: int, what: str) -> list[tuple[str, Exchange | None]]:
    if exchange is None:
        return [(f"{what}: the probe did not run", None)]
    if exchange.status != status:
        return [(f"{what}: expected {status}, got {exchange.describe()}: {exchange.text[:200]}", exchange)]
    return []


# ---- the checks ------------------------------------------------------------------------------------


def allocate_201(evidence: Evidence) -> CheckResult:
    if (skip := _no_allocations(ALLOCATE_201, evidence)) is not None:
        return skip
    problems: list[tuple[str, Exchange | None]] = []
    decided = 0
    for exchange in evidence.all("allocate"):
        if exchange.status in _REFUSED and not evidence.owned:
            continue
        decided += 1
        allocation_id = _field(exchange, "allocation_id")
        if exchange.status != 201:
            problems.append((f"{exchange.describe()}: the contract answers a new allocation with 201", exchange))
            continue
        location = exchange.headers.get("location")
        want = f"/v1/allocate/{allocation_id}"
        if location is None:
            problems.append((f"{exchange.describe()}: no Location header (expected {want})", exchange))
        elif not (location == want or location.endswith(want)):
            problems.append((f"{exchange.describe()}: Location is {location!r}, expected {want!r}", exchange))
    return _verdict(ALLOCATE_201, evidence, problems, f"{decided} allocate(s): 201 with Location")


def request_id(evidence: Evidence) -> CheckResult:
    problems: list[tuple[str, Exchange | None]] = []
    answered = _answered(evidence.exchanges)
    for exchange in answered:
        got = exchange.headers.get("x-request-id")
        sent = exchange.sent_request_id
        if not got:
            problems.append((f"{exchange.describe()}: no X-Request-Id in the answer", exchange))
        elif sent is not None and got != sent:
            problems.append(
                (f"{exchange.describe()}: sent X-Request-Id {sent!r}, the answer carries {got!r}", exchange)
            )
    if not answered:
        return _skipped(REQUEST_ID, "no probe got an answer")
    echoed = sum(1 for e in answered if e.sent_request_id)
    return _verdict(REQUEST_ID, evidence, problems, f"{len(answered)} answers, {echoed} echoing the client's own id")


def problem_documents(evidence: Evidence) -> CheckResult:
    problems: list[tuple[str, Exchange | None]] = []
    for label, (status, code) in EXPECTED_ERRORS.items():
        exchange = evidence.get(label)
        if exchange is None:
            continue
        problems += _problem_shape(exchange, status, code, label.split(":", 1)[1])
    return _verdict(PROBLEMS, evidence, problems, f"{len(EXPECTED_ERRORS)} provoked errors, each as documented")


def _problem_shape(exchange: Exchange, status: int, code: str, what: str) -> list[tuple[str, Exchange | None]]:
    if exchange.status != status:
        return [(f"{what}: expected {status} {code}, got {exchange.describe()}: {exchange.text[:200]}", exchange)]
    found: list[str] = []
    if exchange.content_type != _PROBLEM:
        found.append(f"content type {exchange.content_type or 'missing'}, not {_PROBLEM}")
    body = exchange.json
    if not isinstance(body, dict):
        found.append("the body is not a JSON object")
    else:
        if body.get("code") != code:
            found.append(f"code {body.get('code')!r}, expected {code!r}")
        if body.get("status") != status:
            found.append(f"status field {body.get('status')!r}, expected {status}")
        missing = [k for k in ("type", "title", "detail", "request_id") if not isinstance(body.get(k), str)]
        if missing:
            found.append(f"fields missing or not strings: {', '.join(missing)}")
        header = exchange.headers.get("x-request-id")
        if isinstance(body.get("request_id"), str) and header and body["request_id"] != header:
            found.append(f"request_id {body['request_id']!r} differs from the X-Request-Id header {header!r}")
        if status == 422 and not (isinstance(body.get("errors"), list) and body["errors"]):
            found.append("a 422 without its `errors` list")
    return [(f"{what} ({status} {code}): {'; '.join(found)}", exchange)] if found else []


def _retry_after_ok(value: str | None) -> bool:
    if value is None:
        return False
    if value.strip().isdigit():
        return True
    try:
        parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False
    return True


def retry_after(evidence: Evidence) -> CheckResult:
    problems: list[tuple[str, Exchange | None]] = []
    seen = 0
    for exchange in evidence.exchanges:
        if exchange.status in (429, 503):
            seen += 1
            if not _retry_after_ok(exchange.headers.get("retry-after")):
                value = exchange.headers.get("retry-after")
                problems.append((f"{exchange.describe()}: Retry-After is {value!r}", exchange))
    for later in evidence.retry_later:
        seen += 1
        if not _retry_after_ok(later.retry_after):
            problems.append(
                (
                    f"{later.operation} answered {later.status} with Retry-After {later.retry_after!r} during the "
                    f"schemathesis run (request {later.request_id or 'without an id'})",
                    None,
                )
            )
    if not seen:
        reason = evidence.not_gathered.get("retry_after", "no 429 or 503 was seen in this run")
        return _skipped(RETRY_AFTER, reason)
    message = f"{seen} answer(s) 429/503, each with a valid Retry-After"
    return _verdict(RETRY_AFTER, evidence, problems, message, judges_429s=True)


def idempotency(evidence: Evidence) -> CheckResult:
    if not evidence.idempotency_key:
        return _skipped(IDEMPOTENCY, "the target is declared to ignore Idempotency-Key (--no-idempotency-key)")
    if (skip := _no_allocations(IDEMPOTENCY, evidence)) is not None:
        return skip
    replay, conflict = evidence.get("idempotency:replay"), evidence.get("idempotency:conflict")
    first = _field(evidence.get("allocate:a"), "allocation_id")
    problems: list[tuple[str, Exchange | None]] = []
    if replay is not None:
        if replay.status not in (200, 201):
            problems.append((f"the replayed allocate: expected the original 201, got {replay.describe()}", replay))
        elif _field(replay, "allocation_id") != first:
            problems.append(
                (
                    f"the same Idempotency-Key and body allocated again: {_field(replay, 'allocation_id')} "
                    f"besides {first} (the contract: the replay returns the original allocation)",
                    replay,
                )
            )
        elif replay.headers.get("idempotent-replayed") != "true":
            problems.append(("the replayed allocate lacks the header Idempotent-Replayed: true", replay))
    if conflict is not None:
        problems += _problem_shape(conflict, 409, "idempotency_conflict", "the same key with another body")
    return _verdict(IDEMPOTENCY, evidence, problems, "a replay returned the original; another body was a 409")


_POOL_FIELDS = ("allocations_active", "tflops_allocated", "vram_mb_allocated")


def _pool(exchange: Exchange | None) -> tuple[float, float, float] | None:
    values = [_field(exchange, f) for f in _POOL_FIELDS]
    if exchange is None or exchange.status != 200 or not all(isinstance(v, int | float) for v in values):
        return None
    return (float(values[0]), float(values[1]), float(values[2]))


def _close(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-6) for x, y in zip(a, b, strict=True))


def capacity(evidence: Evidence) -> CheckResult:
    if (skip := _no_allocations(CAPACITY, evidence)) is not None:
        return skip
    before, held, after = (_pool(evidence.get(f"pool:{p}")) for p in ("before", "after_allocate", "after_release"))
    if before is None or held is None or after is None or evidence.shape is None:
        return _skipped(CAPACITY, "the pool could not be read before and after the probes")
    req = evidence.shape.requirements
    one = (1.0, req.tflops, float(req.vram_mb))
    made = len(evidence.allocated)  # every one in this pool, and every one released before the last read
    took = tuple(x - y for x, y in zip(held, before, strict=True))
    left = tuple(x - y for x, y in zip(after, before, strict=True))
    pool = evidence.shape.pool_id
    shown = [
        e
        for e in (evidence.get("pool:before"), evidence.get("pool:after_allocate"), evidence.get("pool:after_release"))
        if e
    ]
    summary = (
        f"{pool}: before {before}, holding one {held}, after every release {after} "
        f"(allocations_active, tflops_allocated, vram_mb_allocated)"
    )
    if _close(left, (0.0, 0.0, 0.0)) and (not evidence.owned or _close(took, one)):
        return CheckResult(CAPACITY, "passed", message=summary)
    nothing_back = _close(took, one) and _close(left, tuple(made * x for x in one))
    if evidence.owned or nothing_back:
        why = (
            "the pool did not give back what the probes released"
            if not _close(left, (0, 0, 0))
            else (f"one allocation changed the pool by {took}, expected {one}")
        )
        return CheckResult(
            CAPACITY, "failed", message=f"{why}: {summary}", reproduce=[e.curl(evidence.base_url) for e in shown]
        )
    return _skipped(CAPACITY, f"inconclusive: the shared pool changed under other traffic ({summary})")


def release_idempotent(evidence: Evidence) -> CheckResult:
    if (skip := _no_allocations(RELEASE, evidence)) is not None:
        return skip
    problems = _expect_status(evidence.get("release:a"), 204, "the first release")
    problems += _expect_status(evidence.get("release:a_again"), 204, "the second release of the same allocation")
    got = evidence.get("get:a_released")
    if got is not None and got.status == 200 and _field(got, "state") != "released":
        problems.append((f"after its release the allocation's state is {_field(got, 'state')!r}", got))
    elif got is not None and got.status != 200:
        problems.append((f"a released allocation must stay readable: {got.describe()}", got))
    return _verdict(RELEASE, evidence, problems, "release 204, release again 204, then state released")


def use_after_release(evidence: Evidence) -> CheckResult:
    if (skip := _no_allocations(USE_AFTER_RELEASE, evidence)) is not None:
        return skip
    exchange = evidence.get("use_after_release")
    if exchange is None:
        return _skipped(USE_AFTER_RELEASE, "the probe did not run")
    problems = _problem_shape(exchange, 409, "allocation_not_active", "inference on a released allocation")
    if not problems and _field(exchange, "state") != "released":
        problems.append((f"the 409 says state {_field(exchange, 'state')!r}, not 'released'", exchange))
    return _verdict(USE_AFTER_RELEASE, evidence, problems, "409 allocation_not_active, state released")


def _ids(exchange: Exchange | None) -> list[str] | None:
    items = _field(exchange, "allocations")
    if exchange is None or exchange.status != 200 or not isinstance(items, list):
        return None
    return [str(item.get("allocation_id")) for item in items if isinstance(item, dict)]


def lists(evidence: Evidence) -> CheckResult:
    if (skip := _no_allocations(LISTS, evidence)) is not None:
        return skip
    before_list = {i for i, label in evidence.allocated.items() if label != "cleanup"}
    c_id = _allocation_of(evidence, "allocate:c")
    released_c = evidence.get("release:c") is not None and evidence.get("release:c").status == 204  # type: ignore[union-attr]
    problems: list[tuple[str, Exchange | None]] = []
    pages = evidence.all("list:page")
    seen: list[str] = []
    for page in pages:
        ids = _ids(page)
        if ids is None:
            problems.append((f"a page of the list: {page.describe()}: {page.text[:200]}", page))
            break
        if len(ids) > 1:
            problems.append((f"limit=1 answered {len(ids)} allocations", page))
        seen += ids
    duplicates = sorted({i for i in seen if seen.count(i) > 1})
    if duplicates:
        problems.append((f"paging with limit=1 listed {duplicates} more than once", pages[-1] if pages else None))
    if not problems:
        missing, extra = sorted(before_list - set(seen)), sorted(set(seen) - before_list)
        if missing:
            problems.append((f"paging with limit=1 never listed {missing} (labelled for this run)", pages[-1]))
        if extra:
            problems.append((f"the label filter let through {extra}, which the probes did not make", pages[0]))
    expected = {
        "list:active": before_list - ({c_id} if released_c and c_id else set()),
        "list:released": {c_id} if released_c and c_id else set(),
        "list:two_labels": {
            i for i, label in evidence.allocated.items() if label in ("allocate:a", "idempotency:replay")
        },
    }
    for label, want in expected.items():
        exchange = evidence.get(label)
        got = _ids(exchange)
        if got is None:
            problems.append((f"{label.split(':')[1]}: {exchange.describe() if exchange else 'did not run'}", exchange))
        elif set(got) != want and exchange is not None:
            problems.append((f"GET {exchange.path} listed {sorted(got)}, expected {sorted(want)}", exchange))
    return _verdict(
        LISTS, evidence, problems, f"{len(pages)} page(s) of one, every allocation once; state and label filters exact"
    )


def isolation(evidence: Evidence) -> CheckResult:
    if "isolation" in evidence.not_gathered:
        return _skipped(ISOLATION, evidence.not_gathered["isolation"])
    if (skip := _no_allocations(ISOLATION, evidence)) is not None:
        return skip
    problems: list[tuple[str, Exchange | None]] = []
    for label, what in (("foreign:get", "GET"), ("foreign:inference", "inference on"), ("foreign:release", "DELETE")):
        exchange = evidence.get(label)
        if exchange is not None and exchange.status != 404:
            problems.append(
                (f"another tenant's {what} our allocation: expected 404, got {exchange.describe()}", exchange)
            )
    listed = _ids(evidence.get("foreign:list")) or []
    ours = set(evidence.allocated) & set(listed)
    if ours:
        problems.append((f"another tenant's list shows our {sorted(ours)}", evidence.get("foreign:list")))
    after = evidence.get("foreign:after")
    if after is not None and _field(after, "state") != "active":
        problems.append(
            (f"after another tenant's probes our allocation is {after.describe()} {_field(after, 'state')!r}", after)
        )
    return _verdict(
        ISOLATION, evidence, problems, "another tenant got 404 on get, inference and release, and lists none of ours"
    )


def tiers(evidence: Evidence) -> CheckResult:
    """Another customer tier's pool, asked for with the second tenant's key: allocating there and
    reading it are 403 `pool_not_permitted` (the pool was left out of that tenant's list)."""
    if "tiers" in evidence.not_gathered:
        return _skipped(TIERS, evidence.not_gathered["tiers"])
    problems: list[tuple[str, Exchange | None]] = []
    for label, what in (("tier:foreign_allocate", "allocate"), ("tier:foreign_get_pool", "GET")):
        exchange = evidence.get(label)
        if exchange is None:
            problems.append((f"another tier's {what}: the probe did not run", None))
        else:
            problems += _problem_shape(exchange, 403, "pool_not_permitted", f"another tier's {what}")
    return _verdict(
        TIERS,
        evidence,
        problems,
        "a pool outside the second tenant's tier is refused to it (403 pool_not_permitted), on allocate and on GET",
    )


def stream(evidence: Evidence) -> CheckResult:
    if (skip := _no_allocations(STREAM, evidence)) is not None:
        return skip
    exchange = evidence.get("infer:stream")
    if exchange is None:
        return _skipped(STREAM, "the streaming probe did not run")
    if exchange.status != 200:
        return _verdict(
            STREAM, evidence, [(f"a streamed inference: {exchange.describe()}: {exchange.text[:200]}", exchange)], ""
        )
    problems: list[str] = []
    if exchange.content_type != "text/event-stream":
        problems.append(f"content type {exchange.content_type}, not text/event-stream")
    events = sse_events(exchange.text)
    names = [name for name, _ in events]
    tokens = [data for name, data in events if name == "token"]
    if not names or names[-1] != "done" or names.count("done") != 1 or set(names) - {"token", "done"}:
        problems.append(f"expected token events then one done, got {names[:8]}{' …' if len(names) > 8 else ''}")
    else:
        done = events[-1][1]
        indexes = [t.get("index") if isinstance(t, dict) else None for t in tokens]
        if indexes != list(range(len(tokens))):
            problems.append(f"token indexes {indexes[:10]} are not 0..{len(tokens) - 1}")
        usage = done.get("usage", {}) if isinstance(done, dict) else {}
        if usage.get("completion_tokens") != len(tokens):
            problems.append(
                f"done says {usage.get('completion_tokens')} completion tokens, {len(tokens)} were streamed"
            )
        if usage.get("total_tokens") != (usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0):
            problems.append(f"done's usage does not add up: {usage}")
    return _verdict(STREAM, evidence, [(p, exchange) for p in problems], f"{len(tokens)} token events, then done")


_INFERENCES = (("infer:plain", 3), ("infer:float_max_tokens", 2), ("infer:stream", 4))


def _inference_usage(exchange: Exchange) -> tuple[dict[str, Any], str | None] | None:
    """The usage and finish reason of a successful inference, plain or streamed."""
    if exchange.status != 200:
        return None
    if exchange.content_type == "text/event-stream":
        done = [data for name, data in sse_events(exchange.text) if name == "done"]
        body = done[-1] if done and isinstance(done[-1], dict) else None
    else:
        body = exchange.json if isinstance(exchange.json, dict) else None
    if body is None or not isinstance(body.get("usage"), dict):
        return None
    return body["usage"], body.get("finish_reason")


def max_tokens(evidence: Evidence) -> CheckResult:
    if (skip := _no_allocations(MAX_TOKENS, evidence)) is not None:
        return skip
    problems: list[tuple[str, Exchange | None]] = []
    judged = 0
    for label, limit in _INFERENCES:
        exchange = evidence.get(label)
        found = _inference_usage(exchange) if exchange is not None else None
        if found is None:
            continue
        judged += 1
        usage, finish = found
        completion = usage.get("completion_tokens")
        if not isinstance(completion, int) or completion > limit:
            problems.append((f"max_tokens {limit} answered {completion} completion tokens", exchange))
        elif finish == "length" and completion != limit:
            problems.append((f"finish_reason length after {completion} of max_tokens {limit}", exchange))
    if not judged:
        return _skipped(MAX_TOKENS, "no inference probe succeeded")
    return _verdict(MAX_TOKENS, evidence, problems, f"{judged} inferences within their max_tokens")


def _record_of(evidence: Evidence, allocation_id: str | None) -> dict[str, Any] | None:
    records = _field(evidence.get("usage"), "records")
    if not isinstance(records, list) or allocation_id is None:
        return None
    mine = [r for r in records if isinstance(r, dict) and r.get("allocation_id") == allocation_id]
    return mine[0] if mine else None


def usage_matches(evidence: Evidence) -> CheckResult:
    if (skip := _no_allocations(USAGE, evidence)) is not None:
        return skip
    exchange = evidence.get("usage")
    if exchange is None or exchange.status != 200:
        return _verdict(
            USAGE, evidence, [(f"GET /v1/usage: {exchange.describe() if exchange else 'did not run'}", exchange)], ""
        )
    a_id = _allocation_of(evidence, "allocate:a")
    record = _record_of(evidence, a_id)
    if record is None:
        return _verdict(
            USAGE, evidence, [(f"GET /v1/usage has no record of {a_id}, which ran inferences", exchange)], ""
        )
    prompt = completion = 0
    for label, _ in _INFERENCES:
        probe = evidence.get(label)
        found = _inference_usage(probe) if probe is not None else None
        if found is not None:
            prompt += int(found[0].get("prompt_tokens") or 0)
            completion += int(found[0].get("completion_tokens") or 0)
    problems = [
        (f"the record of {a_id} bills {record.get(k)} {k}, its inferences used {want}", exchange)
        for k, want in (("prompt_tokens", prompt), ("completion_tokens", completion))
        if record.get(k) != want
    ]
    return _verdict(USAGE, evidence, problems, f"{prompt} prompt and {completion} completion tokens billed as used")


def usage_pages(evidence: Evidence) -> list[Exchange]:
    """The `/v1/usage` pages the probe read, in order (`usage`, `usage:page2`, ...)."""
    first = evidence.get("usage")
    if first is None:
        return []
    rest = sorted((e for e in evidence.exchanges if e.label.startswith("usage:page")), key=lambda e: int(e.label[10:]))
    return [first, *rest]


def usage_totals(evidence: Evidence) -> CheckResult:
    """`totals` cover the whole window, on every page; the records of every page sum to them. A target the
    run does not own may have dropped older detail (the contract allows it), so there the records may only
    sum to less, never to more."""
    pages = usage_pages(evidence)
    if not pages:
        return _skipped(TOTALS, evidence.not_gathered.get("allocations", "the usage probe did not run"))
    records: list[Any] = []
    totals: dict[str, Any] | None = None
    problems: list[tuple[str, Exchange | None]] = []
    for page in pages:
        page_records, page_totals = _field(page, "records"), _field(page, "totals")
        if page.status != 200 or not isinstance(page_records, list) or not isinstance(page_totals, dict):
            return _verdict(TOTALS, evidence, [(f"GET {page.path}: {page.describe()}: {page.text[:200]}", page)], "")
        if totals is not None and page_totals != totals:
            problems.append((f"{page.path} says totals {page_totals}, the first page {totals}", page))
        totals = totals or page_totals
        records += page_records
    assert totals is not None
    last = pages[-1]
    whole = evidence.owned
    if totals.get("allocations") != len(records) and (whole or len(records) > (totals.get("allocations") or 0)):
        problems.append((f"totals.allocations is {totals.get('allocations')}, there are {len(records)} records", last))
    for key in ("tflops_seconds", "vram_mb_seconds", "prompt_tokens", "completion_tokens", "cost"):
        summed = sum(float(r.get(key) or 0) for r in records if isinstance(r, dict))
        got = totals.get(key)
        # Each record is rounded (6 decimals, cost 9) before the totals sum them: allow that much.
        slack = (len(records) + 1) * (1e-9 if key == "cost" else 1e-6)
        if not isinstance(got, int | float):
            problems.append((f"totals.{key} is {got!r}", last))
        elif whole and not math.isclose(float(got), summed, rel_tol=1e-9, abs_tol=slack):
            problems.append((f"totals.{key} is {got}, the records of {len(pages)} page(s) sum to {summed:g}", last))
        elif not whole and summed > float(got) + slack + abs(float(got)) * 1e-9:
            problems.append((f"the records of {len(pages)} page(s) sum to {summed:g}, above totals.{key} {got}", last))
    relation = "equal" if whole else "are at least"
    summary = f"totals {relation} the sums of {len(records)} records on {len(pages)} page(s)"
    return _verdict(TOTALS, evidence, problems, summary)


def edge_numbers(evidence: Evidence) -> CheckResult:
    problems: list[tuple[str, Exchange | None]] = []
    judged = 0
    for label in ("edge:huge_tflops", "edge:tiny_max_tokens", "allocate:b", "infer:float_max_tokens"):
        exchange = evidence.get(label)
        if exchange is None or exchange.status is None:
            continue
        judged += 1
        if exchange.status >= 500 and not (label == "allocate:b" and exchange.status == 503 and not evidence.owned):
            problems.append((f"{exchange.describe()}: {exchange.text[:200]}", exchange))
    for label, want in (("edge:huge_tflops", 422), ("infer:float_max_tokens", 200), ("allocate:b", 201)):
        exchange = evidence.get(label)
        if exchange is None or exchange.status is None or exchange.status >= 500:
            continue
        if exchange.status != want and not (
            label == "allocate:b" and exchange.status in _REFUSED and not evidence.owned
        ):
            problems.append((f"{exchange.describe()}: expected {want} ({_EDGE_WHY[label]})", exchange))
    tiny = evidence.get("edge:tiny_max_tokens")
    if tiny is not None and tiny.status is not None and not 400 <= tiny.status < 500:
        problems.append((f"{tiny.describe()}: max_tokens 1e-300 is not an integer, expected a 4xx", tiny))
    if not judged:
        return _skipped(EDGE_NUMBERS, "no edge-value probe got an answer")
    return _verdict(
        EDGE_NUMBERS, evidence, problems, "integer-valued floats taken as integers; out-of-range numbers a 422"
    )


_EDGE_WHY = {
    "edge:huge_tflops": "tflops 1e308 is above the contract's maximum",
    "infer:float_max_tokens": "max_tokens 2.0 is the integer 2 in JSON Schema",
    "allocate:b": "vram_mb given as an integer-valued float is an integer",
}


JUDGES: tuple[Callable[[Evidence], CheckResult], ...] = (
    allocate_201,
    request_id,
    problem_documents,
    retry_after,
    idempotency,
    capacity,
    release_idempotent,
    use_after_release,
    lists,
    isolation,
    tiers,
    stream,
    max_tokens,
    usage_matches,
    usage_totals,
    edge_numbers,
)
