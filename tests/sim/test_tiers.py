"""Pool segregation in the domain: the tier check, and what a tenant may see."""

from __future__ import annotations

import pytest

from mock_server.sim.errors import NotFound, PoolNotPermitted
from mock_server.sim.simulator import AllocationSpec, Simulator
from tests.sim.conftest import SimFactory

POOLS = [{"id": "gold", "tiers": ["premium"]}, {"id": "shared", "tiers": ["premium", "basic"]}, {"id": "open"}]
TENANTS = {"big": {"api_keys": ["k1"], "tier": "premium"}, "small": {"api_keys": ["k2"], "tier": "basic"}}


@pytest.fixture
def sim(make_sim: SimFactory) -> Simulator:
    return make_sim(POOLS, tenants=TENANTS)


def _spec(pool_id: str) -> AllocationSpec:
    return AllocationSpec(pool_id=pool_id, model="m", tflops=10, vram_mb=100)


def test_a_pool_without_tiers_serves_every_tier(sim: Simulator) -> None:
    assert sim.pools_of("big") == {"gold", "shared", "open"}
    assert sim.pools_of("small") == {"shared", "open"}


def test_allocating_outside_the_tier_raises_pool_not_permitted_and_changes_nothing(sim: Simulator) -> None:
    with pytest.raises(PoolNotPermitted, match="Pool gold serves the tiers premium; tenant small is basic"):
        sim.allocate("small", _spec("gold"), request_id="r")
    assert sim.allocations == {}
    assert sim.allocate("big", _spec("gold"), request_id="r").allocation.pool_id == "gold"


def test_pool_stats_for_a_tenant_hold_only_its_pools(sim: Simulator) -> None:
    assert [p.pool_id for p in sim.pool_stats(tenant_id="small")] == ["shared", "open"]
    assert [p.pool_id for p in sim.pool_stats()] == ["gold", "shared", "open"]
    with pytest.raises(PoolNotPermitted):
        sim.pool_stats("gold", tenant_id="small")
    with pytest.raises(NotFound):
        sim.pool_stats("nowhere", tenant_id="small")
