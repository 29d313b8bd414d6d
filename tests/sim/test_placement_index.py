"""The placement index answers exactly what the scan (`placement.choose_gpu`, the definition) answers,
however allocations come and go and GPUs fail and recover."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mock_server.config import PoolConfig
from mock_server.sim.capacity_index import CapacityIndex, capacity_index
from mock_server.sim.clock import ManualClock
from mock_server.sim.errors import CapacityExhausted, InvalidInput
from mock_server.sim.model import Allocation, Gpu
from mock_server.sim.placement import Demand, choose_gpu
from mock_server.sim.simulator import AllocationSpec, Simulator
from tests.sim.conftest import build_config

POLICIES = ["best_fit", "first_fit", "spread"]

# Tflops that sum with rounding drift (0.1 + 0.2), so ties on "compute left" hinge on float rounding.
TFLOPS = st.one_of(
    st.sampled_from([0.1, 0.2, 0.3, 0.7, 1.0, 2.5, 5.0, 10.0, 33.3]),
    st.floats(min_value=0.001, max_value=150.0, allow_nan=False, allow_infinity=False),
)
# VRAM from a small set, so many GPUs share a level (ties on "VRAM left").
VRAM = st.one_of(st.sampled_from([1, 25, 50, 100, 250]), st.integers(min_value=1, max_value=1200))


def pools() -> st.SearchStrategy[PoolConfig]:
    return st.builds(
        PoolConfig,
        id=st.just("p"),
        gpu_type=st.just("G"),
        gpus=st.integers(min_value=1, max_value=12),
        tflops_per_gpu=st.sampled_from([1.0, 30.0, 100.0, 989.0]),
        # 81920 MB: 32 MB of levels per leaf of the default tree (LEAVES below shrinks the tree further).
        vram_mb_per_gpu=st.sampled_from([40, 63, 64, 500, 1000, 81920]),
        overcommit_ratio=st.sampled_from([1.0, 1.5, 2.0, 4.0]),
        vram_overcommit_ratio=st.sampled_from([1.0, 1.1, 2.0]),
        placement=st.sampled_from(POLICIES),
    )


def make_gpus(pool: PoolConfig) -> list[Gpu]:
    return [Gpu(f"p-gpu-{i}", "p", i, pool.tflops_per_gpu, pool.vram_mb_per_gpu) for i in range(pool.gpus)]


def allocation(n: int, gpu: Gpu, tflops: float, vram_mb: int) -> Allocation:
    return Allocation(
        allocation_id=f"a{n}",
        tenant_id="dev",
        pool_id="p",
        gpu_id=gpu.gpu_id,
        model="m",
        tflops=tflops,
        vram_mb=vram_mb,
        overcommit=True,
        priority=5,
        labels={},
        created_at=0.0,
        ttl_seconds=None,
        request_id="req",
        seq=n,
    )


def demands() -> st.SearchStrategy[Demand]:
    return st.builds(Demand, tflops=TFLOPS, vram_mb=VRAM, overcommit=st.booleans(), priority=st.just(5))


def assert_agrees(pool: PoolConfig, gpus: list[Gpu], index: CapacityIndex, demand: Demand) -> None:
    expected = choose_gpu(pool, gpus, demand)
    got = index.choose(demand)
    state = [(g.healthy, g.vram_mb_allocated, g.tflops_allocated) for g in gpus]
    assert got is expected, (
        f"{pool.placement} {demand}: index chose {got and got.index}, scan {expected and expected.index}; {state}"
    )


# Level trees of 1, 2 and 8 leaves put many levels in a leaf; 4,096 is the default.
LEAVES = st.sampled_from([1, 2, 8, 4096])


@settings(max_examples=150, deadline=None)
@given(pool=pools(), leaves=LEAVES, data=st.data())
def test_the_index_chooses_what_the_scan_chooses(pool: PoolConfig, leaves: int, data: st.DataObject) -> None:
    gpus = make_gpus(pool)
    index = capacity_index(pool, gpus, max_leaves=leaves)
    held: list[Allocation] = []
    for step in range(data.draw(st.integers(min_value=1, max_value=40), label="steps")):
        op = data.draw(st.sampled_from(["place", "place", "place", "hold", "give_back", "fail", "recover"]))
        if op == "place":
            # What the simulator does: place by the index (checked against the scan), then hold.
            demand = data.draw(demands())
            assert_agrees(pool, gpus, index, demand)
            gpu = index.choose(demand)
            if gpu is not None:
                alloc = allocation(step, gpu, demand.tflops, demand.vram_mb)
                gpu.hold(alloc)
                held.append(alloc)
        elif op == "hold":
            # Straight onto a chosen GPU, fitting or not (the index takes any state the GPUs are in).
            gpu = data.draw(st.sampled_from(gpus))
            alloc = allocation(step, gpu, data.draw(TFLOPS), data.draw(VRAM))
            gpu.hold(alloc)
            held.append(alloc)
        elif op == "give_back" and held:
            alloc = held.pop(data.draw(st.integers(min_value=0, max_value=len(held) - 1)))
            gpus[int(alloc.gpu_id.rsplit("-", 1)[1])].give_back(alloc)
        elif op == "fail":
            # The simulator marks the GPU unhealthy and then ends what it held; allocations may linger.
            gpu = data.draw(st.sampled_from(gpus))
            gpu.healthy = False
            if data.draw(st.booleans()):
                for alloc in [a for a in held if a.gpu_id == gpu.gpu_id]:
                    held.remove(alloc)
                    gpu.give_back(alloc)
        elif op == "recover":
            data.draw(st.sampled_from(gpus)).healthy = True
        for demand in data.draw(st.lists(demands(), min_size=1, max_size=4), label="probes"):
            assert_agrees(pool, gpus, index, demand)


@settings(max_examples=100, deadline=None)
@given(pool=pools(), leaves=LEAVES, start=st.lists(st.tuples(TFLOPS, VRAM), max_size=30), data=st.data())
def test_an_index_built_over_gpus_already_in_use_agrees(
    pool: PoolConfig, leaves: int, start: list[tuple[float, int]], data: st.DataObject
) -> None:
    gpus = make_gpus(pool)
    for n, (tflops, vram_mb) in enumerate(start):
        gpu = data.draw(st.sampled_from(gpus))
        gpu.hold(allocation(n, gpu, tflops, vram_mb))
        if data.draw(st.booleans()):
            gpu.healthy = False
    index = capacity_index(pool, gpus, max_leaves=leaves)
    for demand in data.draw(st.lists(demands(), min_size=1, max_size=10)):
        assert_agrees(pool, gpus, index, demand)


@pytest.mark.parametrize(
    ("policy", "fuller", "expected"),
    [
        # Both GPUs hold 100 MB. gpu-1's 0.1 + 0.2 TFLOPS is 0.30000000000000004, a hair above gpu-0's
        # 0.3, but 200 − held − 1 rounds to the same 198.7 for both: a tie, which the lowest index wins.
        ("best_fit", 1, 0),
        ("spread", 0, 0),
    ],
)
def test_ties_made_by_float_rounding_go_to_the_lowest_index(policy: str, fuller: int, expected: int) -> None:
    pool = PoolConfig(
        id="p",
        gpu_type="G",
        gpus=3,
        tflops_per_gpu=100.0,
        vram_mb_per_gpu=1000,
        overcommit_ratio=2.0,
        placement=policy,  # type: ignore[arg-type]
    )
    gpus = make_gpus(pool)
    index = capacity_index(pool, gpus)
    plain, drifting = gpus[1 - fuller], gpus[fuller]
    plain.hold(allocation(1, plain, 0.3, 100))
    drifting.hold(allocation(2, drifting, 0.1, 50))
    drifting.hold(allocation(3, drifting, 0.2, 50))
    gpus[2].hold(allocation(4, gpus[2], 1.0, 100 if policy == "spread" else 50))
    assert drifting.tflops_allocated > plain.tflops_allocated
    demand = Demand(1.0, 100, True, 5)
    assert choose_gpu(pool, gpus, demand) is gpus[expected]
    assert index.choose(demand) is gpus[expected]


def test_best_fit_looks_past_a_level_too_full_that_shares_a_leaf_with_one_that_fits() -> None:
    # 81920 MB GPUs and a tree of 64 leaves: each leaf covers 2048 MB of levels. A demand of 78920 MB
    # fits on a GPU holding at most 3000 MB. gpu-0 (3500 MB held) has the compute but not the memory,
    # gpu-1 (2500 MB) the memory but not the compute; both are in the leaf of 2048-4095 MB. gpu-2 fits.
    pool = PoolConfig(id="p", gpu_type="G", gpus=3, tflops_per_gpu=100.0, vram_mb_per_gpu=81920)
    gpus = make_gpus(pool)
    index = capacity_index(pool, gpus, max_leaves=64)
    for n, (gpu, tflops, vram_mb) in enumerate([(gpus[0], 0.5, 3500), (gpus[1], 100.0, 2500), (gpus[2], 0.5, 1000)]):
        gpu.hold(allocation(n, gpu, tflops, vram_mb))
    demand = Demand(1.0, 78920, False, 5)
    assert choose_gpu(pool, gpus, demand) is gpus[2]
    assert index.choose(demand) is gpus[2]


def _large_pool_history(policy: str, seed: int) -> None:
    # Thousands of GPUs (the level tree gets one leaf per few levels), a long random history.
    rng = random.Random(seed)
    pool = PoolConfig(
        id="p",
        gpu_type="G",
        gpus=3000,
        tflops_per_gpu=100.0,
        vram_mb_per_gpu=81920,
        overcommit_ratio=2.0,
        placement=policy,  # type: ignore[arg-type]
    )
    gpus = make_gpus(pool)
    index = capacity_index(pool, gpus)
    held: list[Allocation] = []
    for step in range(3000):
        demand = Demand(rng.choice([0.1, 0.2, 5.0, 30.0, 60.0]), rng.choice([100, 2048, 20480]), rng.random() < 0.5, 5)
        if step % 10 == 0:
            assert_agrees(pool, gpus, index, demand)
        roll = rng.random()
        if roll < 0.6 or not held:
            gpu = index.choose(demand)
            if gpu is not None:
                alloc = allocation(step, gpu, demand.tflops, demand.vram_mb)
                gpu.hold(alloc)
                held.append(alloc)
        elif roll < 0.95:
            alloc = held.pop(rng.randrange(len(held)))
            gpus[int(alloc.gpu_id.rsplit("-", 1)[1])].give_back(alloc)
        else:
            gpu = rng.choice(gpus)
            gpu.healthy = not gpu.healthy


def test_a_large_pool_agrees_over_a_long_history() -> None:
    for policy in POLICIES:
        _large_pool_history(policy, seed=7)


# ---- through the simulator -------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(policy=st.sampled_from(POLICIES), data=st.data())
def test_the_simulator_places_by_its_index_and_keeps_it_exact(policy: str, data: st.DataObject) -> None:
    pool: dict[str, Any] = {"gpus": 5, "tflops_per_gpu": 100.0, "vram_mb_per_gpu": 1000, "placement": policy}
    sim = Simulator(build_config([pool], model={"vram_mb": 1}), ManualClock())
    config = sim.pools["p"].config
    gpus = sim.pools["p"].gpus
    live: list[str] = []
    for _ in range(data.draw(st.integers(min_value=1, max_value=40), label="steps")):
        op = data.draw(st.sampled_from(["allocate", "allocate", "release", "fail", "recover"]))
        if op == "allocate":
            spec = AllocationSpec(
                "p",
                "m",
                data.draw(st.sampled_from([0.1, 0.2, 10.0, 60.0, 150.0])),
                data.draw(st.sampled_from([1, 100, 250, 600])),
                overcommit=data.draw(st.booleans()),
                priority=data.draw(st.integers(min_value=1, max_value=9)),
            )
            demand = Demand(spec.tflops, spec.vram_mb, spec.overcommit, spec.priority)
            expected = choose_gpu(config, gpus, demand)
            try:
                result = sim.allocate("dev", spec, request_id="req")
            except CapacityExhausted:  # then the scan found no GPU either
                assert expected is None
                continue
            except InvalidInput:  # more than one GPU's physical compute, without overcommit
                assert not spec.overcommit
                continue
            if not result.preempted:
                assert expected is not None
                assert result.allocation.gpu_id == expected.gpu_id
            live.append(result.allocation.allocation_id)
        elif op == "release" and live:
            sim.release("dev", live.pop(data.draw(st.integers(min_value=0, max_value=len(live) - 1))))
        elif op == "fail":
            sim.fail_gpu(data.draw(st.sampled_from(gpus)).gpu_id)
        elif op == "recover":
            sim.recover_gpu(data.draw(st.sampled_from(gpus)).gpu_id)
        for demand in data.draw(st.lists(demands(), min_size=1, max_size=3), label="probes"):
            assert_agrees(config, gpus, sim.placement_index["p"], demand)


def test_an_index_refuses_gpus_that_differ() -> None:
    pool = PoolConfig(id="p", gpu_type="G", gpus=2, tflops_per_gpu=1.0, vram_mb_per_gpu=10)
    gpus = make_gpus(pool)
    gpus[1].vram_mb = 20
    with pytest.raises(ValueError, match="identical"):
        capacity_index(pool, gpus)
