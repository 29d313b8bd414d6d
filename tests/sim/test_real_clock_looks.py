"""How the real clock's handler looks at a plain answer (api/inference.py): it naps until the soonest the
answer could end (`Simulator.inference_next_change(..., every_token=False)`) and is woken early only by
GPU changes that are not arrivals (`Waiters.gpu_changed`). Whatever happens meanwhile, it must see the end
the moment it comes, not later. (The driver and both scenarios came from a review that found each one
late: a co-tenant finishing speeds the request up, and an arrival cutting a noisy run re-draws its noise.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mock_server.sim.clock import ManualClock
from mock_server.sim.simulator import InferencePlan, Simulator
from tests.sim.conftest import SimFactory
from tests.sim.test_serving import INSTANT, ON_THE_TEST_PROFILE, PROFILE, allocate, start

LONG_ANSWERS = {**ON_THE_TEST_PROFILE, "tflops": 10.0, "output_tokens": {"median": 100_000, "sigma": 0.0}}


def _drive(
    sim: Simulator,
    clock: ManualClock,
    mine: InferencePlan,
    others: list[InferencePlan],
    arrivals: list[tuple[float, Callable[[], InferencePlan]]],
) -> tuple[float, float]:
    """(when `mine` ended, when its napping handler saw it). The others are looked at every token and
    leave when done, as their handlers would; `arrivals` start requests at their times."""
    changes: list[str] = []
    sim.on_gpu_changed.append(changes.append)
    wake = sim.inference_next_change(mine, every_token=False)
    for _ in range(100_000):
        if sim.inference_progress(mine).total_s is not None and clock.now() >= wake - 1e-12:
            assert mine.request is not None
            assert mine.request.tracked.finished_t is not None
            return mine.request.tracked.finished_t, clock.now()
        running = [p for p in others if not p.finished]
        dues = [sim.inference_next_change(p) for p in running] + [wake] + [t for t, _ in arrivals]
        clock.advance(max(0.0, min(dues) - clock.now()))
        changes.clear()
        if arrivals and arrivals[0][0] <= clock.now() + 1e-12:
            others.append(arrivals.pop(0)[1]())
        for p in running:
            if sim.inference_progress(p).total_s is not None:
                sim.finish_inference(p, p.completion_tokens)
        if clock.now() >= wake - 1e-12 or changes:  # its nap is over, or a change woke it
            wake = sim.inference_next_change(mine, every_token=False)
    raise AssertionError("the answer never ended")


@pytest.mark.parametrize("mode", ["spatial", "temporal"])
def test_a_co_tenant_finishing_first_is_seen_by_a_plain_answer_it_speeds_up(
    make_sim: SimFactory, clock: ManualClock, mode: str
) -> None:
    sim = make_sim(
        [{"gpus": 1, **INSTANT, "contention": mode}],
        models={"m": LONG_ANSWERS},
        serving_profiles={"test-profile": PROFILE},
    )
    mine, theirs = allocate(sim), allocate(sim, tenant="team-b")
    other = start(sim, theirs, max_tokens=85, tenant="team-b")
    ended, seen = _drive(sim, clock, start(sim, mine, max_tokens=100), [other], [])
    assert seen == pytest.approx(ended, abs=1e-9)


@pytest.mark.parametrize("noise", [0.05, 0.3])
def test_an_arrival_cutting_a_noisy_run_is_seen_by_a_plain_answer_it_speeds_up(
    make_sim: SimFactory, clock: ManualClock, noise: float
) -> None:
    # The cut run's steps drew high noise; the run planned after the arrival may draw less.
    late: list[tuple[float, float, int]] = []
    for seed in range(8):
        for k in range(0, 80, 3):
            at = 0.9 + 0.005 * k
            sim = make_sim(
                [{"gpus": 1, **INSTANT}],
                seed=seed,
                models={"m": LONG_ANSWERS},
                serving_profiles={"test-profile": {**PROFILE, "noise_sigma": noise}},
            )
            alloc = allocate(sim)
            began = clock.now()
            mine = start(sim, alloc, max_tokens=100)

            def arrive(sim: Simulator = sim, alloc: Any = alloc) -> InferencePlan:
                return start(sim, alloc, prompt_chars=1, max_tokens=5)

            ended, seen = _drive(sim, clock, mine, [], [(began + at, arrive)])
            if seen - ended > 1e-9:
                late.append((seen - ended, at, seed))
    assert late == []


def test_a_request_submitted_to_a_stalled_idle_engine_is_admitted_when_it_came() -> None:
    # Temporal mode, oversubscribed: A and B take turns and C, idle, stalls at speed 0. An idle slot's
    # clock is read off its linear map lazily; C's must move onto the submit's time first, or its
    # request is stamped as admitted when C last moved (0), before it arrived (0.3).
    from mock_server.sim.serving.cost import StepCost
    from mock_server.sim.serving.engine import Engine, Sequence
    from mock_server.sim.serving.gpu import GpuRuntime, Sharing

    cost = StepCost(
        batch=(1,), decode_s=(0.010,), kv_s_per_token=0.0, prefill_s_per_token=1e-6, attention_s_per_token_ctx=0.0
    )
    gpu = GpuRuntime(Sharing(mode="temporal", vram_mb=300.0, quantum_s=0.05))
    for key in "ABC":
        gpu.add(key, Engine(cost, kv_capacity=10**6, max_num_seqs=16, max_batched_tokens=4096), 200.0, 0.0)
    gpu.submit("A", Sequence(1, 10, 100, 0.0), 0.0)
    gpu.submit("B", Sequence(2, 10, 100, 0.0), 0.0)
    assert gpu.slots["C"].speed == 0.0
    tracked = gpu.submit("C", Sequence(3, 10, 5, 0.0), 0.3)
    gpu.sync(0.31)
    assert tracked.admitted_t == pytest.approx(0.3)
