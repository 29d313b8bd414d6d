"""The cost ledger: HostedAI's formula, per tenant."""

from __future__ import annotations

from fractions import Fraction

import pytest

from harness.orchestrator import Cost, CostLedger, CostTotals, ExactCost, SharedHold, charge, exact_charge


def test_charge_is_resources_times_seconds_priced_per_tflops_hour() -> None:
    cost = charge(tflops=30, vram_mb=20480, held_seconds=2.0, price_per_tflops_hour=0.003)
    assert (cost.held_seconds, cost.tflops_seconds, cost.vram_mb_seconds) == (2.0, 60.0, 40960.0)
    assert cost.cost == pytest.approx(60 / 3600 * 0.003)


def test_a_clock_stepping_back_charges_nothing_rather_than_refunding() -> None:
    assert charge(tflops=5, vram_mb=2048, held_seconds=-1.0, price_per_tflops_hour=0.003) == Cost()


def test_totals_are_kept_per_tenant() -> None:
    ledger = CostLedger()
    one = charge(tflops=5, vram_mb=2048, held_seconds=10, price_per_tflops_hour=0.002)
    ledger.record("acme", one, prompt_tokens=3, completion_tokens=7)
    ledger.record("acme", one)  # an allocation whose inference failed: held, no tokens
    ledger.record("globex", one, prompt_tokens=1, completion_tokens=1)
    acme = ledger.totals("acme")
    assert acme.model_dump(exclude={"cost"}) == {
        "tenant": "acme",
        "allocations": 2,
        "allocation_share": 2.0,
        "batched": 0,
        "tflops_seconds": 100.0,
        "vram_mb_seconds": 40960.0,
        "prompt_tokens": 3,
        "completion_tokens": 7,
    }
    assert acme.cost == pytest.approx(2 * 50 / 3600 * 0.002)
    assert ledger.totals("globex").allocations == 1
    assert ledger.totals("nobody") == CostTotals(tenant="nobody")
    assert ledger.tenants() == ["acme", "globex"]


def test_the_tenants_are_charged_exactly_what_the_allocations_cost() -> None:
    ledger = CostLedger()
    alone = charge(tflops=5, vram_mb=2048, held_seconds=0.1, price_per_tflops_hour=0.003)
    ledger.record("acme", alone)
    ledger.record_allocation(alone)
    # One allocation held 0.7 s by three requests leaving at 0.1, 0.3 and 0.7 s: 0.1/3, +0.2/2, +0.4.
    hold = SharedHold(0.0, 3)
    for tenant, left in (("acme", 0.1), ("globex", 0.3), ("initech", 0.7)):
        share = exact_charge(tflops=5, vram_mb=2048, held_seconds=hold.leave(left), price_per_tflops_hour=0.003)
        ledger.record(tenant, share, shared_by=3)
    whole = exact_charge(tflops=5, vram_mb=2048, held_seconds=hold.held, price_per_tflops_hour=0.003)
    ledger.record_allocation(whole)
    assert hold.held == Fraction(0.7)
    assert ledger.reconciles()
    assert whole.cost == Fraction(5) * Fraction(0.7) / 3600 * Fraction(0.003)
    assert ledger.charged_total().cost == ExactCost.of(alone).cost + whole.cost
    assert ledger.totals("acme").allocation_share == pytest.approx(1 + 1 / 3)
    assert (ledger.totals("acme").batched, ledger.totals("globex").batched) == (1, 1)
    ledger.record("acme", alone)  # charged, but for no allocation on record: the books no longer balance
    assert not ledger.reconciles()
