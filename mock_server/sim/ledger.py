"""Usage metering: what each allocation held, for how long, and what it cost.

An allocation accrues `tflops × seconds held` and `vram_mb × seconds held` from creation until it ends
(released, expired, preempted or failed): capacity is billed while held, not only while inferring, as
on HostedAI where an idle subscription keeps billing. Cost is tflops-hours × the pool's price.
Tokens are counted per allocation; a usage window clips the held time but reports the allocation's
tokens whole.
"""

from __future__ import annotations

from collections import defaultdict
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
    tflops_seconds: float
    vram_mb_seconds: float
    prompt_tokens: int
    completion_tokens: int
    cost: float


class Ledger:
    def __init__(self) -> None:
        # Every allocation a tenant ever made, in creation order; kept after the allocation itself is
        # no longer readable, because a bill must not lose records.
        self._by_tenant: dict[str, list[Allocation]] = defaultdict(list)

    def open(self, alloc: Allocation) -> None:
        self._by_tenant[alloc.tenant_id].append(alloc)

    def records(
        self, tenant_id: str, now: float, prices: dict[str, float], since: float | None, until: float | None
    ) -> list[UsageRecord]:
        lo = float("-inf") if since is None else since
        hi = float("inf") if until is None else until
        out: list[UsageRecord] = []
        for alloc in self._by_tenant.get(tenant_id, ()):
            end = alloc.ended_at if alloc.ended_at is not None else now
            if alloc.created_at >= hi or end < lo:
                continue
            held = max(0.0, min(end, hi) - max(alloc.created_at, lo))
            tflops_seconds = alloc.tflops * held
            out.append(
                UsageRecord(
                    allocation_id=alloc.allocation_id,
                    pool_id=alloc.pool_id,
                    model=alloc.model,
                    labels=dict(alloc.labels),
                    tflops_seconds=round(tflops_seconds, 6),
                    vram_mb_seconds=round(alloc.vram_mb * held, 6),
                    prompt_tokens=alloc.prompt_tokens,
                    completion_tokens=alloc.completion_tokens,
                    cost=round(tflops_seconds / 3600 * prices[alloc.pool_id], 9),
                    started_at=alloc.created_at,
                    ended_at=alloc.ended_at,
                )
            )
        return out

    def all(self, tenant_id: str | None = None) -> list[Allocation]:
        """Every allocation ever made (by one tenant, or by all), in creation order per tenant."""
        if tenant_id is not None:
            return list(self._by_tenant.get(tenant_id, ()))
        return [a for allocations in self._by_tenant.values() for a in allocations]

    def forget(self) -> None:
        self._by_tenant.clear()


def totals(records: list[UsageRecord]) -> UsageTotals:
    return UsageTotals(
        allocations=len(records),
        tflops_seconds=round(sum(r.tflops_seconds for r in records), 6),
        vram_mb_seconds=round(sum(r.vram_mb_seconds for r in records), 6),
        prompt_tokens=sum(r.prompt_tokens for r in records),
        completion_tokens=sum(r.completion_tokens for r in records),
        cost=round(sum(r.cost for r in records), 9),
    )
