"""Usage metering: what each allocation held, for how long, and what it cost, in bounded memory.

An allocation accrues `tflops × seconds held` and `vram_mb × seconds held` from creation until it ends
(released, expired, preempted or failed): capacity is billed while held, not only while inferring, as
on HostedAI where an idle subscription keeps billing. Cost is tflops-hours × the pool's price.

Two views, kept apart so memory stays flat over a soak:
- exact aggregates per tenant, usage period, pool and model, kept for ever: allocations started,
  TFLOPS- and VRAM-seconds held (an allocation's held time split exactly at period boundaries), and
  tokens (counted in the period the inference finished). One small `Meter` per period and pair.
- per-allocation detail (`UsageRecord`), built on demand from the allocations the simulator still
  keeps (live, or ended within the retention window): the detail is as bounded as that window.

A usage window is widened to whole periods (`window`), so the totals are exact for any window and equal
the sum of the records whenever every allocation in it is still in the detail window.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mock_server.sim.model import Allocation


@dataclass(frozen=True, slots=True)
class UsageRecord:
    allocation_id: str
    pool_id: str
    model: str
    labels: dict[str, str]
    tflops_seconds: float
    vram_mb_seconds: float
    prompt_tokens: int
    completion_tokens: int
    cost: float
    started_at: float
    ended_at: float | None


@dataclass(frozen=True, slots=True)
class UsageTotals:
    allocations: int
    """Allocations started inside the window."""
    tflops_seconds: float
    vram_mb_seconds: float
    prompt_tokens: int
    completion_tokens: int
    cost: float


@dataclass(frozen=True, slots=True)
class Window:
    """Simulated seconds `[since, until)` on period boundaries; None is unbounded."""

    since: float | None
    until: float | None

    def clip(self, start: float, end: float) -> float:
        lo = start if self.since is None else max(start, self.since)
        hi = end if self.until is None else min(end, self.until)
        return max(0.0, hi - lo)

    def overlaps(self, start: float, end: float) -> bool:
        """Held at some time inside, or started inside (an allocation ended the moment it began)."""
        return (self.until is None or start < self.until) and (
            self.since is None or end > self.since or start >= self.since
        )


@dataclass(slots=True)
class Meter:
    allocations: int = 0
    tflops_seconds: float = 0.0
    vram_mb_seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Ledger:
    def __init__(self, period_s: float, prices: dict[str, float]) -> None:
        self.period_s = period_s
        self._prices = prices
        # tenant -> (period, pool, model) -> Meter: grows with simulated time only (one entry per
        # period and pair in use), never with the number of allocations.
        self._meters: dict[str, dict[tuple[int, str, str], Meter]] = defaultdict(dict)
        # The tenant's active allocations, in creation order: their held time is not in a meter yet.
        self._live: dict[str, dict[str, Allocation]] = defaultdict(dict)

    def period(self, t: float) -> int:
        return math.floor(t / self.period_s)

    def window(self, since: float | None, until: float | None) -> Window:
        """`[since, until)` widened to whole periods."""
        p = self.period_s
        return Window(
            None if since is None else math.floor(since / p) * p,
            None if until is None else math.ceil(until / p) * p,
        )

    def _meter(self, alloc: Allocation, period: int) -> Meter:
        meters = self._meters[alloc.tenant_id]
        key = (period, alloc.pool_id, alloc.model)
        meter = meters.get(key)
        if meter is None:
            meter = meters[key] = Meter()
        return meter

    # ---- recording ------------------------------------------------------------------------------------

    def open(self, alloc: Allocation) -> None:
        self._meter(alloc, self.period(alloc.created_at)).allocations += 1
        self._live[alloc.tenant_id][alloc.allocation_id] = alloc

    def close(self, alloc: Allocation) -> None:
        """The allocation ended: its held time goes into the meters of the periods it spans."""
        self._live[alloc.tenant_id].pop(alloc.allocation_id, None)
        assert alloc.ended_at is not None
        for period, seconds in self._split(alloc.created_at, alloc.ended_at):
            meter = self._meter(alloc, period)
            meter.tflops_seconds += alloc.tflops * seconds
            meter.vram_mb_seconds += alloc.vram_mb * seconds

    def tokens(self, alloc: Allocation, at: float, prompt: int, completion: int) -> None:
        period = self.period(at)
        meter = self._meter(alloc, period)
        meter.prompt_tokens += prompt
        meter.completion_tokens += completion
        alloc.prompt_tokens += prompt
        alloc.completion_tokens += completion
        by_period = alloc.tokens_by_period
        if by_period is None:
            by_period = alloc.tokens_by_period = {}
        p, c = by_period.get(period, (0, 0))
        by_period[period] = (p + prompt, c + completion)

    def _split(self, start: float, end: float) -> Iterator[tuple[int, float]]:
        period = self.period(start)
        while True:
            boundary = (period + 1) * self.period_s
            if end <= boundary:
                if end > start:
                    yield period, end - start
                return
            yield period, boundary - start
            start, period = boundary, period + 1

    # ---- reading --------------------------------------------------------------------------------------

    def live(self, tenant_id: str) -> Iterable[Allocation]:
        return self._live.get(tenant_id, {}).values()

    def record(self, alloc: Allocation, now: float, window: Window) -> UsageRecord:
        """The allocation's usage inside the window."""
        held = window.clip(alloc.created_at, alloc.ended_or(now))
        prompt, completion = self._tokens_in(alloc, window)
        tflops_seconds = alloc.tflops * held
        return UsageRecord(
            allocation_id=alloc.allocation_id,
            pool_id=alloc.pool_id,
            model=alloc.model,
            labels=dict(alloc.labels),
            tflops_seconds=round(tflops_seconds, 6),
            vram_mb_seconds=round(alloc.vram_mb * held, 6),
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=round(tflops_seconds / 3600 * self._prices[alloc.pool_id], 9),
            started_at=alloc.created_at,
            ended_at=alloc.ended_at,
        )

    def _tokens_in(self, alloc: Allocation, window: Window) -> tuple[int, int]:
        if window.since is None and window.until is None:
            return alloc.prompt_tokens, alloc.completion_tokens
        lo, hi = self._period_range(window)
        prompt = completion = 0
        for period, (p, c) in (alloc.tokens_by_period or {}).items():
            if lo <= period < hi:
                prompt += p
                completion += c
        return prompt, completion

    def _period_range(self, window: Window) -> tuple[float, float]:
        lo = -math.inf if window.since is None else round(window.since / self.period_s)
        hi = math.inf if window.until is None else round(window.until / self.period_s)
        return lo, hi

    def totals(self, tenant_id: str, now: float, window: Window) -> UsageTotals:
        """Everything the tenant was ever billed inside the window: the meters, plus what the live
        allocations have held so far."""
        lo, hi = self._period_range(window)
        tflops_by_pool: dict[str, float] = defaultdict(float)
        total = Meter()
        for (period, pool_id, _model), meter in self._meters.get(tenant_id, {}).items():
            if lo <= period < hi:
                total.allocations += meter.allocations
                total.vram_mb_seconds += meter.vram_mb_seconds
                total.prompt_tokens += meter.prompt_tokens
                total.completion_tokens += meter.completion_tokens
                tflops_by_pool[pool_id] += meter.tflops_seconds
        for alloc in self.live(tenant_id):
            held = window.clip(alloc.created_at, now)
            tflops_by_pool[alloc.pool_id] += alloc.tflops * held
            total.vram_mb_seconds += alloc.vram_mb * held
        tflops_seconds = sum(tflops_by_pool.values())
        cost = sum(seconds / 3600 * self._prices[pool_id] for pool_id, seconds in tflops_by_pool.items())
        return UsageTotals(
            allocations=total.allocations,
            tflops_seconds=round(tflops_seconds, 6),
            vram_mb_seconds=round(total.vram_mb_seconds, 6),
            prompt_tokens=total.prompt_tokens,
            completion_tokens=total.completion_tokens,
            cost=round(cost, 9),
        )

    def meters(self) -> int:
        """How many meters exist (grows with simulated time, not with allocations)."""
        return sum(len(m) for m in self._meters.values())
