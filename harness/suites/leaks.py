"""The leak check every suite shares: did the run leave an allocation held?

Evidence is gathered first, in one of two ways, and judged by a pure function:
- with the mock's control plane, its leak report (`GET /_admin/leaks`: still active, or left to expire),
  with the journal's trail of each leaked allocation ("what did the mock see of it?");
- without one (a live HostedAI), the public list of this run's allocations still active, found by the
  label the run put on each; those are released on the spot, since a live run must not leave any.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from harness.connector import HostedAiConnector, HostedAiError, RateLimited
from harness.control_plane import ControlPlane, ControlPlaneError, JournalEntry
from harness.suites.base import RATE_LIMIT_TRIES, CheckResult, retry_after_wait_s

_TRAILS = 5
_T = TypeVar("_T")


async def _patiently(call: Callable[[], Awaitable[_T]]) -> _T:
    """The call, with a 429's Retry-After waited out (capped, a few times): the sweep after a run that used
    up a tenant's rate limit must still see, and release, what the run left behind."""
    for _ in range(RATE_LIMIT_TRIES - 1):
        try:
            return await call()
        except RateLimited as exc:
            await asyncio.sleep(retry_after_wait_s(exc.retry_after))
    return await call()


@dataclass(frozen=True, slots=True)
class LeakEvidence:
    source: str
    """`leak report` or `public list`: where the leaks were read."""
    leaks: list[Mapping[str, Any]] = field(default_factory=list)
    """Each with `allocation_id`, and from the leak report `reason`, `state`, `age_s`, `request_id`..."""
    examined: int | None = None
    """How many allocations of the run were looked at, when known."""
    trails: Mapping[str, list[JournalEntry]] = field(default_factory=dict)
    release_errors: Mapping[str, str] = field(default_factory=dict)
    """Leaks found on a public list that could not be released now, and why."""
    client_errors: list[str] = field(default_factory=list)
    """What the client under test logged at ERROR during the run (e.g. a release it could not send)."""
    released_now: bool = False
    """The leaks were released while gathering (a live run must not leave any)."""
    problem: str | None = None
    """Set when the evidence could not be gathered: the check then fails, it cannot pass unseen."""


async def from_leak_report(
    admin: ControlPlane, *, only: Collection[str] | None = None, client_errors: list[str] | None = None
) -> LeakEvidence:
    """The mock's leak report at grace 0 (anything still held is a leak), limited to `only` when given."""
    source = "GET /_admin/leaks"
    try:
        leaks = await admin.leaks(grace_s=0)
        if only is not None:
            leaks = [leak for leak in leaks if leak["allocation_id"] in only]
        trails = {
            leak["allocation_id"]: await admin.journal(allocation_id=leak["allocation_id"]) for leak in leaks[:_TRAILS]
        }
    except ControlPlaneError as exc:
        return LeakEvidence(source, problem=f"could not read the leak report: {exc}")
    return LeakEvidence(
        source,
        leaks=list(leaks),
        examined=len(only) if only is not None else None,
        trails=trails,
        client_errors=client_errors or [],
    )


async def from_public_list(connector: HostedAiConnector, labels: Mapping[str, str]) -> LeakEvidence:
    """This run's allocations still active (by its labels), each released now."""
    source = "GET /v1/allocate?state=active"
    try:
        left = await _patiently(lambda: connector.list_allocations(state=["active"], labels=dict(labels)))
    except HostedAiError as exc:
        return LeakEvidence(source, problem=f"could not list this run's allocations: {exc}")
    errors: dict[str, str] = {}
    for allocation in left:
        try:
            await _patiently(functools.partial(connector.release_allocation, allocation.allocation_id))
        except HostedAiError as exc:
            errors[allocation.allocation_id] = str(exc)
    return LeakEvidence(
        source,
        leaks=[{"allocation_id": a.allocation_id, "state": a.state} for a in left],
        release_errors=errors,
        released_now=True,
    )


def judge(name: str, evidence: LeakEvidence, *, what: str = "allocation") -> CheckResult:
    """Passed when nothing leaked; else failed, with each leak, its trail and what the client logged."""
    if evidence.problem is not None:
        return CheckResult(name, "failed", message=f"cannot tell: {evidence.problem}")
    examined = f" of {evidence.examined}" if evidence.examined is not None else ""
    if not evidence.leaks:
        seen = f"{evidence.examined} {what}(s), every one released" if evidence.examined is not None else "none held"
        return CheckResult(name, "passed", message=f"{seen} ({evidence.source})")
    lines = [f"{len(evidence.leaks)}{examined} {what}(s) leaked ({evidence.source}):"]
    for leak in evidence.leaks:
        details = ", ".join(
            f"{key} {leak[key]}"
            for key in ("reason", "state", "pool_id", "tenant_id", "age_s", "request_id")
            if leak.get(key) is not None
        )
        line = f"- {leak['allocation_id']}" + (f": {details}" if details else "")
        if evidence.released_now:
            error = evidence.release_errors.get(str(leak["allocation_id"]))
            line += f" — could not be released now: {error}" if error else " — released now"
        lines.append(line)
    for allocation_id, trail in evidence.trails.items():
        lines.append(f"what the mock saw of {allocation_id}:")
        lines += [f"  {_describe(entry)}" for entry in trail]
    if evidence.client_errors:
        lines.append("the client logged:")
        lines += [f"- {line}" for line in evidence.client_errors[:20]]
    return CheckResult(name, "failed", message="\n".join(lines))


def _describe(entry: JournalEntry) -> str:
    status = entry.get("status")
    text = (
        f"seq {entry.get('seq')} at {entry.get('at')} s: {entry.get('method')} {entry.get('path')} → "
        f"{status if status is not None else 'no answer'}"
    )
    if entry.get("fault_action"):
        text += f" (fault: {entry.get('fault_action')})"
    if entry.get("idempotency_key"):
        text += f" Idempotency-Key {entry.get('idempotency_key')}"
    return text
