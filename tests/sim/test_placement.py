"""Placement: which GPU an allocation lands on, and the capacity rules it must respect."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mock_server.sim.errors import CapacityExhausted, InvalidInput, NotFound
from mock_server.sim.model import Allocation
from mock_server.sim.simulator import AllocationSpec, Simulator

SimFactory = Callable[..., Simulator]


def allocate(
    sim: Simulator,
    tflops: float,
    vram_mb: int,
    *,
    pool: str = "p",
    model: str = "m",
    overcommit: bool = False,
    priority: int = 5,
    tenant: str = "dev",
) -> Allocation:
    spec = AllocationSpec(pool, model, tflops, vram_mb, overcommit=overcommit, priority=priority)
    return sim.allocate(tenant, spec, request_id="req").allocation


def gpu_index(alloc: Allocation) -> int:
    return int(alloc.gpu_id.rsplit("-", 1)[1])


# Three GPUs whose compute is never the limit, so VRAM alone decides where things go.
def three_gpus(placement: str) -> list[dict[str, object]]:
    return [{"gpus": 3, "tflops_per_gpu": 1000.0, "vram_mb_per_gpu": 1000, "placement": placement}]


# ---- placement policies ----------------------------------------------------------------------------


def test_best_fit_packs_onto_the_fullest_gpu_that_fits(make_sim: SimFactory) -> None:
    sim = make_sim(three_gpus("best_fit"))
    assert gpu_index(allocate(sim, 10, 500)) == 0
    assert gpu_index(allocate(sim, 10, 600)) == 1  # does not fit next to the 500 on gpu-0
    # gpu-1 (600 used) is fuller than gpu-0 (500) and gpu-2 (empty): 300 MB goes there.
    assert gpu_index(allocate(sim, 10, 300)) == 1
    # 450 MB no longer fits on gpu-1 (900 used); gpu-0 is fuller than the empty gpu-2.
    assert gpu_index(allocate(sim, 10, 450)) == 0
    # gpu-0 has 50 MB left; gpu-1 has exactly 100 left, the tightest fit.
    last = allocate(sim, 10, 100)
    assert gpu_index(last) == 1
    assert sim.gpus[last.gpu_id].vram_mb_allocated == 1000
    assert sim.gpus["p-gpu-2"].allocations == {}


def test_best_fit_breaks_vram_ties_by_least_compute_left(make_sim: SimFactory) -> None:
    sim = make_sim([{"gpus": 2, "tflops_per_gpu": 100.0, "vram_mb_per_gpu": 1000}])
    assert gpu_index(allocate(sim, 10, 600)) == 0
    assert gpu_index(allocate(sim, 150, 600, overcommit=True)) == 1
    # Both GPUs hold 600 MB; gpu-1 has less compute left, so best fit packs there.
    assert gpu_index(allocate(sim, 10, 100, overcommit=True)) == 1


def test_first_fit_takes_the_lowest_index_gpu_that_fits(make_sim: SimFactory) -> None:
    sim = make_sim(three_gpus("first_fit"))
    assert gpu_index(allocate(sim, 10, 500)) == 0
    assert gpu_index(allocate(sim, 10, 600)) == 1
    # Best fit would choose the fuller gpu-1; first fit takes gpu-0, the first with room.
    assert gpu_index(allocate(sim, 10, 300)) == 0
    assert gpu_index(allocate(sim, 10, 400)) == 1  # gpu-0 holds 800: no room for 400
    assert gpu_index(allocate(sim, 10, 200)) == 0  # gpu-0 fills up to exactly 1000
    assert sim.gpus["p-gpu-0"].vram_mb_allocated == 1000
    assert sim.gpus["p-gpu-2"].allocations == {}


def test_spread_places_on_the_emptiest_gpu(make_sim: SimFactory) -> None:
    sim = make_sim(three_gpus("spread"))
    assert gpu_index(allocate(sim, 10, 500)) == 0
    assert gpu_index(allocate(sim, 10, 200)) == 1
    assert gpu_index(allocate(sim, 10, 100)) == 2
    assert gpu_index(allocate(sim, 10, 100)) == 2  # gpu-2 (100 MB) is still the emptiest
    # gpu-1 and gpu-2 both hold 200 MB; gpu-1 holds less compute (10 vs 20 TFLOPS).
    assert gpu_index(allocate(sim, 10, 100)) == 1
    assert [g.vram_mb_allocated for g in sim.pools["p"].gpus] == [500, 300, 200]


# ---- VRAM ------------------------------------------------------------------------------------------


def test_vram_is_never_overcommitted(sim: Simulator) -> None:
    pool = sim.pools["gpu-pool-1"]
    vram_per_gpu = pool.config.vram_mb_per_gpu
    # 81920 MB per GPU holds exactly four 20480 MB allocations; compute (4 TFLOPS of 1978) is never the limit.
    for _ in range(4 * len(pool.gpus)):
        allocate(sim, 1, 20480, pool="gpu-pool-1", model="qwen-30b", overcommit=True, priority=1)
        assert all(g.vram_mb_allocated <= vram_per_gpu for g in pool.gpus)
    assert all(g.vram_mb_allocated == vram_per_gpu for g in pool.gpus)
    assert all(g.tflops_allocated == 4 for g in pool.gpus)
    with pytest.raises(CapacityExhausted):
        allocate(sim, 1, 20480, pool="gpu-pool-1", model="qwen-30b", overcommit=True, priority=1)
    # A higher priority does not squeeze in either: it must preempt to find the memory.
    result = sim.allocate(
        "dev",
        AllocationSpec("gpu-pool-1", "qwen-30b", 1, 20480, overcommit=True, priority=9),
        request_id="req",
    )
    assert len(result.preempted) == 1
    assert all(g.vram_mb_allocated <= vram_per_gpu for g in pool.gpus)


def test_vram_above_one_gpu_is_unsatisfiable_even_with_overcommit(sim: Simulator) -> None:
    with pytest.raises(InvalidInput) as err:
        allocate(sim, 1, 81921, pool="gpu-pool-1", model="qwen-30b", overcommit=True)
    assert any(e.path == "/body/requirements" and e.message.startswith("unsatisfiable") for e in err.value.errors)
    allocate(sim, 1, 81920, pool="gpu-pool-1", model="qwen-30b", overcommit=True)  # exactly one GPU fits


# ---- compute ---------------------------------------------------------------------------------------


def test_overcommitted_compute_fits_up_to_exactly_tflops_times_ratio(make_sim: SimFactory) -> None:
    pool = {"tflops_per_gpu": 989.0, "overcommit_ratio": 2.0, "vram_mb_per_gpu": 100_000, "preemption": False}
    sim = make_sim([pool])
    allocate(sim, 1000, 100, overcommit=True)
    allocate(sim, 978, 100, overcommit=True)
    gpu = sim.gpus["p-gpu-0"]
    assert gpu.tflops_allocated == 1978.0
    with pytest.raises(CapacityExhausted):
        allocate(sim, 1e-6, 100, overcommit=True)
    assert gpu.tflops_allocated == 1978.0
    assert len(gpu.allocations) == 2


def test_one_overcommitted_request_may_ask_for_exactly_tflops_times_ratio_and_not_more(
    make_sim: SimFactory,
) -> None:
    sim = make_sim([{"tflops_per_gpu": 989.0, "overcommit_ratio": 2.0, "vram_mb_per_gpu": 100_000}])
    with pytest.raises(InvalidInput) as err:
        allocate(sim, 1978.000001, 100, overcommit=True)
    assert err.value.errors[0].message.startswith("unsatisfiable")
    alloc = allocate(sim, 1978.0, 100, overcommit=True)
    assert sim.gpus[alloc.gpu_id].load == 2.0


def test_non_overcommitted_request_fits_only_within_physical_tflops(make_sim: SimFactory) -> None:
    sim = make_sim([{"tflops_per_gpu": 100.0, "overcommit_ratio": 2.0, "preemption": False}])
    allocate(sim, 60, 100, overcommit=True)
    with pytest.raises(CapacityExhausted):
        allocate(sim, 40.000001, 100, overcommit=False)
    guaranteed = allocate(sim, 40, 100, overcommit=False)  # 60 + 40 = exactly the physical 100
    assert guaranteed.gpu_id == "p-gpu-0"
    assert sim.gpus["p-gpu-0"].tflops_allocated == 100.0


def test_non_overcommitted_request_is_refused_on_an_overcommitted_gpu(make_sim: SimFactory) -> None:
    sim = make_sim([{"tflops_per_gpu": 100.0, "overcommit_ratio": 2.0}])
    allocate(sim, 120, 100, overcommit=True, priority=1)
    with pytest.raises(CapacityExhausted):
        allocate(sim, 1, 100, overcommit=False, priority=9)
    # The same demand with overcommit fits: the GPU has 80 TFLOPS of overcommit room left.
    allocate(sim, 1, 100, overcommit=True, priority=9)
    assert sim.gpus["p-gpu-0"].tflops_allocated == 121.0


def test_non_overcommitted_request_above_physical_tflops_is_unsatisfiable(make_sim: SimFactory) -> None:
    sim = make_sim([{"tflops_per_gpu": 100.0, "overcommit_ratio": 2.0}])
    with pytest.raises(InvalidInput) as err:
        allocate(sim, 100.5, 100, overcommit=False)
    assert [e.path for e in err.value.errors] == ["/body/requirements"]
    assert err.value.errors[0].message.startswith("unsatisfiable")
    assert allocate(sim, 100.5, 100, overcommit=True).tflops == 100.5


# ---- invalid requests ------------------------------------------------------------------------------


def test_requirements_no_gpu_could_hold_raise_invalid_input(sim: Simulator) -> None:
    with pytest.raises(InvalidInput) as err:
        allocate(sim, 2000, 20480, pool="gpu-pool-1", model="qwen-30b", overcommit=True)
    assert err.value.code == "validation_failed"
    assert len(err.value.errors) == 1
    assert err.value.errors[0].path == "/body/requirements"
    assert err.value.errors[0].message.startswith("unsatisfiable")
    assert sim.pool_stats("gpu-pool-1")[0].allocations_active == 0


def test_model_not_served_in_the_pool_is_invalid_input(make_sim: SimFactory) -> None:
    latency = {"prefill_overhead_ms": 1.0, "prefill_per_token_us": 1.0, "tpot_ms": 1.0}
    model = {"vram_mb": 100, "tflops": 10, "max_tokens": 64, "context_tokens": 1024, "pools": ["a"]}
    sim = make_sim([{"id": "a"}, {"id": "b"}], models={"m": model | {"latency": {"G": latency}}})
    with pytest.raises(InvalidInput) as err:
        allocate(sim, 10, 100, pool="b")
    assert [e.path for e in err.value.errors] == ["/body/requirements/model"]
    assert err.value.errors[0].message.startswith("unsatisfiable")
    assert allocate(sim, 10, 100, pool="a").pool_id == "a"


def test_vram_below_the_models_need_is_invalid_input(sim: Simulator) -> None:
    with pytest.raises(InvalidInput) as err:
        allocate(sim, 30, 20479, pool="gpu-pool-1", model="qwen-30b")
    assert [e.path for e in err.value.errors] == ["/body/requirements/vram_mb"]
    assert err.value.errors[0].message.startswith("unsatisfiable")
    assert "20480" in err.value.errors[0].message
    assert allocate(sim, 30, 20480, pool="gpu-pool-1", model="qwen-30b").vram_mb == 20480


def test_unknown_pool_raises_not_found(sim: Simulator) -> None:
    with pytest.raises(NotFound) as err:
        allocate(sim, 1, 2048, pool="no-such-pool", model="gemma-270m")
    assert err.value.code == "not_found"
    assert "no-such-pool" in err.value.detail


def test_unknown_model_raises_not_found(sim: Simulator) -> None:
    with pytest.raises(NotFound) as err:
        allocate(sim, 1, 2048, pool="gpu-pool-1", model="no-such-model")
    assert "no-such-model" in err.value.detail


def test_capacity_exhausted_carries_retry_after_and_allocates_nothing(make_sim: SimFactory) -> None:
    sim = make_sim([{"gpus": 2}], simulation={"capacity_retry_after_s": 7})
    allocate(sim, 100, 100)
    allocate(sim, 100, 100)
    before = sim.pool_stats("p")[0]
    with pytest.raises(CapacityExhausted) as err:
        allocate(sim, 1, 100)
    assert err.value.retry_after == 7
    assert err.value.code == "capacity_exhausted"
    assert sim.pool_stats("p")[0] == before


def test_capacity_exhausted_uses_the_default_retry_after(sim: Simulator) -> None:
    for _ in range(4):
        allocate(sim, 121, 2048, pool="gpu-pool-2", model="gemma-270m")  # each L4 fully guaranteed
    with pytest.raises(CapacityExhausted) as err:
        allocate(sim, 1, 2048, pool="gpu-pool-2", model="gemma-270m")
    assert err.value.retry_after == sim.config.simulation.capacity_retry_after_s == 5
