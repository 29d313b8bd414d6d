"""A client of the mock's control plane (`/_admin`, contracts/admin.v1.yaml), async and sync.

    async with ControlPlane(mock_url, admin_token) as admin:
        await admin.add_fault({"match": {"operation": "inference"},
                               "action": {"type": "error", "status": 503, "code": "unavailable"}})
        ...
        assert await admin.leaks() == []

    admin = SyncControlPlane(mock_url, admin_token)      # the same calls, for sync code
    admin.apply_scenario("flaky-5xx")

It speaks HTTP only, so it works against any mock process, in-process or remote; the harness's own
suites, its pytest plugin and this project's tests all use it. Every failure is a `ControlPlaneError`
of one line. A live HostedAI has no control plane: there, every call fails with 404.

Each call is described once (`_Call`: method, path, body, expected status and how to read the answer);
the two clients differ only in how they send it.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict, cast

import aiohttp

__all__ = [
    "Clock",
    "ControlPlane",
    "ControlPlaneError",
    "FaultRule",
    "GpuEvent",
    "JournalEntry",
    "Leak",
    "Scenario",
    "State",
    "SyncControlPlane",
]

DEFAULT_TIMEOUT_S = 15.0
_MAX_PAGES = 10_000


class ControlPlaneError(Exception):
    """The control plane did not do what was asked (one line: the call and what came back)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class Clock(TypedDict):
    kind: Literal["manual", "real"]
    now_s: float
    time_scale: float
    now: str


class FaultRule(TypedDict):
    id: str
    match: dict[str, str | None]
    phase: Literal["before", "after"]
    probability: float
    times: int | None
    skip: int
    window_s: list[float] | None
    action: dict[str, Any]
    matched: int
    fired: int
    source: str


class Scenario(TypedDict):
    name: str
    description: str


class JournalEntry(TypedDict):
    seq: int
    request_id: str
    operation: str
    method: str
    path: str
    tenant_id: str | None
    status: int | None
    fault_id: str | None
    fault_action: str | None
    allocation_id: str | None
    idempotency_key: str | None
    at: float
    duration_ms: float
    cell: NotRequired[str]
    """From the fan-out of several cells (docs/cells.md): the cell that recorded the entry."""


class Leak(TypedDict):
    allocation_id: str
    tenant_id: str
    pool_id: str
    state: str
    reason: Literal["still_active", "expired_unreleased"]
    age_s: float
    request_id: str
    cell: NotRequired[str]
    """From the fan-out of several cells: the cell that holds the allocation."""


class GpuEvent(TypedDict):
    gpu: dict[str, Any]
    failed_allocations: list[str]


class State(TypedDict):
    seed: int
    clock: Clock
    pools: list[dict[str, Any]]
    gpus: list[dict[str, Any]]
    allocations: list[dict[str, Any]]
    rules: list[FaultRule]
    journal_entries: int
    cell: NotRequired[str | None]
    """The cell this mock is (`--cell`), None when it runs alone (or for the fan-out)."""
    cells: NotRequired[list[dict[str, Any]]]
    """From the fan-out: each cell's name, URL, seed, clock and journal size."""


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    path: str
    expect: int = 200
    body: Any = None
    params: Mapping[str, str | int | float] = field(default_factory=dict)
    read: Callable[[Any], Any] = lambda answer: answer
    """Turns the answer's JSON (None for an empty body) into what the method returns."""


def _params(**values: str | int | float | None) -> dict[str, str | int | float]:
    return {k: v for k, v in values.items() if v is not None}


# ---- the calls, described once --------------------------------------------------------------------


def _state(cursor: str | None = None) -> _Call:
    return _Call("GET", "/_admin/state", params=_params(cursor=cursor))


def _reset(seed: int | None) -> _Call:
    return _Call("POST", "/_admin/reset", body={} if seed is None else {"seed": seed})


def _faults() -> _Call:
    return _Call("GET", "/_admin/faults", read=lambda a: a["rules"])


def _add_fault(rule: Mapping[str, Any]) -> _Call:
    return _Call("POST", "/_admin/faults", expect=201, body=dict(rule))


def _remove_fault(rule_id: str) -> _Call:
    return _Call("DELETE", f"/_admin/faults/{urllib.parse.quote(rule_id, safe='')}", expect=204)


def _clear_faults() -> _Call:
    return _Call("DELETE", "/_admin/faults", expect=204)


def _scenarios() -> _Call:
    return _Call("GET", "/_admin/scenarios", read=lambda a: a["scenarios"])


