"""The cost ledger: HostedAI's formula, per tenant."""

from __future__ import annotations

import pytest

from harness.orchestrator import Cost, CostLedger, CostTotals, charge


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
