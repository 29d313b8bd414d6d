"""Request batching: small requests of one class, arriving close together, share one allocation.

The integration guide asks to "combine small requests when possible". Allocating is the slow, billed
part of a request (provisioning, then held until released), so requests of the same class that arrive
within `max_wait_ms` of the first are put in one *batch*: one allocation for all of them, closed as
soon as it has `max_size` requests or when the wait runs out, whichever comes first.

What is not combined: the inference. HostedAI's inference takes one prompt per call, and joining several
customers' prompts into one would mix their data; so each request keeps its own inference call, all of
them running at once on the shared allocation, where HostedAI's engine batches them on the GPU.

Cost stays exact per request (`SharedHold`): the allocation's held time is cut at each request's
departure, and every slice is split equally among the requests still on the allocation — a short
request does not pay for a long one, and the last one also pays for the release. The shares are
`Fraction`s, so they add up to the allocation's whole time exactly, not within rounding.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Annotated, Protocol

from pydantic import BaseModel, ConfigDict, Field

from harness.connector import Allocation
from harness.orchestrator.catalogue import PoolChoice
from harness.orchestrator.classifier import Label


class BatchPolicy(BaseModel):
    """`batching:` in harpoon-service's config. Off unless `enabled`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    max_size: Annotated[int, Field(ge=1, le=256)] = 8
    """Requests in one batch at most: it closes at once when full."""
    max_wait_ms: Annotated[float, Field(ge=0, le=10_000)] = 25.0
    """How long the first request of a batch waits for others: the most batching adds to a request."""
    classes: list[Label] = ["simple"]
    """The request classes batched: the small ones."""


class SharedHold:
    """One allocation's held time, split among the requests on it.

    Between two departures, the slice of time is shared equally by the requests still there; a request
    leaving takes the sum of its shares of every slice so far. Exact: `Fraction` arithmetic, so the
    shares of all requests add up to `end - start` with nothing lost to rounding."""

    def __init__(self, started: float, members: int) -> None:
        self._started = self._last = Fraction(started)
        self._present = members
        self._per_member = Fraction(0)

    @property
    def present(self) -> int:
        return self._present

    @property
    def held(self) -> Fraction:
        """The allocation's whole held time so far (all of it once everyone left)."""
        return self._last - self._started

    def leave(self, at: float) -> Fraction:
        """The seconds attributed to a request leaving at `at` (a clock stepping back adds nothing)."""
        now = max(Fraction(at), self._last)
        if self._present > 0:
            self._per_member += (now - self._last) / self._present
            self._present -= 1
        self._last = now
        return self._per_member


@dataclass(frozen=True, slots=True)
class Grant:
    """What a closed batch got: the shared allocation, the pool it is on, and its hold."""

    allocation: Allocation
    choice: PoolChoice
    hold: SharedHold
    members: int
    """The requests sharing the allocation."""


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


Schedule = Callable[[float, Callable[[], None]], TimerHandle]
"""Run a callback after some seconds: `loop.call_later` by default; tests pass one they fire by hand."""


@dataclass(eq=False)
class Batch:
    """Requests of one class waiting for, then sharing, one allocation."""

    label: Label
    tenants: list[str] = field(default_factory=list)
    """One entry per request that joined (and has not withdrawn before the allocation)."""
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    grant: asyncio.Future[Grant] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    all_left: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the last request is done with the allocation: it may be released."""
    released: asyncio.Event = field(default_factory=asyncio.Event)
    timer: TimerHandle | None = None

    @property
    def size(self) -> int:
        return len(self.tenants)

    def withdraw(self, tenant: str) -> None:
        """A request gone before the allocation was granted (cancelled, timed out): it holds no share."""
        self.tenants.remove(tenant)
        if not self.tenants and self.closed.is_set():
            self.all_left.set()

    def start(self, grant: Grant) -> None:
        if not self.tenants:
            self.all_left.set()  # everyone withdrew while it was being allocated: release at once
        self.grant.set_result(grant)

    def fail(self, error: BaseException) -> None:
        if not self.grant.done():
            self.grant.set_exception(error)
            self.grant.exception()  # retrieved: a batch every request withdrew from must not warn

    async def leave(self, hold: SharedHold, clock: Callable[[], float]) -> Fraction:
        """A request is done with the allocation: its share of the held time. The last one out lets the
        allocation go and waits for the release, whose time it pays for."""
        if hold.present > 1:
            return hold.leave(clock())
        self.all_left.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self.released.wait())
        return hold.leave(clock())


class Batcher:
    """Open batches by class: `join` puts a request in the open batch of its class (opening one if
    none is), and returns once that batch is closed. `on_close` is called with each batch as it closes,
    to allocate for it."""

    def __init__(self, policy: BatchPolicy, on_close: Callable[[Batch], None], *, schedule: Schedule | None = None):
        self.policy = policy
        self._on_close = on_close
        self._schedule = schedule
        self._open: dict[Label, Batch] = {}

    def takes(self, label: Label) -> bool:
        return self.policy.enabled and label in self.policy.classes

    async def join(self, label: Label, tenant: str) -> Batch:
        batch = self._open.get(label)
        if batch is None:
            batch = self._open[label] = Batch(label)
            batch.timer = self._later(self.policy.max_wait_ms / 1000, lambda: self._close(batch))
        batch.tenants.append(tenant)
        if batch.size >= self.policy.max_size:
            self._close(batch)
        try:
            await batch.closed.wait()
        except asyncio.CancelledError:
            if not batch.closed.is_set():
                self._leave_open(batch, tenant)
            raise
        return batch

    def _later(self, seconds: float, callback: Callable[[], None]) -> TimerHandle:
        if self._schedule is not None:
            return self._schedule(seconds, callback)
        return asyncio.get_running_loop().call_later(seconds, callback)

    def _leave_open(self, batch: Batch, tenant: str) -> None:
        batch.tenants.remove(tenant)
        if not batch.tenants:
            # Nobody is waiting any more: the batch is dropped without allocating.
            if batch.timer is not None:
                batch.timer.cancel()
            self._open.pop(batch.label, None)

    def _close(self, batch: Batch) -> None:
        if batch.closed.is_set():
            return
        if self._open.get(batch.label) is batch:
            del self._open[batch.label]
        if batch.timer is not None:
            batch.timer.cancel()
        batch.closed.set()
        self._on_close(batch)
