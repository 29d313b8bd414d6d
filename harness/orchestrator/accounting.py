"""Per-tenant cost accounting: what each tenant's requests held on HostedAI, and what that cost.

An allocation is billed for the time it was held, whether or not its inference succeeded, because the
GPU was reserved all along: tflops-seconds = allocated tflops × seconds held, likewise VRAM, and
cost = tflops_seconds / 3600 × the pool's price per TFLOPS-hour (HostedAI's own formula, see
`UsageRecord.cost` in contracts/hostedai.v1.yaml). The seconds come from the orchestrator's injectable
clock, so tests can pin them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict


class Cost(BaseModel):
    """What one request consumed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    held_seconds: float = 0.0
    """How long the allocation was held: from the allocate's answer until the release finished."""
    tflops_seconds: float = 0.0
    vram_mb_seconds: float = 0.0
    cost: float = 0.0
    """In the currency of the pool's `price_per_tflops_hour`."""


class CostTotals(BaseModel):
    """A tenant's totals since the ledger started."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str
    allocations: int = 0
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


@dataclass(slots=True)
class _Running:
    allocations: int = 0
    tflops_seconds: float = 0.0
    vram_mb_seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


class CostLedger:
    """Running totals per tenant. In memory: an export to billing reads `totals()` for every tenant."""

    def __init__(self) -> None:
        self._tenants: dict[str, _Running] = {}

    def record(self, tenant: str, cost: Cost, *, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        """One allocation's charge, and the tokens its inference used (0 when it did not finish)."""
        running = self._tenants.setdefault(tenant, _Running())
        running.allocations += 1
        running.tflops_seconds += cost.tflops_seconds
        running.vram_mb_seconds += cost.vram_mb_seconds
        running.cost += cost.cost
        running.prompt_tokens += prompt_tokens
        running.completion_tokens += completion_tokens

    def totals(self, tenant: str) -> CostTotals:
        """A tenant's totals; all zero for a tenant never seen."""
        running = self._tenants.get(tenant, _Running())
        return CostTotals(
            tenant=tenant,
            allocations=running.allocations,
            tflops_seconds=running.tflops_seconds,
            vram_mb_seconds=running.vram_mb_seconds,
            prompt_tokens=running.prompt_tokens,
            completion_tokens=running.completion_tokens,
            cost=running.cost,
        )

    def tenants(self) -> list[str]:
        return sorted(self._tenants)
