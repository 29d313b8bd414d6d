"""Idempotency records are bounded in count as well as in age (the contract's guarantee): a flood of keys
keeps memory flat, and only the oldest keys of the flooding tenant are forgotten."""

from __future__ import annotations

from mock_server.sim.simulator import AllocationSpec, Simulator, fingerprint
from tests.sim.conftest import SimFactory

SPEC = AllocationSpec("p", "m", 1.0, 100)


def _allocate(sim: Simulator, tenant: str, key: str) -> bool:
    """Whether the allocate with this key was a replay (what it made is released: the pool is small)."""
    result = sim.allocate(tenant, SPEC, request_id="req", idempotency_key=key, body_fingerprint=fingerprint({}))
    sim.release(tenant, result.allocation.allocation_id)
    return result.replayed


def test_at_most_max_keys_records_are_kept_and_the_oldest_go_first(make_sim: SimFactory) -> None:
    sim = make_sim(simulation={"idempotency_max_keys": 3})
    for key in ("k1", "k2", "k3", "k4"):
        assert not _allocate(sim, "dev", key)
    assert len(sim.idempotency) == 3
    assert _allocate(sim, "dev", "k4")  # still remembered
    assert not _allocate(sim, "dev", "k1")  # forgotten: a new allocation


def test_one_tenants_flood_of_keys_does_not_evict_anothers(make_sim: SimFactory) -> None:
    tenants = {"dev": {"api_keys": ["dev-key"]}, "other": {"api_keys": ["other-key"]}}
    sim = make_sim(simulation={"idempotency_max_keys": 2}, tenants=tenants)
    assert not _allocate(sim, "other", "theirs")
    for n in range(10):
        _allocate(sim, "dev", f"k{n}")
    assert _allocate(sim, "other", "theirs")
