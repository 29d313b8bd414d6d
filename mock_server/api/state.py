"""What the HTTP layer shares between requests: one `ServerState` per app, under one typed key."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from dataclasses import dataclass, field

from aiohttp import web

from mock_server.api.admin_auth import AdminGate
from mock_server.api.contract import Contract, Operation
from mock_server.api.journal import Journal, Outcome
from mock_server.api.metrics import ServerMetrics
from mock_server.config import MockConfig
from mock_server.dashboard.latency import LatencyWindow
from mock_server.sim.clock import Clock
from mock_server.sim.model import Allocation
from mock_server.sim.simulator import Simulator
from mock_server.sim.textgen import stable_seed

CLIENT_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


class Waiters:
    """Wake-ups for requests that wait on the simulation: an allocate queueing for capacity
    (`wait_seconds`), an inference running while its allocation might end."""

    def __init__(self, sim: Simulator) -> None:
        self._changed = asyncio.Event()
        self._nappers: Sleepers = {}
        self._until_end: Sleepers = {}
        self.waiting = 0
        """Requests waiting for a change right now (queued allocates)."""
        sim.on_capacity_freed.append(lambda _pool: self.notify())
        sim.on_allocation_ended.append(self._allocation_ended)
        sim.on_gpu_changed.append(self.gpu_changed)

    def notify(self) -> None:
        """Something changed (capacity freed, clock advanced): wake every waiter to look again."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for_change(self, at_most_s: float | None) -> None:
        """Until the next `notify()`, or `at_most_s` real seconds (None: no bound)."""
        self.waiting += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), at_most_s)
        finally:
            self.waiting -= 1

    def gpu_changed(self, gpu_id: str) -> None:
        """What runs on a GPU changed (a request left, an allocation ended): its nappers look again. (The
        simulator does not say when a request arrives: that only delays the others, so a napper's
        wake-up, set for the soonest its next token or its end could come, is still not late.)"""
        _wake_all(self._nappers, gpu_id)

    def _allocation_ended(self, alloc: Allocation) -> None:
        self.gpu_changed(alloc.gpu_id)
        _wake_all(self._until_end, alloc.allocation_id)

    async def sleep_unless_ended(self, allocation_id: str, real_seconds: float) -> None:
        """Sleep `real_seconds`, or less if the allocation ends meanwhile (woken by its end only, not by
        every change on its GPU: a crowd of requests in their frontend share stays asleep)."""
        await _sleep_unless_woken(self._until_end, allocation_id, real_seconds)

    async def nap(self, gpu_id: str, real_seconds: float) -> None:
        """Sleep `real_seconds`, or less if what runs on the GPU changes (one future and one timer: no task)."""
        await _sleep_unless_woken(self._nappers, gpu_id, real_seconds)


Sleepers = dict[str, set[asyncio.Future[None]]]
"""Futures that end a sleep early, by what wakes them (a GPU id, an allocation id)."""


async def _sleep_unless_woken(sleepers: Sleepers, key: str, real_seconds: float) -> None:
    """Sleep `real_seconds`, or until `_wake_all(sleepers, key)`."""
    if real_seconds <= 0:
        return
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()
    waiting = sleepers.setdefault(key, set())
    waiting.add(future)
    timer = loop.call_later(real_seconds, _wake, future)
    try:
        await future
    finally:
        timer.cancel()
        waiting.discard(future)
        if not waiting and sleepers.get(key) is waiting:
            del sleepers[key]


def _wake_all(sleepers: Sleepers, key: str) -> None:
    for future in sleepers.pop(key, ()):
        _wake(future)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(slots=True)
class ServerState:
    config: MockConfig
    clock: Clock
    sim: Simulator
    contract: Contract
    operations: dict[str, Operation]
    """Every routed operation of both contracts, by operationId."""
    metrics: ServerMetrics
    waiters: Waiters
    journal: Journal
    latency: LatencyWindow
    """TTFT and ITL of answered inferences, for the dashboard."""
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the server shuts down: long-lived streams (the dashboard's) end."""
    _ids: random.Random = field(default_factory=lambda: random.Random(0))
    admin_gate: AdminGate = field(default_factory=AdminGate)
    """Checks `X-Admin-Token`, rate limiting failed attempts per client address."""

    def reseed_request_ids(self) -> None:
        self._ids = random.Random(stable_seed("request-ids", self.sim.id_seed))

    @property
    def strict(self) -> bool:
        return self.config.server.strict

    def request_id(self, sent: str | None) -> str:
        if sent is not None and CLIENT_REQUEST_ID.match(sent):
            return sent
        return f"req_{self._ids.getrandbits(64):016x}"


STATE = web.AppKey("state", ServerState)
# When the request's first byte was read (the loop's clock), if a connection guard saw it
# (`mock_server.serving`: the program's `serve` hands this key to it).
ARRIVED = web.RequestKey("arrived", float)
REQUEST_ID = web.RequestKey("request_id", str)
OUTCOME = web.RequestKey("outcome", Outcome)
# A streamed inference stops after this many tokens, without `done` (a `truncate` fault).
TRUNCATE_AFTER = web.RequestKey("truncate_after", int)
# The body a handler sent, kept so strict mode can validate it without parsing it back.
RESPONSE_DATA = web.ResponseKey("data", object)
