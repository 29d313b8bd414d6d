"""The dashboard's snapshot, built straight from a simulator: it agrees with the simulator's own views,
and its size does not grow with the cluster (a 10,000-GPU pool gives the same few kilobytes)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from mock_server.config import default_config
from mock_server.dashboard.latency import LatencyWindow
from mock_server.dashboard.snapshot import MAP_CELLS, JournalTail, View, band, build, gpu_work
from mock_server.sim.clock import ManualClock
from mock_server.sim.errors import NotFound
from mock_server.sim.simulator import AllocationSpec, InferenceSpec, Simulator
from tests.sim.conftest import build_config

CLOCK_VIEW = {"kind": "manual", "now_s": 0.0, "time_scale": 0.0, "now": "2026-01-01T00:00:00.000Z"}


def _build(sim: Simulator, view: View | None = None, journal: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return build(
        sim,
        view or View(),
        clock=CLOCK_VIEW,
        latency=LatencyWindow(lambda: 0.0),
        journal=JournalTail(journal or [], len(journal or [])),
        allocates_waiting=0,
    )


def _allocate(sim: Simulator, pool: str, tflops: float, vram_mb: int, tenant: str = "dev", **extra: Any) -> str:
    spec = AllocationSpec(pool_id=pool, model="m", tflops=tflops, vram_mb=vram_mb, **extra)
    return sim.allocate(tenant, spec, request_id="req_test").allocation.allocation_id


@pytest.fixture
def default_sim() -> Simulator:
    return Simulator(default_config(), ManualClock())


def test_pool_totals_are_the_simulators_own(default_sim: Simulator) -> None:
    spec = AllocationSpec(pool_id="gpu-pool-1", model="qwen-30b", tflops=30, vram_mb=20480, overcommit=True)
    default_sim.allocate("dev", spec, request_id="req_1")
    doc = _build(default_sim)
    for row, stats in zip(doc["pools"], default_sim.pool_stats(), strict=True):
        assert row["pool_id"] == stats.pool_id
        assert (row["tflops_allocated"], row["tflops_total"]) == (stats.tflops_allocated, stats.tflops_total)
        assert (row["vram_mb_allocated"], row["vram_mb_total"]) == (stats.vram_mb_allocated, stats.vram_mb_total)
        assert row["allocations_active"] == stats.allocations_active
        assert row["gpus"] == len(default_sim.pools[stats.pool_id].gpus)
    assert doc["pools"][0]["map"] == "1......."
    assert doc["totals"]["allocations_active"] == 1


@pytest.mark.parametrize(
    ("tflops", "vram_mb", "expected"),
    [(None, None, "."), (10, 100, "1"), (60, 100, "2"), (10, 1000, "3"), (100, 100, "3"), (150, 100, "4")],
)
def test_a_gpu_band_says_how_full_it_is(tflops: float | None, vram_mb: int | None, expected: str) -> None:
    sim = Simulator(build_config(), ManualClock())
    if tflops is not None and vram_mb is not None:
        _allocate(sim, "p", tflops, vram_mb, overcommit=True)
    assert band(sim.pools["p"].gpus[0]) == expected


def test_a_failed_gpu_shows_as_failed_in_its_pool_map() -> None:
    sim = Simulator(build_config([{"gpus": 3}]), ManualClock())
    sim.fail_gpu("p-gpu-1")
    (pool,) = _build(sim)["pools"]
    assert pool["map"] == ".x."
    assert pool["bands"]["x"] == 1
    assert pool["gpus_healthy"] == 2


def test_a_large_pool_shares_map_cells_and_each_cell_shows_its_busiest_gpu() -> None:
    sim = Simulator(build_config([{"gpus": 1000}]), ManualClock())
    per_cell = -(-1000 // MAP_CELLS)
    _allocate(sim, "p", 60, 100)  # best fit: the first GPU
    sim.fail_gpu(f"p-gpu-{per_cell * 2}")
    (pool,) = _build(sim)["pools"]
    assert pool["gpus_per_cell"] == per_cell
    assert len(pool["map"]) == -(-1000 // per_cell) <= MAP_CELLS
    assert pool["map"][:3] == "2.x"
    assert sum(pool["bands"].values()) == 1000


def test_gpus_come_a_page_at_a_time_in_pool_order_or_busiest_first() -> None:
    sim = Simulator(build_config([{"id": "a", "gpus": 5}, {"id": "b", "gpus": 5}]), ManualClock())
    _allocate(sim, "b", 80, 100, overcommit=True)
    _allocate(sim, "b", 80, 100, overcommit=True)  # best fit: on the same GPU, now 160%
    _allocate(sim, "a", 30, 100)
    page = _build(sim, View(gpu_offset=3, gpu_limit=4))["gpus"]
    assert [r["gpu_id"] for r in page["rows"]] == ["a-gpu-3", "a-gpu-4", "b-gpu-0", "b-gpu-1"]
    assert page["total"] == 10
    busiest = _build(sim, View(gpu_sort="compute", gpu_limit=2))["gpus"]["rows"]
    assert [(r["gpu_id"], r["band"]) for r in busiest] == [("b-gpu-0", "4"), ("a-gpu-0", "1")]
    only_b = _build(sim, View(pool_id="b", gpu_limit=100))["gpus"]
    assert {r["pool_id"] for r in only_b["rows"]} == {"b"}
    assert only_b["total"] == 5


def test_an_unknown_pool_is_not_found() -> None:
    sim = Simulator(build_config(), ManualClock())
    with pytest.raises(NotFound):
        _build(sim, View(pool_id="nope"))


def test_allocations_newest_first_with_state_counts_filters_and_leaks() -> None:
    clock = ManualClock()
    sim = Simulator(build_config([{"gpus": 4}]), clock)
    first = _allocate(sim, "p", 10, 100, ttl_seconds=30)
    clock.advance(10)
    second = _allocate(sim, "p", 10, 100, tenant="team-b")
    third = _allocate(sim, "p", 10, 100)
    sim.release("dev", third)
    clock.advance(25)  # the first one's lease runs out: expired, never released
    doc = _build(sim, View(leak_grace_s=0, allocation_limit=2))
    allocations = doc["allocations"]
    assert allocations["by_state"] == {
        "provisioning": 0,
        "active": 1,
        "preempted": 0,
        "expired": 1,
        "released": 1,
        "failed": 0,
    }
    assert [r["allocation_id"] for r in allocations["rows"]] == [third, second]
    assert allocations["rows"][1]["leak"] == "still_active"
    assert allocations["rows"][1]["age_s"] == 25
    assert allocations["rows"][0]["leak"] is None
    expired = _build(sim, View(allocation_state="expired"))["allocations"]["rows"]
    assert [(r["allocation_id"], r["leak"], r["held_s"]) for r in expired] == [(first, "expired_unreleased", 30)]
    leaks = doc["leaks"]
    assert [(r["allocation_id"], r["reason"]) for r in leaks["rows"]] == [
        (a.allocation_id, reason) for a, reason in sim.leaks(0)
    ]
    assert (leaks["still_active"], leaks["expired_unreleased"]) == (1, 1)


def test_a_lease_counts_down_on_the_simulated_clock() -> None:
    clock = ManualClock()
    sim = Simulator(build_config(), clock)
    _allocate(sim, "p", 10, 100, ttl_seconds=60)
    clock.advance(15)
    (row,) = _build(sim)["allocations"]["rows"]
    assert (row["ttl_seconds"], row["lease_left_s"]) == (60, 45)


def test_inferences_beyond_the_models_concurrency_count_as_queued() -> None:
    sim = Simulator(build_config(model={"max_concurrency": 2}), ManualClock())
    alloc = _allocate(sim, "p", 10, 100)
    spec = InferenceSpec(allocation_id=alloc, prompt="hi", max_tokens=4)
    plans = [sim.start_inference("dev", spec) for _ in range(5)]
    for plan in plans:
        sim.submit_inference(plan)  # past the frontend: at the model server
    gpu = sim.pools["p"].gpus[0]
    running, waiting = sim.serving.work(gpu.gpu_id, sim.clock.now())
    assert running + waiting == 5
    assert running <= 2  # the model's concurrency: the rest wait (admitted at step boundaries)
    assert gpu_work(gpu, sim) == (5, waiting)
    doc = _build(sim)
    assert (doc["totals"]["inflight"], doc["totals"]["queued"]) == (5, waiting)
    assert (doc["gpus"]["rows"][0]["inflight"], doc["gpus"]["rows"][0]["queued"]) == (5, waiting)
    for plan in plans:
        sim.finish_inference(plan, plan.completion_tokens)
    assert gpu_work(gpu, sim) == (0, 0)


def test_fault_rules_are_described_as_the_control_plane_does() -> None:
    sim = Simulator(build_config(), ManualClock())
    sim.apply_scenario("flaky-5xx")
    doc = _build(sim)
    assert doc["rules"] == [r.describe() for r in sim.faults.rules]
    assert doc["totals"]["rules"] == len(sim.faults.rules)


def test_a_10000_gpu_pool_gives_a_snapshot_as_small_as_a_100_gpu_one() -> None:
    small = Simulator(build_config([{"gpus": 100}]), ManualClock())
    large = Simulator(build_config([{"gpus": 10_000}]), ManualClock())
    for sim in (small, large):
        for _ in range(60):
            _allocate(sim, "p", 10, 100)
    sizes = [len(orjson.dumps(_build(sim, View(leak_grace_s=1e9)))) for sim in (small, large)]
    # The large one's map has 256 cells where the small one's has 100; nothing else grows (a page of
    # GPUs, the newest allocations).
    assert sizes[1] - sizes[0] < MAP_CELLS + 200
    assert sizes[1] < 40_000
