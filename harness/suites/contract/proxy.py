"""A recording, budget-keeping reverse proxy between schemathesis and the target, on loopback.

schemathesis generates requests at random; against a live HostedAI some of them allocate, which costs
money. Every request of the contract run goes through this proxy, which:

- forwards it unchanged (bytes, headers, streamed answers) to the target, over verified TLS;
- lets at most `budget` allocates through; past that it answers them itself with the contract's own
  403 `quota_exceeded`, and counts them, so the report can say which generated requests went untested;
- remembers every allocation a 201 created, with the key that made it, and releases each one when the
  run ends, also when it is cancelled;
- waits out a 429's `Retry-After` (capped) before forwarding more, so a correct server that rate-limits
  slows the run down instead of failing it;
- tallies the answers per operation (a run whose operations were mostly 429 has tested nothing) and
  keeps every 429 and 503 with its `Retry-After`, as evidence for the behaviour checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import orjson
from aiohttp import web

from harness.suites.base import retry_after_wait_s
from harness.target import Target

# Hop-by-hop headers (RFC 9110 §7.6.1) and those the proxy's own client or server must set.
_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
_OPERATIONS = (
    ("POST", re.compile(r"^/v1/allocate/?$"), "createAllocation"),
    ("GET", re.compile(r"^/v1/allocate/?$"), "listAllocations"),
    ("GET", re.compile(r"^/v1/allocate/[^/]+$"), "getAllocation"),
    ("DELETE", re.compile(r"^/v1/allocate/[^/]+$"), "releaseAllocation"),
    ("POST", re.compile(r"^/v1/inference/?$"), "createInference"),
    ("GET", re.compile(r"^/v1/pools/?$"), "listPools"),
    ("GET", re.compile(r"^/v1/pools/[^/]+$"), "getPool"),
    ("GET", re.compile(r"^/v1/models/?$"), "listModels"),
    ("GET", re.compile(r"^/v1/usage/?$"), "getUsage"),
)
_QUIET = logging.getLogger("harness.suites.contract.proxy")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def operation_of(method: str, path: str) -> str:
    for verb, pattern, operation_id in _OPERATIONS:
        if method == verb and pattern.match(path):
            return operation_id
    return f"{method} {path}"


@dataclass(frozen=True, slots=True)
class RetryLater:
    """A 429 or 503 the target sent, and the `Retry-After` it came with (None: missing)."""

    operation: str
    status: int
    retry_after: str | None
    request_id: str | None


@dataclass(slots=True)
class ProxyLog:
    statuses: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    """operationId -> status -> count, as the target answered (the proxy's own refusals apart)."""
    refused_by_budget: int = 0
    allocated: dict[str, str] = field(default_factory=dict)
    """allocation_id -> the Authorization header that made it (to release it as its owner)."""
    released_after: dict[str, str | None] = field(default_factory=dict)
    """What the proxy released at the end: allocation_id -> None (done) or the error."""
    retry_later: list[RetryLater] = field(default_factory=list)
    transport_errors: int = 0
    without_request_id: Counter[str] = field(default_factory=Counter)
    """Answers without the contract's X-Request-Id, by method: not the API's own (an intermediary's)."""

    def mostly_rate_limited(self, threshold: float = 0.5) -> dict[str, tuple[int, int]]:
        """Operations answered 429 more often than `threshold`: (429s, requests)."""
        found = {}
        for operation, counts in self.statuses.items():
            total = sum(counts.values())
            if total and counts[429] / total > threshold:
                found[operation] = (counts[429], total)
        return found


class BudgetProxy:
    """`async with BudgetProxy(target, budget) as proxy:` then point the client at `proxy.url`."""

    def __init__(self, target: Target, budget: int | None, ssl_context: object = True) -> None:
        """`budget` None: no limit (a mock the run owns)."""
        self.target = target
        self.budget = budget
        self.log = ProxyLog()
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._calm_until = 0.0
        self.url = ""

    async def __aenter__(self) -> BudgetProxy:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl),  # type: ignore[arg-type]
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120),
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        # Any path, newlines included: `.` stops at a decoded %0A, and aiohttp would answer its own 404.
        app.router.add_route("*", r"/{tail:[\s\S]*}", self._forward)
        # aiohttp logs a request its parser refuses (schemathesis probes a NUL byte in a header) with a
        # traceback; the proxy answers it with a 400 like any aiohttp server, and a suite never prints.
        self._runner = web.AppRunner(app, access_log=None, logger=_QUIET)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._runner is not None:
                await self._runner.cleanup()
            await asyncio.shield(self.release_all())
        finally:
            if self._session is not None:
                await self._session.close()

    async def release_all(self) -> None:
        """Release every allocation a generated request made and did not release itself."""
        assert self._session is not None
        for allocation_id, authorization in list(self.log.allocated.items()):
            if allocation_id in self.log.released_after:
                continue
            try:
                async with self._session.delete(
                    f"{self.target.url}/v1/allocate/{allocation_id}",
                    headers={"Authorization": authorization, "X-Request-Id": f"harness-cleanup-{uuid.uuid4().hex}"},
                    timeout=aiohttp.ClientTimeout(total=30),
                ) as resp:
                    await resp.read()
                    ok = resp.status in (204, 404, 409)
                    self.log.released_after[allocation_id] = None if ok else f"answered {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.log.released_after[allocation_id] = f"{type(exc).__name__}: {exc}"

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        operation = operation_of(request.method, request.path)
        if operation == "createAllocation" and self.budget is not None and len(self.log.allocated) >= self.budget:
            self.log.refused_by_budget += 1
            return _budget_spent(request, self.budget)
        wait = self._calm_until - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        url = f"{self.target.url}{request.rel_url}"
        try:
            upstream = await self._session.request(
                request.method, url, headers=headers, data=body or None, allow_redirects=False
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.log.transport_errors += 1
            # The target never answered: the client sees a dropped connection, as it would directly.
            raise ConnectionResetError(f"the target did not answer: {exc}") from None
        try:
            return await self._relay(request, operation, upstream)
        finally:
            upstream.release()

    async def _relay(
        self, request: web.Request, operation: str, upstream: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        status = upstream.status
        self.log.statuses[operation][status] += 1
        if "X-Request-Id" not in upstream.headers:
            self.log.without_request_id[request.method] += 1
        if status in (429, 503):
            retry_after = upstream.headers.get("Retry-After")
            self.log.retry_later.append(
                RetryLater(operation, status, retry_after, upstream.headers.get("X-Request-Id"))
            )
            if status == 429:
                self._calm_until = time.monotonic() + _seconds(retry_after)
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
        if upstream.content_type == "text/event-stream":
            response = web.StreamResponse(status=status, reason=upstream.reason, headers=headers)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
        data = await upstream.read()
        if operation == "createAllocation" and status == 201:
            self._remember(request, data)
        elif operation == "releaseAllocation" and status == 204:
            self.log.released_after.setdefault(request.path.rsplit("/", 1)[-1], None)
        return web.Response(status=status, reason=upstream.reason, headers=headers, body=data)

    def _remember(self, request: web.Request, data: bytes) -> None:
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
            allocation_id = orjson.loads(data).get("allocation_id")
            if isinstance(allocation_id, str):
                self.log.allocated.setdefault(allocation_id, request.headers.get("Authorization", ""))


def _seconds(value: str | None) -> float:
    try:
        return retry_after_wait_s(None if value is None else float(value))
    except ValueError:
        return retry_after_wait_s(None)


def _budget_spent(request: web.Request, budget: int) -> web.Response:
    request_id = request.headers.get("X-Request-Id") or f"harness-{uuid.uuid4().hex}"
    body = {
        "type": "https://errors.hosted.ai/quota_exceeded",
        "title": "Quota exceeded",
        "status": 403,
        "code": "quota_exceeded",
        "detail": f"hostedai-harness: this run's budget of {budget} allocations is spent (--max-allocations).",
        "request_id": request_id,
    }
    return web.Response(
        status=403,
        body=orjson.dumps(body),
        content_type="application/problem+json",
        headers={"X-Request-Id": request_id},
    )


@contextlib.asynccontextmanager
async def budget_proxy(target: Target, budget: int | None, ssl_context: object = True) -> AsyncIterator[BudgetProxy]:
    async with BudgetProxy(target, budget, ssl_context) as proxy:
        yield proxy
