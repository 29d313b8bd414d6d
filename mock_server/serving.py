"""Serving on a hostile network: the one way both servers listen (`hostedai-mock`, `harpoon-service`).

aiohttp closes idle keep-alive connections and drains on shutdown, but has no header or body read
timeout and no cap on connections: a few thousand idle or slow sockets use up the open-file limit and
the server stops answering anyone. `serve()` wraps aiohttp's protocol with a `ConnectionGuard`:

- a cap on open connections: at the cap a new connection closes the oldest idle one (no request in
  progress), so a flood of idle or slow clients never locks a new client out; when every connection is
  busy the newcomer is refused. The cap stays below the open-file limit, so accept() never runs out.
- a header timeout: a connection must send a request's headers within `header_timeout_s` of opening,
  or of its first byte after a response; an idle keep-alive connection closes after `idle_timeout_s`.
- a body timeout: a request's body must have arrived within `body_timeout_s` of its headers.
- a bounded drain on SIGTERM or SIGINT: in-flight requests get `shutdown_timeout_s`, then are cancelled.
- protocol errors (a malformed request line or header) answered as problem+json that echoes nothing,
  and the access log of `logs.AccessLog`.

Connections closed by the guard are counted and reported at INFO at most every ten seconds, so an
attack does not flood the log.

TWIN FILE: `mock_server/serving.py` and `harness/service/serving.py` are the same file byte for byte
(`tests/server/test_serving.py` pins it): the two packages may not import each other, and both need this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import resource
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any, cast

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_log import AccessLogger
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

# Descriptors for everything but client connections: the listening socket, logs, files, and outgoing
# connections (the service's pool to HostedAI holds up to 100).
OTHER_FDS = 128
# How often the guard's tally of closed connections is written to the log, at most.
REPORT_EVERY_S = 10.0
# A header deadline is `header_timeout_s` stretched by up to this fraction, at random.
HEADER_JITTER = 0.25
# Connections the kernel queues for accept() (aiohttp's default is 128; the kernel caps it at somaxconn).
# When a crowd connects at once, a full queue drops SYNs, and each client dropped waits a second for its
# retry: a new client must reach the guard to be let in.
LISTEN_BACKLOG = 1024

# The request key under which the guard leaves when a request's first byte was read (the event loop's
# clock): a server that promises a latency counts it from there, so the time the request then waited
# for the CPU (behind a burst of others) is part of that latency rather than added to it. `serve` takes
# another key from an application whose handlers may not import this module.
ARRIVED = web.RequestKey("arrived", float)

ProblemRenderer = Callable[[int], web.Response]
"""Builds the problem+json answer to a request aiohttp could not parse (given its status)."""


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    idle_timeout_s: float = 75.0
    """An idle keep-alive connection closes after this long (above the 15–60 s of common client pools)."""
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 4096
    """Idle ones cost about 13 KB each; the open-file limit may lower it (`effective_max_connections`)."""
    shutdown_timeout_s: float = 10.0
    """How long in-flight requests may run on after SIGTERM before they are cancelled."""


def raise_open_file_limit() -> int:
    """The soft open-file limit raised to the hard one (as Go programs do at start: the soft default of
    1,024 is a relic, the hard limit is the real budget); the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def listen_backlog(open_files: int) -> int:
    """`LISTEN_BACKLOG`, smaller under a small open-file limit: asyncio accepts up to a backlog's worth of
    connections in one go, before the ones they evict are closed, so the backlog is part of the budget."""
    return max(16, min(LISTEN_BACKLOG, open_files // 4))


def effective_max_connections(configured: int, open_files: int) -> int:
    """The cap, lowered so that connections, an accept burst and everything else fit the open-file limit."""
    if open_files == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, open_files - listen_backlog(open_files) - OTHER_FDS))


