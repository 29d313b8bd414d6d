"""The configurations `make bench` runs the mock with still serve what each benchmark sends (the
benchmarks themselves are too slow for the suite: a config that stopped working went unnoticed once,
when allocations began to take minutes to provision and the timing benchmark met only 503s)."""

from __future__ import annotations

import aiohttp
from aiohttp.test_utils import TestServer

from benchmarks import run
from benchmarks.minimal_server import ANSWER, build_app
from mock_server.config import parse_config
from mock_server.sim.clock import ManualClock
from mock_server.sim.simulator import AllocationSpec, InferenceSpec, Simulator


def test_the_timing_benchmarks_model_serves_at_once_in_exactly_its_fixed_latency() -> None:
    sim = Simulator(parse_config(run.TIMING_CONFIG), ManualClock(), seed=0)
    made = sim.allocate("dev", AllocationSpec("pool", "fixed-100ms", 10, 1024, True), request_id="r")
    plans = []
    for i in range(50):  # a burst: nothing queues, nothing is slower
        plan = sim.start_inference("dev", InferenceSpec(made.allocation.allocation_id, f"q{i}", max_tokens=8))
        sim.submit_inference(plan)
        plans.append(plan)
    for plan in plans:
        timeline = sim.project_inference(plan)
        assert timeline.queue_s is not None
        assert timeline.queue_s < 1e-6  # nanosecond steps
        assert timeline.total_s is not None
        assert abs(timeline.total_s - run.CONFIGURED_MS / 1000) < 1e-6


async def test_the_bare_baseline_answers_its_fixed_body_without_reading_the_request() -> None:
    # The throughput bar's reference: even a body that is not JSON gets the fixed answer.
    async with (
        TestServer(build_app(bare=True)) as server,
        aiohttp.ClientSession() as session,
        session.post(server.make_url("/v1/inference"), data=b"not json") as resp,
    ):
        assert resp.status == 200
        assert await resp.json() == ANSWER
