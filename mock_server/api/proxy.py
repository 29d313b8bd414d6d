"""The fault proxy: the public API served by forwarding to an upstream HostedAI, with the control plane's
fault rules and scenarios acting on the forwarded traffic, and the journal recording it.

`hostedai-mock proxy --upstream URL` puts this in front of a real HostedAI (or another mock): a client
meets the real service's answers, plus whatever misbehaviour the control plane asks for — including the
after-phase faults, where the upstream did the work (an allocation exists) and the client loses the
answer, which no real service can be made to do on purpose.

What the proxy does not know: the upstream's state. Requests are not validated or authenticated here
(the upstream does both: its key passes through), so fault rules match on operation and, for allocate,
on the pool and model named in the body; rules by tenant, and `gpu_fail`, have nothing to act on. The
control plane's state, leaks and clock are the proxy's own simulator's, not the upstream's.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from mock_server.api import faults
from mock_server.api.contract import Operation
from mock_server.api.journal import operation_name
from mock_server.api.problems import ApiError
from mock_server.api.proxy_record import Exchange, ProxyRecorder
from mock_server.api.state import OUTCOME, REQUEST_ID, STATE, TRUNCATE_AFTER
from mock_server.sim.faults import OPERATIONS

# What crosses the proxy: the headers the contract gives meaning to, never hop-by-hop ones.
_REQUEST_HEADERS = ("Authorization", "Content-Type", "Accept", "Idempotency-Key")
_RESPONSE_HEADERS = ("Content-Type", "Location", "Retry-After", "Idempotent-Replayed", "Allow")
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=330)
"""No total: an inference may run for minutes; a silent upstream is given up after 330 s."""


class Upstream:
    """The HostedAI the proxy forwards to, and the one client session it uses."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def session_context(self, _: web.Application) -> AsyncIterator[None]:
        """The app's cleanup context: a session for the app's life, closed on shutdown."""
        self._session = aiohttp.ClientSession(timeout=_TIMEOUT, auto_decompress=False)
        yield
        await self._session.close()

    async def send(self, request: web.Request, body: bytes) -> aiohttp.ClientResponse:
        assert self._session is not None, "the proxy's session is opened by the app's cleanup context"
        headers = {name: request.headers[name] for name in _REQUEST_HEADERS if name in request.headers}
        # The proxy's request id goes upstream: one id names the request in both journals.
        headers["X-Request-Id"] = request[REQUEST_ID]
        try:
            return await self._session.request(
                request.method, self.url + request.path_qs, data=body or None, headers=headers, allow_redirects=False
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = type(exc).__name__
            raise ApiError("bad_gateway", f"The upstream HostedAI could not be reached ({reason}).") from None


UPSTREAM = web.AppKey("upstream", Upstream)
PROXY_RECORDER = web.AppKey("proxy_recorder", ProxyRecorder)


def _match_keys(name: str, body: bytes) -> tuple[str | None, str | None]:
    """The pool and model a request names, for fault matching: only an allocate's body says them."""
    if name != "allocate":
        return None, None
    try:
        data: Any = json.loads(body)
        return data.get("pool_id"), data.get("requirements", {}).get("model")
    except (ValueError, AttributeError):
        return None, None


async def _relay(
    request: web.Request, answer: aiohttp.ClientResponse, seen: Exchange | None, now: Callable[[], float]
) -> web.StreamResponse:
    """The upstream's answer as the client's: a plain body whole; an event stream as it comes, cut after
    `after_tokens` token events when a `truncate` rule said so. `seen` (when recording) is told what the
    upstream sent."""
    headers = {name: answer.headers[name] for name in _RESPONSE_HEADERS if name in answer.headers}
    if seen is not None:
        seen.status = answer.status
        seen.headers = {
            name: answer.headers[name] for name in (*_RESPONSE_HEADERS, "X-Request-Id") if name in answer.headers
        }
    if answer.content_type != "text/event-stream":
        body = await answer.read()
        answer.release()
        if seen is not None:
            seen.body, seen.ended = body, now()
        return web.Response(status=answer.status, body=body, headers=headers)
    stream = web.StreamResponse(status=answer.status, headers=headers)
    stream.headers["X-Request-Id"] = request[REQUEST_ID]
    await stream.prepare(request)
    cut_after, tokens, event = request.get(TRUNCATE_AFTER), 0, b""
    try:
        async for line in answer.content:
            if line.startswith(b"event:"):
                event = line[len(b"event:") :].strip()
                if seen is not None and event == b"token":
                    seen.token_times.append(now())
            elif seen is not None and event == b"done" and line.startswith(b"data:"):
                seen.done = _object(line[len(b"data:") :])
            if cut_after is not None and line.startswith(b"event: token"):
                if tokens >= cut_after:
                    faults.cut_connection(request, reset=False)
                    return stream
                tokens += 1
            await stream.write(line)
        await stream.write_eof()
    finally:
        answer.release()
        if seen is not None:
            seen.ended = now()
    return stream


def _object(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def proxy_endpoint(operation: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler of one public operation in proxy mode: faults before, forward, faults after."""
    name = operation_name(operation.operation_id)
    faultable = name in OPERATIONS

    async def endpoint(request: web.Request) -> web.StreamResponse:
        state, outcome, upstream = request.app[STATE], request[OUTCOME], request.app[UPSTREAM]
        body = await request.read()
        outcome.idempotency_key = request.headers.get("Idempotency-Key")
        pool_id, model = _match_keys(name, body)
        now = state.clock.now()
        recorder = request.app.get(PROXY_RECORDER)
        if faultable:
            decision = faults.decide(state, outcome, name, "before", now, tenant_id=None, pool_id=pool_id, model=model)
            if decision is not None:
                instead = await faults.before(request, state, decision, outcome, None)
                if instead is not None:
                    return instead
        seen = Exchange(operation.operation_id, request.method, body, recorder.now()) if recorder else None
        try:
            answer = await upstream.send(request, body)
        except ApiError:
            if recorder is not None and seen is not None:
                seen.transport_error, seen.ended = "UpstreamUnreachable", recorder.now()
                recorder.record(seen)
            raise
        response = await _relay(request, answer, seen, recorder.now if recorder else time.perf_counter)
        if recorder is not None and seen is not None:
            recorder.record(seen)  # the upstream's answer, before any after-phase fault spoils it
        location = response.headers.get("Location")
        if location:
            outcome.allocation_id = location.rsplit("/", 1)[-1]
        if not faultable:
            return response
        late = faults.decide(state, outcome, name, "after", now, tenant_id=None, pool_id=pool_id, model=model)
        if late is not None:
            response = await faults.after(request, state, late, outcome, None, response)
        return await faults.shape_answer(request, outcome.fault, response)

    endpoint.__name__ = f"proxy_{operation.operation_id}"
    return endpoint