# ---- the guard ---------------------------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's protocol inside, the guard's timers around it."""

    def __init__(self, guard: ConnectionGuard, inner: RequestHandler) -> None:
        self._guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.busy = 0
        """Requests of this connection in progress (past their headers, not yet answered)."""
        self.first_byte_at: float | None = None
        """When the next request's first byte was read (the loop's clock), until its handler starts."""
        self.admitted = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._headers_due: float | None = None
        """When the request being read must have sent its headers (None: not reading one)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports do not derive from asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        if not self._guard.admit(self):
            self.transport.abort()
            return
        self.admitted = True
        self.inner.connection_made(transport)
        self.arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            if self.first_byte_at is None:
                self.first_byte_at = asyncio.get_running_loop().time()
            if self._headers_due is None:
                # The first byte of a new request on a kept-alive connection: its headers are now due.
                self.arm_header_timer()
        self.inner.data_received(data)

    def eof_received(self) -> None:
        # aiohttp's protocol keeps the transport open for the answer (half-close); so does this.
        self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm_header_timer()
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._guard.forget(self)
        if self.admitted:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def arm_header_timer(self) -> None:
        """The headers of the request now being read are due within the header timeout.

        One timer per connection that outlives its requests: arming moves the deadline and disarming
        forgets it, and the timer, when it fires, looks at the deadline then (and re-arms itself for a
        later one). A kept-alive connection's requests then cost two attribute writes, not a timer
        scheduled and cancelled each."""
        loop = asyncio.get_running_loop()
        # Up to a quarter longer, at random: a crowd that connected at once is not cut off at once, so it
        # does not come back as one wave of connects that overflows the listen queue.
        timeout = self._guard.limits.header_timeout_s * (1 + HEADER_JITTER * self._guard.jitter.random())
        due = self._headers_due = loop.time() + timeout
        timer = self._header_timer
        if timer is not None and timer.when() > due:
            # Set for a later deadline (an earlier request drew more jitter): this one would be missed.
            timer.cancel()
            timer = None
        if timer is None:
            self._header_timer = loop.call_at(due, self._headers_late)

    def disarm_header_timer(self) -> None:
        self._headers_due = None

    def _headers_late(self) -> None:
        self._header_timer = None
        due = self._headers_due
        if due is None or self.busy:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < due:
            self._header_timer = loop.call_at(due, self._headers_late)
            return
        self._headers_due = None
        self._guard.close(self, "slow or missing request headers")

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class ConnectionGuard:
    """Counts the connections of one server, closes the idle, slow and surplus ones."""

    def __init__(
        self,
        limits: ConnectionLimits,
        *,
        open_files: int | None = None,
        arrived_key: web.RequestKey[float] = ARRIVED,
    ) -> None:
        """`open_files`: the soft open-file limit (default: the process's, as it is now); `arrived_key`:
        where a request's arrival is left (`ARRIVED`)."""
        self.arrived_key = arrived_key
        if open_files is None:
            open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.limits = limits
        self.open_files = open_files
        self.max_connections = effective_max_connections(limits.max_connections, open_files)
        # Insertion order is age: the first idle connection found is the oldest.
        self._open: dict[_Connection, None] = {}
        self._by_transport: dict[asyncio.BaseTransport, _Connection] = {}
        self._closed: Counter[str] = Counter()
        self.jitter = random.Random()
        self._reported_at: float | None = None

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def protocol_factory(
        self, server: Callable[[], RequestHandler], handler_class: type[RequestHandler]
    ) -> Callable[[], asyncio.Protocol]:
        def make() -> asyncio.Protocol:
            inner = server()
            # The same object with `handle_error` answering problem+json; the subclass adds no slots,
            # so aiohttp's Server keeps building the protocol exactly as it would.
            inner.__class__ = handler_class
            return _Connection(self, inner)

        return make

    def admit(self, conn: _Connection) -> bool:
        if len(self._open) >= self.max_connections and not self._evict_idle():
            self._count("refused: every connection busy")
            return False
        self._open[conn] = None
        assert conn.transport is not None
        self._by_transport[conn.transport] = conn
        return True

    def _evict_idle(self) -> bool:
        # The oldest idle connection goes. A newcomer is never evicted before its first bytes are read:
        # asyncio accepts at most a backlog's worth at once, and the cap is well above that.
        oldest_idle = next((c for c in self._open if not c.busy), None)
        if oldest_idle is None:
            return False
        self.close(oldest_idle, f"over the cap of {self.max_connections} connections")
        return True

    def close(self, conn: _Connection, reason: str) -> None:
        self.forget(conn)
        self._count(reason)
        conn.abort()

    def forget(self, conn: _Connection) -> None:
        self._open.pop(conn, None)
        if conn.transport is not None:
            self._by_transport.pop(conn.transport, None)

    def _count(self, reason: str) -> None:
        self._closed[reason] += 1
        now = asyncio.get_running_loop().time()
        if self._reported_at is None or now - self._reported_at >= REPORT_EVERY_S:
            self._reported_at = now
            tally = ", ".join(f"{n} {why}" for why, n in sorted(self._closed.items()))
            log.info("closed connections (%s); %d open", tally, len(self._open))
            self._closed.clear()

    def middleware(self) -> Middleware:
        """Marks a connection busy while its request runs, and holds the request's body to its deadline."""

        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            conn = self._by_transport.get(request.transport) if request.transport is not None else None
            if conn is None:
                return await handler(request)
            conn.busy += 1
            conn.disarm_header_timer()
            if conn.first_byte_at is not None:
                request[self.arrived_key] = conn.first_byte_at
                conn.first_byte_at = None
            body_timer = None
            # A body that came whole with its headers (the usual small JSON body) needs no deadline.
            if request.body_exists and not request.content.is_eof():
                loop = asyncio.get_running_loop()
                body_timer = loop.call_later(self.limits.body_timeout_s, self._body_late, conn, request)
            try:
                return await handler(request)
            finally:
                if body_timer is not None:
                    body_timer.cancel()
                conn.busy -= 1

        return guard

    def _body_late(self, conn: _Connection, request: web.Request) -> None:
        if not request.content.is_eof():
            self.close(conn, "slow request body")


def problem_handler_class(render: ProblemRenderer) -> type[RequestHandler]:
    """aiohttp's protocol, with the answer to a request it cannot parse (a bad request line, header or
    body framing) rendered as problem+json. aiohttp's own page is text that quotes the bad input, and
    logs it at ERROR: a malformed `Authorization` line would reach the log."""

    class ProblemRequestHandler(RequestHandler):
        __slots__ = ()

        def handle_error(
            self,
            request: Any,
            status: int = 500,
            exc: BaseException | None = None,
            message: str | None = None,
        ) -> web.StreamResponse:
            if status >= 500:
                log.error("error handling a request from %s", request.remote, exc_info=exc)
            else:
                # The parser's message quotes the input: name the error, never the bytes.
                log.info("refused a malformed request from %s (%s)", request.remote, type(exc).__name__)
            if request.writer.output_size > 0:
                raise ConnectionError("the response had begun; the connection is closed instead")
            response = render(status)
            response.force_close()
            return response

    return ProblemRequestHandler


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a `ConnectionGuard`."""

    __slots__ = ("_guard", "_handler_class", "_host", "_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        guard: ConnectionGuard,
        handler_class: type[RequestHandler],
        host: str,
        port: int,
        *,
        ssl_context: SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=listen_backlog(guard.open_files))
        self._guard = guard
        self._handler_class = handler_class
        self._host = host
        self._port = port

    @property
    def name(self) -> str:
        return f"{'https' if self._ssl_context else 'http'}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        factory = self._guard.protocol_factory(server, self._handler_class)
        self._server = await asyncio.get_running_loop().create_server(
            factory, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog, reuse_address=True
        )


# ---- serving -----------------------------------------------------------------------------------------


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    limits: ConnectionLimits,
    render_problem: ProblemRenderer,
    started: Callable[[str], None],
    access_log: type[AbstractAccessLogger] = AccessLogger,
    ssl_context: SSLContext | None = None,
    stop: Callable[[], Awaitable[None]] | None = None,
    arrived_key: web.RequestKey[float] = ARRIVED,
) -> None:
    """Serve `app` until SIGTERM or SIGINT (or until `stop()` returns), then drain within the limits.
    `started` is told the URL once the server listens; `access_log` writes the access log."""
    guard = ConnectionGuard(limits, open_files=raise_open_file_limit(), arrived_key=arrived_key)
    log.info(
        "at most %d connections (open-file limit %d, listen backlog %d)",
        guard.max_connections,
        guard.open_files,
        listen_backlog(guard.open_files),
    )
    # Outermost, so it sees every request; the app is not frozen until the runner's setup.
    app.middlewares.insert(0, guard.middleware())
    runner = web.AppRunner(
        app,
        keepalive_timeout=limits.idle_timeout_s,
        # A body the handler did not read is drained after the answer for at most this long.
        lingering_time=min(limits.body_timeout_s, 10.0),
        shutdown_timeout=limits.shutdown_timeout_s,
        access_log_class=access_log,
    )
    await runner.setup()
    try:
        site = GuardedSite(runner, guard, problem_handler_class(render_problem), host, port, ssl_context=ssl_context)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        scheme = "https" if ssl_context is not None else "http"
        started(f"{scheme}://{bound_host}:{bound_port}")
        await (stop or _signalled)()
        log.info("stopping: draining requests in flight for at most %g s", limits.shutdown_timeout_s)
    finally:
        try:
            # aiohttp bounds the drain of handlers; the app's own clean-up gets a little more.
            await asyncio.wait_for(runner.cleanup(), limits.shutdown_timeout_s + 5)
        except TimeoutError:
            log.warning("shutdown took longer than %g s; exiting anyway", limits.shutdown_timeout_s + 5)


async def _signalled() -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)
