"""Leases (`ttl_seconds` of idle time) and the retention of ended allocations."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mock_server.sim.clock import ManualClock
from mock_server.sim.errors import NotFound
from mock_server.sim.model import Allocation, AllocationState, EndReason
from mock_server.sim.simulator import STALE_LEASES_KEPT, AllocationSpec, InferencePlan, InferenceSpec, Simulator

SimFactory = Callable[..., Simulator]


def allocate(sim: Simulator, *, ttl: int | None, tflops: float = 10.0, tenant: str = "dev") -> Allocation:
    spec = AllocationSpec("p", "m", tflops, 100, ttl_seconds=ttl)
    return sim.allocate(tenant, spec, request_id="req").allocation


def infer(sim: Simulator, alloc: Allocation) -> InferencePlan:
    return sim.start_inference(alloc.tenant_id, InferenceSpec(alloc.allocation_id, "hello there", max_tokens=4, seed=1))


def state(sim: Simulator, alloc: Allocation) -> AllocationState:
    return sim.get_allocation(alloc.tenant_id, alloc.allocation_id).state


def test_idle_allocation_expires_once_its_ttl_has_passed(make_sim: SimFactory, clock: ManualClock) -> None:
    sim = make_sim()
    alloc = allocate(sim, ttl=60)
    clock.advance(59.999)
    assert state(sim, alloc) is AllocationState.ACTIVE
    clock.advance(0.002)
    expired = sim.get_allocation("dev", alloc.allocation_id)
    assert expired.state is AllocationState.EXPIRED
    assert expired.state.value == "expired"
    assert expired.end_reason is EndReason.EXPIRED
    assert expired.end_reason.value == "expired"
    assert expired.expires_at is None  # an ended allocation has no lease left


def test_expiry_gives_the_capacity_back(make_sim: SimFactory, clock: ManualClock) -> None:
    sim = make_sim()
    allocate(sim, ttl=30, tflops=40)
    keeper = allocate(sim, ttl=None, tflops=25)
    assert sim.pool_stats("p")[0].tflops_allocated == 65.0
    clock.advance(31)
    stats = sim.pool_stats("p")[0]
    assert stats.tflops_allocated == 25.0
    assert stats.vram_mb_allocated == 100
    assert stats.allocations_active == 1
    assert sim.gpus["p-gpu-0"].allocations.keys() == {keeper.allocation_id}


def test_allocation_without_ttl_never_expires(make_sim: SimFactory, clock: ManualClock) -> None:
    sim = make_sim(simulation={"retention_seconds": 10})
    alloc = allocate(sim, ttl=None)
    clock.advance(10_000_000)
    assert state(sim, alloc) is AllocationState.ACTIVE


def test_an_inference_resets_the_idle_timer(make_sim: SimFactory, clock: ManualClock) -> None:
    sim = make_sim()
    alloc = allocate(sim, ttl=60)
    clock.advance(50)
    plan = infer(sim, alloc)
    sim.finish_inference(plan, plan.completion_tokens)
    clock.advance(59)  # t=109: 109 s since creation, 59 s idle
    assert state(sim, alloc) is AllocationState.ACTIVE
    assert sim.get_allocation("dev", alloc.allocation_id).expires_at == 110.0
    clock.advance(2)  # t=111: 61 s idle
    assert state(sim, alloc) is AllocationState.EXPIRED


def test_the_lease_counts_from_the_end_of_the_last_inference(make_sim: SimFactory, clock: ManualClock) -> None:
    sim = make_sim()
    alloc = allocate(sim, ttl=60)
    clock.advance(50)
    plan = infer(sim, alloc)  # starts at t=50
    clock.advance(5)
    sim.finish_inference(plan, plan.completion_tokens)  # ends at t=55
    clock.advance(57)  # t=112: past start + ttl (110), before end + ttl (115)
    assert state(sim, alloc) is AllocationState.ACTIVE
    clock.advance(3.5)  # t=115.5
    assert state(sim, alloc) is AllocationState.EXPIRED


def test_allocation_with_an_inference_in_flight_does_not_expire(make_sim: SimFactory, clock: ManualClock) -> None:
    sim = make_sim()
    alloc = allocate(sim, ttl=60)
    plan = infer(sim, alloc)  # at t=0, the same instant the lease started
    clock.advance(1000)
    assert state(sim, alloc) is AllocationState.ACTIVE
    sim.finish_inference(plan, plan.completion_tokens)  # t=1000: idle from now on
    clock.advance(59)
    assert state(sim, alloc) is AllocationState.ACTIVE
    clock.advance(2)
    assert state(sim, alloc) is AllocationState.EXPIRED


def test_inference_started_after_creation_and_still_running_keeps_the_allocation(
    make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = make_sim()
    alloc = allocate(sim, ttl=60)
    clock.advance(30)
    plan = infer(sim, alloc)
    clock.advance(500)
    assert state(sim, alloc) is AllocationState.ACTIVE
    assert sim.gpus[alloc.gpu_id].inflight == 1
    sim.finish_inference(plan, 2)
    clock.advance(60)
    assert state(sim, alloc) is AllocationState.EXPIRED


def test_expired_allocation_ends_and_stops_billing_when_its_lease_ran_out(
    make_sim: SimFactory, clock: ManualClock
) -> None:
    # Nobody looks at the simulator between t=0 and t=1000; the lease ran out at t=60 all the same, so
    # the allocation ended then and holds (and bills) nothing after it.
    sim = make_sim()
    alloc = allocate(sim, ttl=60, tflops=10)
    clock.advance(1000)
    ended = sim.get_allocation("dev", alloc.allocation_id)
    assert ended.state is AllocationState.EXPIRED
    assert ended.ended_at == 60.0
    usage = sim.usage("dev")
    assert usage.records[0].tflops_seconds == pytest.approx(10 * 60)
    assert usage.totals.tflops_seconds == pytest.approx(10 * 60)


def test_ended_allocation_disappears_after_retention_but_stays_in_the_usage_totals(
    make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = make_sim(simulation={"retention_seconds": 600})
    alloc = allocate(sim, ttl=None, tflops=10)
    clock.advance(100)
    sim.release("dev", alloc.allocation_id)  # ended at t=100
    clock.advance(599.5)
    assert state(sim, alloc) is AllocationState.RELEASED
    assert [a.allocation_id for a in sim.list_allocations("dev")[0]] == [alloc.allocation_id]
    clock.advance(0.5)  # t=700: retention over
    with pytest.raises(NotFound):
        sim.get_allocation("dev", alloc.allocation_id)
    assert sim.list_allocations("dev")[0] == []
    assert alloc.allocation_id not in sim.allocations
    usage = sim.usage("dev")
    assert usage.records == []  # the per-allocation detail went with the allocation
    assert usage.totals.allocations == 1  # the bill did not
    assert usage.totals.tflops_seconds == pytest.approx(10 * 100)


def test_retention_keeps_at_most_so_many_ended_allocations_on_a_clock_that_never_moves(
    make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = make_sim(simulation={"retention_seconds": 1e9, "retention_max_allocations": 3})
    made = []
    for _ in range(10):
        alloc = allocate(sim, ttl=None, tflops=1)
        sim.release("dev", alloc.allocation_id)
        made.append(alloc.allocation_id)
    live = allocate(sim, ttl=None, tflops=1)
    sim.tick()
    assert list(sim.allocations) == [*made[-3:], live.allocation_id]  # the last 3 ended, and the live one
    assert [a.allocation_id for a in sim.list_allocations("dev")[0]] == [*made[-3:], live.allocation_id]
    assert sim.usage("dev").totals.allocations == 11


def test_retention_purges_on_the_manual_clock_when_it_is_advanced(make_sim: SimFactory, clock: ManualClock) -> None:
    sim = make_sim(simulation={"retention_seconds": 10})
    alloc = allocate(sim, ttl=None)
    sim.release("dev", alloc.allocation_id)
    clock.advance(10)
    sim.tick()  # what `POST /_admin/clock/advance` does after moving the clock
    assert sim.allocations == {}


def test_the_lease_heap_holds_one_entry_per_allocation_however_often_it_is_used(
    make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = make_sim()
    alloc = allocate(sim, ttl=60)
    for _ in range(100):
        plan = sim.start_inference("dev", InferenceSpec(alloc.allocation_id, "hello"))
        sim.finish_inference(plan, plan.completion_tokens)
    assert len(sim._leases) == 1
    clock.advance(59)
    plan = sim.start_inference("dev", InferenceSpec(alloc.allocation_id, "hello"))
    sim.finish_inference(plan, plan.completion_tokens)  # used at 59: the lease now runs to 119
    clock.advance(59.5)
    assert state(sim, alloc) is AllocationState.ACTIVE
    assert len(sim._leases) == 1
    clock.advance(0.5)
    assert state(sim, alloc) is AllocationState.EXPIRED
    assert sim._leases == []


def test_released_allocations_do_not_pile_up_on_the_lease_heap(make_sim: SimFactory, clock: ManualClock) -> None:
    # A 300 s lease, thousands of allocations released long before it runs out, a clock that never
    # moves: the ended ones' lease entries must not keep them alive (they once held ~2 KB a cycle).
    sim = make_sim(simulation={"retention_max_allocations": 10})
    survivor = allocate(sim, ttl=300)
    for _ in range(5000):
        sim.release("dev", allocate(sim, ttl=300).allocation_id)
    assert len(sim._leases) <= STALE_LEASES_KEPT + 2
    assert sum(1 for _, _, a in sim._leases if a.active) == 1
    clock.advance(300)
    assert state(sim, survivor) is AllocationState.EXPIRED  # the live lease still runs out on time
    assert sim._leases == []


def test_active_allocations_are_never_dropped_by_retention(make_sim: SimFactory, clock: ManualClock) -> None:
    sim = make_sim(simulation={"retention_seconds": 0})
    alloc = allocate(sim, ttl=None)
    clock.advance(5000)
    assert state(sim, alloc) is AllocationState.ACTIVE
