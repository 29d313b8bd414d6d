"""Preemption: a higher-priority overcommitted request may evict lower-priority overcommitted work."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mock_server.sim.clock import ManualClock
from mock_server.sim.errors import AllocationNotActive, CapacityExhausted
from mock_server.sim.model import Allocation, AllocationState, EndReason
from mock_server.sim.simulator import AllocateResult, AllocationSpec, InferenceSpec, Simulator

SimFactory = Callable[..., Simulator]

# One GPU: 100 TFLOPS physical, 200 with overcommit; VRAM (1000 MB) is never the limit here.
ONE_GPU = [{"tflops_per_gpu": 100.0, "overcommit_ratio": 2.0, "vram_mb_per_gpu": 1000}]


def request(
    sim: Simulator, tflops: float, *, priority: int, overcommit: bool = True, tenant: str = "dev"
) -> AllocateResult:
    spec = AllocationSpec("p", "m", tflops, 100, overcommit=overcommit, priority=priority)
    return sim.allocate(tenant, spec, request_id="req")


def place(sim: Simulator, tflops: float, *, priority: int, overcommit: bool = True, tenant: str = "dev") -> Allocation:
    return request(sim, tflops, priority=priority, overcommit=overcommit, tenant=tenant).allocation


def state_of(sim: Simulator, alloc: Allocation) -> AllocationState:
    return sim.get_allocation(alloc.tenant_id, alloc.allocation_id).state


def test_higher_priority_request_preempts_the_lowest_priority_overcommitted_allocation(
    make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = make_sim(ONE_GPU)
    low = place(sim, 100, priority=1, tenant="team-b")
    middle = place(sim, 100, priority=2)
    clock.advance(10)
    result = request(sim, 100, priority=5)
    new = result.allocation

    assert result.preempted == (low.allocation_id,)
    victim = sim.get_allocation("team-b", low.allocation_id)
    assert victim.state is AllocationState.PREEMPTED
    assert victim.state.value == "preempted"
    assert victim.end_reason is EndReason.PREEMPTED
    assert victim.end_reason.value == "preempted"
    assert victim.preempted_by == new.allocation_id
    assert victim.ended_at == 10.0
    assert state_of(sim, middle) is AllocationState.ACTIVE
    gpu = sim.gpus["p-gpu-0"]
    assert set(gpu.allocations) == {middle.allocation_id, new.allocation_id}
    assert gpu.tflops_allocated == 200.0


def test_preemption_evicts_as_many_lowest_priority_victims_as_needed(make_sim: SimFactory) -> None:
    sim = make_sim(ONE_GPU)
    first = place(sim, 50, priority=1)
    second = place(sim, 50, priority=1)
    keeper = place(sim, 100, priority=3)
    result = request(sim, 100, priority=5)

    assert set(result.preempted) == {first.allocation_id, second.allocation_id}
    for victim in (first, second):
        ended = sim.get_allocation("dev", victim.allocation_id)
        assert ended.state is AllocationState.PREEMPTED
        assert ended.preempted_by == result.allocation.allocation_id
    assert state_of(sim, keeper) is AllocationState.ACTIVE
    assert sim.gpus["p-gpu-0"].tflops_allocated == 200.0


def test_preemption_takes_the_youngest_among_equal_priorities(make_sim: SimFactory) -> None:
    sim = make_sim(ONE_GPU)
    older = place(sim, 100, priority=1)
    younger = place(sim, 100, priority=1)
    result = request(sim, 100, priority=5)
    assert result.preempted == (younger.allocation_id,)
    assert state_of(sim, older) is AllocationState.ACTIVE


def test_preemption_prefers_the_gpu_needing_the_fewest_victims(make_sim: SimFactory) -> None:
    sim = make_sim([{"gpus": 2, "tflops_per_gpu": 100.0, "overcommit_ratio": 2.0, "vram_mb_per_gpu": 1000}])
    small = [place(sim, 50, priority=1) for _ in range(4)]  # best fit packs these onto gpu-0
    big = place(sim, 200, priority=1)
    assert {a.gpu_id for a in small} == {"p-gpu-0"}
    assert big.gpu_id == "p-gpu-1"
    result = request(sim, 150, priority=5)
    assert result.preempted == (big.allocation_id,)
    assert result.allocation.gpu_id == "p-gpu-1"
    assert all(state_of(sim, a) is AllocationState.ACTIVE for a in small)


def test_preempted_allocation_refuses_inference(make_sim: SimFactory) -> None:
    sim = make_sim(ONE_GPU)
    victim = place(sim, 200, priority=1)
    request(sim, 200, priority=9)
    with pytest.raises(AllocationNotActive) as err:
        sim.start_inference("dev", InferenceSpec(victim.allocation_id, "hello"))
    assert err.value.state == "preempted"


@pytest.mark.parametrize("held_priority", [5, 7])
def test_equal_or_higher_priority_allocations_are_never_preempted(make_sim: SimFactory, held_priority: int) -> None:
    sim = make_sim(ONE_GPU)
    held = [place(sim, 100, priority=held_priority) for _ in range(2)]
    with pytest.raises(CapacityExhausted):
        request(sim, 100, priority=5)
    assert all(state_of(sim, a) is AllocationState.ACTIVE for a in held)
    assert sim.gpus["p-gpu-0"].tflops_allocated == 200.0


def test_non_overcommitted_allocations_are_never_preempted(make_sim: SimFactory) -> None:
    sim = make_sim(ONE_GPU)
    guaranteed = place(sim, 100, priority=1, overcommit=False)
    shared = place(sim, 100, priority=1, overcommit=True)
    # Evicting the overcommitted allocation frees only 100 of the 150 needed; the guaranteed one is off limits.
    with pytest.raises(CapacityExhausted):
        request(sim, 150, priority=9)
    assert state_of(sim, guaranteed) is AllocationState.ACTIVE
    assert state_of(sim, shared) is AllocationState.ACTIVE  # no partial eviction on failure
    result = request(sim, 100, priority=9)
    assert result.preempted == (shared.allocation_id,)
    assert state_of(sim, guaranteed) is AllocationState.ACTIVE


def test_non_overcommitted_request_never_preempts(make_sim: SimFactory) -> None:
    sim = make_sim(ONE_GPU)
    big = place(sim, 150, priority=1)
    small = place(sim, 50, priority=1)
    # Evicting `big` would leave 50 + 50 = 100 ≤ physical, yet a guaranteed request may not preempt.
    with pytest.raises(CapacityExhausted):
        request(sim, 50, priority=9, overcommit=False)
    assert state_of(sim, big) is AllocationState.ACTIVE
    assert state_of(sim, small) is AllocationState.ACTIVE


def test_preemption_disabled_in_the_pool_means_capacity_exhausted(make_sim: SimFactory) -> None:
    sim = make_sim([ONE_GPU[0] | {"preemption": False}])
    low = place(sim, 200, priority=1)
    with pytest.raises(CapacityExhausted):
        request(sim, 100, priority=9)
    assert state_of(sim, low) is AllocationState.ACTIVE
    assert sim.gpus["p-gpu-0"].allocations.keys() == {low.allocation_id}


def test_preemption_gives_the_victims_quota_back(make_sim: SimFactory) -> None:
    tenants = {
        "dev": {"api_keys": ["dev-key"]},
        "team-b": {"api_keys": ["team-b-key"], "quota": {"max_active_allocations": 1}},
    }
    sim = make_sim(ONE_GPU, tenants=tenants)
    place(sim, 200, priority=1, tenant="team-b")
    request(sim, 100, priority=9)
    # team-b's only allocation was preempted, so it may allocate again.
    assert place(sim, 100, priority=1, tenant="team-b").active
