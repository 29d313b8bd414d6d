"""The latency model as the simulator applies it: contention, batching, compute share, queueing,
time-slicing and seeded jitter. The custom model "m" has no jitter (sigmas 0) unless a test adds it."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from mock_server.sim.clock import ManualClock
from mock_server.sim.latency import Timings
from mock_server.sim.model import Allocation
from mock_server.sim.simulator import AllocationSpec, InferencePlan, InferenceSpec, Simulator

SimFactory = Callable[..., Simulator]

PROMPT = "how fast is this GPU"  # 1 + 5 tokens


def allocate(
    sim: Simulator, tflops: float, *, overcommit: bool = True, tenant: str = "dev", pool: str = "p"
) -> Allocation:
    spec = AllocationSpec(pool, "m", tflops, 100, overcommit=overcommit)
    return sim.allocate(tenant, spec, request_id="req").allocation


def start(sim: Simulator, alloc: Allocation, *, seed: int | None = 1, max_tokens: int = 20) -> InferencePlan:
    spec = InferenceSpec(alloc.allocation_id, PROMPT, max_tokens=max_tokens, seed=seed)
    return sim.start_inference(alloc.tenant_id, spec)


def run(sim: Simulator, alloc: Allocation, **kwargs: object) -> Timings:
    plan = start(sim, alloc, **kwargs)  # type: ignore[arg-type]
    sim.finish_inference(plan, plan.completion_tokens)
    return plan.timings


def test_idle_inference_follows_the_latency_formula(make_sim: SimFactory) -> None:
    sim = make_sim()
    alloc = allocate(sim, 10)
    plan = start(sim, alloc)
    t = plan.timings
    assert plan.prompt_tokens == 6
    assert plan.completion_tokens == 20  # the natural length (≥ 8) is cut by max_tokens
    ttft = 0.020 + 6 * 100e-6
    itl = 0.005 * (1 + 0.01 * (6 + 20) / 1000)
    assert t.queue_s == 0.0
    assert t.ttft_s == pytest.approx(ttft, rel=1e-12)
    assert t.itl_s == pytest.approx(itl, rel=1e-12)
    assert t.total_s == pytest.approx(ttft + 19 * itl, rel=1e-12)


def test_spatial_contention_slows_inference_on_an_overcommitted_gpu(make_sim: SimFactory) -> None:
    sim = make_sim([{"tflops_per_gpu": 100.0, "overcommit_ratio": 4.0}])
    alloc = allocate(sim, 10)
    idle = run(sim, alloc)
    allocate(sim, 290, tenant="team-b")  # the GPU now holds 300 TFLOPS of 100: load 3
    assert sim.gpus[alloc.gpu_id].load == 3.0
    busy = run(sim, alloc)
    assert busy.ttft_s > idle.ttft_s
    assert busy.total_s > idle.total_s
    assert busy.ttft_s == pytest.approx(3 * idle.ttft_s, rel=1e-12)
    assert busy.itl_s == pytest.approx(3 * idle.itl_s, rel=1e-12)
    assert busy.total_s == pytest.approx(3 * idle.total_s, rel=1e-12)
    assert busy.queue_s == idle.queue_s == 0.0


def test_a_gpu_allocated_within_its_physical_compute_does_not_slow_down(make_sim: SimFactory) -> None:
    sim = make_sim([{"tflops_per_gpu": 100.0, "overcommit_ratio": 4.0}])
    alloc = allocate(sim, 10)
    idle = run(sim, alloc)
    allocate(sim, 90, tenant="team-b")  # load exactly 1
    assert run(sim, alloc) == idle


def test_more_inferences_in_flight_increase_the_per_token_time(make_sim: SimFactory) -> None:
    sim = make_sim()
    alloc = allocate(sim, 10)
    first = start(sim, alloc)  # still running
    second = start(sim, alloc)
    third = start(sim, alloc)
    itl1, itl2, itl3 = first.timings.itl_s, second.timings.itl_s, third.timings.itl_s
    assert itl1 < itl2 < itl3
    assert itl2 == pytest.approx(itl1 * (1 + 0.05 * 1), rel=1e-12)  # batch_factor 0.05
    assert itl3 == pytest.approx(itl1 * (1 + 0.05 * 2), rel=1e-12)
    assert second.timings.ttft_s == first.timings.ttft_s  # the batch slows decode, not prefill
    assert second.timings.total_s > first.timings.total_s
    for plan in (first, second, third):
        sim.finish_inference(plan, plan.completion_tokens)
    assert sim.gpus[alloc.gpu_id].inflight == 0
    assert run(sim, alloc) == first.timings  # back to batch size 1


def test_fewer_tflops_than_the_models_reference_are_proportionally_slower(make_sim: SimFactory) -> None:
    sim = make_sim()  # model "m" is rated at 10 TFLOPS; the GPU has 100, so it is never overcommitted
    full = run(sim, allocate(sim, 10))
    quarter = run(sim, allocate(sim, 2.5))
    half = run(sim, allocate(sim, 5))
    double = run(sim, allocate(sim, 20))
    assert half.ttft_s == pytest.approx(2 * full.ttft_s, rel=1e-12)
    assert half.itl_s == pytest.approx(2 * full.itl_s, rel=1e-12)
    assert half.total_s == pytest.approx(2 * full.total_s, rel=1e-12)
    assert quarter.total_s == pytest.approx(4 * full.total_s, rel=1e-12)
    # More than the reference does not make it faster: the slowdown is at least 1.
    assert double == full


def test_queue_time_appears_when_running_sequences_exceed_max_concurrency(make_sim: SimFactory) -> None:
    sim = make_sim(model={"max_concurrency": 2})
    alloc = allocate(sim, 10)
    plans = [start(sim, alloc) for _ in range(3)]
    assert plans[0].timings.queue_ms == 0.0
    assert plans[1].timings.queue_ms == 0.0
    third = plans[2].timings
    assert third.queue_ms > 0
    # One batch ahead: the wait is one service time (prefill + decode) at the full batch of 2.
    assert third.queue_s == pytest.approx(third.total_s - third.queue_s, rel=1e-12)
    assert third.ttft_s == pytest.approx(third.queue_s + plans[1].timings.ttft_s, rel=1e-12)
    # The decode batch is capped at max_concurrency: the third sequence decodes like the second.
    assert third.itl_s == plans[1].timings.itl_s


def temporal_sim(make_sim: SimFactory, tenants: int, load: float) -> tuple[Simulator, Allocation]:
    """A time-sliced GPU (quantum 10 s) shared by `tenants` tenants with a total load of `load`."""
    sim = make_sim([{"tflops_per_gpu": 100.0, "overcommit_ratio": 4.0, "contention": "temporal", "time_quantum_s": 10}])
    names = ["dev", "team-b", "team-c"][:tenants]
    allocs = [allocate(sim, 100 * load / tenants, tenant=name) for name in names]
    return sim, allocs[0]


def test_temporal_contention_makes_latency_bimodal(make_sim: SimFactory) -> None:
    sim, alloc = temporal_sim(make_sim, tenants=3, load=1.5)
    k, quantum = 3, 10.0
    idle_sim = make_sim()
    idle_ttft = run(idle_sim, allocate(idle_sim, 50)).ttft_s
    waits = []
    for _ in range(600):
        t = run(sim, alloc)
        waits.append(t.queue_s)
        # Time-slicing never slows the running request itself: whatever it waited, it then runs at full speed.
        assert t.ttft_s - t.queue_s == pytest.approx(idle_ttft, rel=1e-9)
    fast = [w for w in waits if w == 0.0]
    slow = [w for w in waits if w > 0.0]
    # Our quantum comes round one time in k: about a third of the requests start at once...
    assert 0.25 <= len(fast) / len(waits) <= 0.42
    # ...and the others wait for the other tenants' quanta, up to (k − 1) × quantum.
    assert max(slow) <= (k - 1) * quantum
    assert max(slow) > 0.9 * (k - 1) * quantum
    assert 0.4 * (k - 1) * quantum <= sum(slow) / len(slow) <= 0.6 * (k - 1) * quantum
    assert sum(1 for w in slow if w > quantum) > 0.3 * len(slow)


@pytest.mark.parametrize(("tenants", "load"), [(1, 3.0), (3, 1.0)])
def test_temporal_contention_needs_several_tenants_on_an_overcommitted_gpu(
    make_sim: SimFactory, tenants: int, load: float
) -> None:
    sim, alloc = temporal_sim(make_sim, tenants=tenants, load=load)
    assert all(run(sim, alloc).queue_s == 0.0 for _ in range(50))


def jittery_session(make_sim: SimFactory, seed: int) -> list[tuple[str, str, Timings]]:
    """Twenty unseeded inferences with lognormal jitter on a time-sliced, overcommitted GPU."""
    sim = make_sim(
        [{"tflops_per_gpu": 100.0, "overcommit_ratio": 4.0, "contention": "temporal"}],
        model={"ttft_sigma": 0.25, "itl_sigma": 0.1},
        seed=seed,
        clock_override=ManualClock(),
    )
    alloc = allocate(sim, 100)
    allocate(sim, 100, tenant="team-b")
    session = []
    for _ in range(20):
        plan = start(sim, alloc, seed=None)
        sim.finish_inference(plan, plan.completion_tokens)
        session.append((plan.inference_id, plan.output, plan.timings))
    return session


def test_the_same_seed_gives_identical_timings(make_sim: SimFactory) -> None:
    first = jittery_session(make_sim, seed=42)
    again = jittery_session(make_sim, seed=42)
    assert first == again
    timings = [t for _, _, t in first]
    assert len({t.ttft_s - t.queue_s for t in timings}) > 1  # the jitter really varies between requests
    assert any(t.queue_s > 0 for t in timings)
    assert any(t.queue_s == 0 for t in timings)


def test_a_different_seed_gives_different_timings(make_sim: SimFactory) -> None:
    first = jittery_session(make_sim, seed=42)
    other = jittery_session(make_sim, seed=43)
    assert [t for _, _, t in first] != [t for _, _, t in other]
    assert [i for i, _, _ in first] != [i for i, _, _ in other]


def test_jitter_stays_within_its_clamp(make_sim: SimFactory) -> None:
    sim = make_sim(model={"ttft_sigma": 2.0, "itl_sigma": 2.0})
    alloc = allocate(sim, 10)
    base = make_sim(clock_override=ManualClock())
    nominal = run(base, allocate(base, 10))
    ratios = [run(sim, alloc).ttft_s / nominal.ttft_s for _ in range(300)]
    assert min(ratios) >= 0.3 - 1e-12
    assert max(ratios) <= 1.7 + 1e-12
    # With sigma 2 the lognormal often lands outside [0.3, 1.7]: both clamps are hit.
    assert math.isclose(min(ratios), 0.3)
    assert math.isclose(max(ratios), 1.7)
