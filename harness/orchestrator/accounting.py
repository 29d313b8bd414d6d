"""Per-tenant cost accounting: what each tenant's requests held on HostedAI, and what that cost.

An allocation is billed for the time it was held, whether or not its inference succeeded, because the
GPU was reserved all along: tflops-seconds = allocated tflops × seconds held, likewise VRAM, and
cost = tflops_seconds / 3600 × the pool's price per TFLOPS-hour (HostedAI's own formula, see
`UsageRecord.cost` in contracts/hostedai.v1.yaml). The seconds come from the orchestrator's injectable
clock, so tests can pin them.

A request that shared its allocation with others (batching.py) is billed its exact share of the held
seconds (`exact_charge`). The ledger adds everything up as `Fraction`s, so a tenant's totals are the
exact sums of what its requests were charged, and the totals of all tenants add up to exactly what the
allocations cost; only the floats it reports are rounded, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from pydantic import BaseModel, ConfigDict


class Cost(BaseModel):
    """What one request consumed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    held_seconds: float = 0.0
    """How long the allocation was held: from the allocate's answer until the release finished; for a
    request that shared it (batching), its share of that time."""
    tflops_seconds: float = 0.0
    vram_mb_seconds: float = 0.0
    cost: float = 0.0
    """In the currency of the pool's `price_per_tflops_hour`."""


class CostTotals(BaseModel):
    """A tenant's totals since the ledger started."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str
    allocations: int = 0
    """Requests charged for an allocation, alone or shared (`allocation_share` says how many whole
    allocations that was)."""
    allocation_share: float = 0.0
    """The allocations the tenant's requests held: 1 per request alone, 1/n per request in a batch of n."""
    batched: int = 0
    """Requests that shared their allocation with others."""
    tflops_seconds: float = 0.0
    vram_mb_seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


def charge(*, tflops: float, vram_mb: int, held_seconds: float, price_per_tflops_hour: float) -> Cost:
    """The cost of holding `tflops` and `vram_mb` for `held_seconds` on a pool at that price."""
    held = max(0.0, held_seconds)  # a clock that steps back must not make a refund
    tflops_seconds = tflops * held
    return Cost(
        held_seconds=held,
        tflops_seconds=tflops_seconds,
        vram_mb_seconds=vram_mb * held,
        cost=tflops_seconds / 3600 * price_per_tflops_hour,
    )


@dataclass(frozen=True, slots=True)
class ExactCost:
    """A charge as exact rationals: what the ledger adds up."""

    held_seconds: Fraction = Fraction(0)
    tflops_seconds: Fraction = Fraction(0)
    vram_mb_seconds: Fraction = Fraction(0)
    cost: Fraction = Fraction(0)

    @classmethod
    def of(cls, cost: Cost) -> ExactCost:
        """A float charge, exactly as it is (every float is a rational)."""
        return cls(*(Fraction(v) for v in (cost.held_seconds, cost.tflops_seconds, cost.vram_mb_seconds, cost.cost)))

    def rounded(self) -> Cost:
        return Cost(
            held_seconds=float(self.held_seconds),
            tflops_seconds=float(self.tflops_seconds),
            vram_mb_seconds=float(self.vram_mb_seconds),
            cost=float(self.cost),
        )

    def __add__(self, other: ExactCost) -> ExactCost:
        return ExactCost(
            self.held_seconds + other.held_seconds,
            self.tflops_seconds + other.tflops_seconds,
            self.vram_mb_seconds + other.vram_mb_seconds,
            self.cost + other.cost,
        )


def exact_charge(*, tflops: float, vram_mb: int, held_seconds: Fraction, price_per_tflops_hour: float) -> ExactCost:
    """`charge`, exactly: for a share of an allocation's held time."""
    held = max(Fraction(0), held_seconds)
    tflops_seconds = Fraction(tflops) * held
    return ExactCost(
        held_seconds=held,
        tflops_seconds=tflops_seconds,
        vram_mb_seconds=vram_mb * held,
        cost=tflops_seconds / 3600 * Fraction(price_per_tflops_hour),
    )


@dataclass(slots=True)
class _Running:
    allocations: int = 0
    allocation_share: Fraction = Fraction(0)
    batched: int = 0
    charged: ExactCost = ExactCost()
    prompt_tokens: int = 0
    completion_tokens: int = 0


class CostLedger:
    """Running totals per tenant. In memory: an export to billing reads `totals()` for every tenant."""

    def __init__(self) -> None:
        self._tenants: dict[str, _Running] = {}
        self._allocations = ExactCost()

    def record(
        self,
        tenant: str,
        cost: Cost | ExactCost,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        shared_by: int = 1,
    ) -> None:
        """One request's charge (exact, for a share of a batch's allocation), and the tokens its
        inference used (0 when it did not finish). `shared_by`: the requests on that allocation."""
        running = self._tenants.setdefault(tenant, _Running())
        running.allocations += 1
        running.allocation_share += Fraction(1, max(1, shared_by))
        running.batched += shared_by > 1
        running.charged += cost if isinstance(cost, ExactCost) else ExactCost.of(cost)
        running.prompt_tokens += prompt_tokens
        running.completion_tokens += completion_tokens

    def record_allocation(self, cost: Cost | ExactCost) -> None:
        """What one allocation cost as a whole, once released: shared or not, the sum of its requests'
        charges. `reconciles()` checks that against the tenants' totals."""
        self._allocations += cost if isinstance(cost, ExactCost) else ExactCost.of(cost)

    def allocations_total(self) -> ExactCost:
        return self._allocations

    def charged_total(self) -> ExactCost:
        """Every tenant's charges together."""
        return sum((r.charged for r in self._tenants.values()), ExactCost())

    def reconciles(self) -> bool:
        """Whether the tenants were charged exactly what the allocations cost: nothing lost, nothing twice."""
        return self.charged_total() == self.allocations_total()

    def exact(self, tenant: str) -> ExactCost:
        """A tenant's charges, summed exactly."""
        running = self._tenants.get(tenant)
        return running.charged if running is not None else ExactCost()

    def totals(self, tenant: str) -> CostTotals:
        """A tenant's totals; all zero for a tenant never seen."""
        running = self._tenants.get(tenant, _Running())
        return CostTotals(
            tenant=tenant,
            allocations=running.allocations,
            allocation_share=float(running.allocation_share),
            batched=running.batched,
            tflops_seconds=float(running.charged.tflops_seconds),
            vram_mb_seconds=float(running.charged.vram_mb_seconds),
            prompt_tokens=running.prompt_tokens,
            completion_tokens=running.completion_tokens,
            cost=float(running.charged.cost),
        )

    def tenants(self) -> list[str]:
        return sorted(self._tenants)