def _apply_scenario(name: str) -> _Call:
    path = f"/_admin/scenarios/{urllib.parse.quote(name, safe='')}"
    return _Call("POST", path, expect=201, read=lambda a: a["rules"])


def _advance(seconds: float) -> _Call:
    return _Call("POST", "/_admin/clock/advance", body={"seconds": seconds}, read=lambda a: float(a["now_s"]))


def _journal(filters: Mapping[str, str | int | None], since_seq: int) -> _Call:
    return _Call("GET", "/_admin/journal", params=_params(**filters, since_seq=since_seq or None))


def _clear_journal() -> _Call:
    return _Call("DELETE", "/_admin/journal", expect=204)


def _leaks(grace_s: float | None, tenant_id: str | None) -> _Call:
    params = _params(grace_s=grace_s, tenant_id=tenant_id)
    return _Call("GET", "/_admin/leaks", params=params, read=lambda a: a["leaks"])


def _gpu(gpu_id: str, action: Literal["fail", "recover"]) -> _Call:
    return _Call("POST", f"/_admin/gpus/{urllib.parse.quote(gpu_id, safe='')}/{action}")


def _failed(call: _Call, status: int | None, text: str) -> ControlPlaneError:
    code = None
    with contextlib.suppress(ValueError, AttributeError):
        code = json.loads(text).get("code")
    said = " ".join(text.split())[:300] or "an empty body"
    return ControlPlaneError(f"{call.method} {call.path} answered {status}: {said}", status, code)


def _decode(call: _Call, status: int, text: str) -> Any:
    if status != call.expect:
        raise _failed(call, status, text)
    try:
        return call.read(json.loads(text) if text else None)
    except (ValueError, KeyError, TypeError) as exc:
        raise ControlPlaneError(
            f"{call.method} {call.path}: an answer not in the admin contract's shape ({type(exc).__name__}: {exc})"
        ) from None


# Calls of more than one request (following pages) are generators: they yield each `_Call`, receive its
# answer, and return the result; each client drives them with its own way of sending.
Pages = Generator[_Call, Any, Any]


def _all_state() -> Pages:
    state = yield _state()
    cursor = state.pop("next_cursor", None)
    for _ in range(_MAX_PAGES):
        if not cursor:
            break
        page = yield _state(cursor)
        state["allocations"] += page["allocations"]
        cursor = page.get("next_cursor")
    return state


def _all_journal(since_seq: int, filters: Mapping[str, str | int | None]) -> Pages:
    entries: list[JournalEntry] = []
    for _ in range(_MAX_PAGES):
        answer = yield _journal(filters, since_seq)
        entries += answer["entries"]
        after = answer.get("next_since_seq")
        if after is None or "limit" in filters:
            break
        since_seq = int(after)
    return entries


# ---- async ---------------------------------------------------------------------------------------


class ControlPlane:
    """The async client. Give it a session to share one (its connection pool, its TLS settings), or let
    it make its own and close it with `close()` / `async with`."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        session: aiohttp.ClientSession | None = None,
        ssl_context: ssl.SSLContext | bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.url = url.rstrip("/")
        self._headers = {"X-Admin-Token": token}
        self._session = session
        self._own_session = session is None
        self._ssl = ssl_context
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def __aenter__(self) -> ControlPlane:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def _do(self, call: _Call) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl))
            self._own_session = True
        try:
            async with self._session.request(
                call.method,
                f"{self.url}{call.path}",
                json=call.body,
                params=dict(call.params) or None,
                headers=self._headers,
                timeout=self._timeout,
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ControlPlaneError(f"{call.method} {call.path} failed: {type(exc).__name__}: {exc}") from None
        return _decode(call, status, text)

    async def _pages(self, pages: Pages) -> Any:
        answer = None
        try:
            while True:
                answer = await self._do(pages.send(answer))
        except StopIteration as done:
            return done.value

    async def state(self) -> State:
        """Pools, GPUs, clock, fault rules and every readable allocation (all pages)."""
        return cast(State, await self._pages(_all_state()))

    async def reset(self, seed: int | None = None) -> None:
        """Back to the configuration (no allocations, usage or journal), optionally with a new seed."""
        await self._do(_reset(seed))

    async def faults(self) -> list[FaultRule]:
        return cast(list[FaultRule], await self._do(_faults()))

    async def add_fault(self, rule: Mapping[str, Any]) -> FaultRule:
        """Add a rule in the admin contract's `FaultRuleInput` shape; the answer carries its `id`."""
        return cast(FaultRule, await self._do(_add_fault(rule)))

    async def remove_fault(self, rule_id: str) -> None:
        await self._do(_remove_fault(rule_id))

    async def clear_faults(self) -> None:
        """Remove every fault rule, scenarios' included."""
        await self._do(_clear_faults())

    async def scenarios(self) -> list[Scenario]:
        return cast(list[Scenario], await self._do(_scenarios()))

    async def apply_scenario(self, name: str) -> list[FaultRule]:
        """Add a named scenario's rules (their windows start now); `clear_faults()` takes them away."""
        return cast(list[FaultRule], await self._do(_apply_scenario(name)))

    async def advance(self, seconds: float) -> float:
        """Move the manual clock; the new simulated time. A real clock answers 409 `clock_not_manual`."""
        return cast(float, await self._do(_advance(seconds)))

    async def journal(self, since_seq: int = 0, **filters: str | int | None) -> list[JournalEntry]:
        """Recorded requests after `since_seq`, oldest first (filters: operation, status, tenant_id,
        allocation_id, limit); every page when the mock pages its answer."""
        return cast(list[JournalEntry], await self._pages(_all_journal(since_seq, filters)))

    async def clear_journal(self) -> None:
        await self._do(_clear_journal())

    async def leaks(self, grace_s: float | None = None, tenant_id: str | None = None) -> list[Leak]:
        """Allocations still active past `grace_s` (default: the config's, 0) or left to expire."""
        return cast(list[Leak], await self._do(_leaks(grace_s, tenant_id)))

    async def fail_gpu(self, gpu_id: str) -> GpuEvent:
        return cast(GpuEvent, await self._do(_gpu(gpu_id, "fail")))

    async def recover_gpu(self, gpu_id: str) -> GpuEvent:
        return cast(GpuEvent, await self._do(_gpu(gpu_id, "recover")))


# ---- sync ----------------------------------------------------------------------------------------


class SyncControlPlane:
    """The same calls for synchronous code (requests/httpx-sync users, pytest without asyncio)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.url = url.rstrip("/")
        self._headers = {"X-Admin-Token": token}
        self._ssl = ssl_context
        self._timeout = timeout_s

    def _do(self, call: _Call) -> Any:
        query = f"?{urllib.parse.urlencode(dict(call.params))}" if call.params else ""
        data = json.dumps(call.body).encode() if call.body is not None else None
        headers = {**self._headers, **({"Content-Type": "application/json"} if data is not None else {})}
        url = f"{self.url}{call.path}{query}"
        request = urllib.request.Request(url, data=data, headers=headers, method=call.method)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout, context=self._ssl) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ControlPlaneError(f"{call.method} {call.path} failed: {reason}") from None
        return _decode(call, status, text)

    def _pages(self, pages: Pages) -> Any:
        answer = None
        try:
            while True:
                answer = self._do(pages.send(answer))
        except StopIteration as done:
            return done.value

    def state(self) -> State:
        return cast(State, self._pages(_all_state()))

    def reset(self, seed: int | None = None) -> None:
        self._do(_reset(seed))

    def faults(self) -> list[FaultRule]:
        return cast(list[FaultRule], self._do(_faults()))

    def add_fault(self, rule: Mapping[str, Any]) -> FaultRule:
        return cast(FaultRule, self._do(_add_fault(rule)))

    def remove_fault(self, rule_id: str) -> None:
        self._do(_remove_fault(rule_id))

    def clear_faults(self) -> None:
        self._do(_clear_faults())

    def scenarios(self) -> list[Scenario]:
        return cast(list[Scenario], self._do(_scenarios()))

    def apply_scenario(self, name: str) -> list[FaultRule]:
        return cast(list[FaultRule], self._do(_apply_scenario(name)))

    def advance(self, seconds: float) -> float:
        return cast(float, self._do(_advance(seconds)))

    def journal(self, since_seq: int = 0, **filters: str | int | None) -> list[JournalEntry]:
        return cast(list[JournalEntry], self._pages(_all_journal(since_seq, filters)))

    def clear_journal(self) -> None:
        self._do(_clear_journal())

    def leaks(self, grace_s: float | None = None, tenant_id: str | None = None) -> list[Leak]:
        return cast(list[Leak], self._do(_leaks(grace_s, tenant_id)))

    def fail_gpu(self, gpu_id: str) -> GpuEvent:
        return cast(GpuEvent, self._do(_gpu(gpu_id, "fail")))

    def recover_gpu(self, gpu_id: str) -> GpuEvent:
        return cast(GpuEvent, self._do(_gpu(gpu_id, "recover")))
