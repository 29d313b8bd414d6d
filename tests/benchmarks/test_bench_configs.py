"""The configurations `make bench` runs the mock with still serve what each benchmark sends (the
benchmarks themselves are too slow for the suite: a config that stopped working went unnoticed once,
when allocations began to take minutes to provision and the timing benchmark met only 503s)."""

from __future__ import annotations

import asyncio

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


async def test_the_features_floor_does_the_mocks_per_request_work_on_the_cycles_routes() -> None:
    # The floor is only a floor if it really authenticates and validates: a request the mock refuses,
    # it refuses too, and the cycle the mock answers, it answers alike.
    from benchmarks import features_server

    auth = {"Authorization": "Bearer dev-key"}
    async with TestServer(features_server.build_app()) as server, aiohttp.ClientSession() as session:
        url = server.make_url
        allocate = {"pool_id": "gpu-pool-1", "requirements": {"tflops": 5, "vram_mb": 2048, "model": "gemma-270m"}}
        async with session.post(url("/v1/allocate"), json=allocate) as resp:
            assert resp.status == 401
        async with session.post(url("/v1/allocate"), json={"pool_id": 7}, headers=auth) as resp:
            assert resp.status == 400
        async with session.post(url("/v1/allocate"), json=allocate, headers=auth) as resp:
            assert resp.status == 201
            allocation_id = (await resp.json())["allocation_id"]
            assert resp.headers["X-Request-Id"].startswith("req_")
        infer = {"allocation_id": allocation_id, "prompt": run.PROMPT, "max_tokens": 16, "temperature": 0.7}
        async with session.post(url("/v1/inference"), json={**infer, "max_tokens": -1}, headers=auth) as resp:
            assert resp.status == 400
        async with session.post(url("/v1/inference"), json=infer, headers=auth) as resp:
            assert resp.status == 200
            assert (await resp.json())["allocation_id"] == allocation_id
        async with session.delete(url(f"/v1/allocate/{allocation_id}"), headers=auth) as resp:
            assert resp.status == 204


def test_the_report_shows_each_figure_against_the_features_floor() -> None:
    rows = [
        run.Comparison(name, [4000.0, 4400.0], [2000.0, 2400.0], [8000.0, 8800.0], [5000.0, 5200.0])
        for name, _, _ in run.INFERENCE_ROWS
    ]
    inference = "\n".join(run._inference_section(run.Results(inference=rows)))
    assert "| 5100 | 2200 |" in inference  # floor and mock medians side by side
    assert "to the bare handler: **0.61**" in inference  # the floor's own: median of 5000/8000, 5200/8800
    cycle = run.Comparison("cycle", [2000.0], [800.0], floor_rps=[1600.0])
    cycle_report = "\n".join(run._cycle_section(cycle, rows))
    assert "| **0.40** | 0.80 | 0.50 |" in cycle_report
    assert "- Full cycle to the minimal server's: **0.40** (≥ 0.5: missed by 0.10)." in cycle_report
    timing = run.TimingRow(100, [110.0] * 100, [130.0] * 100, [120.0] * 100)
    report = "\n".join(run._timing_section([timing], 5))
    assert "| 10.0 / 10.0 | 20.0 / 20.0 | 30.0 / 30.0 | +20.0 | 2.00 | 3.00 |" in report
    assert "- N = 100: the target (1.1×) is below what the floor itself reaches (2.00×)." in report


def test_the_report_shows_the_real_clocks_cost_against_the_manual_clocks() -> None:
    result = run.RealClockResult([400.0, 420.0], [1800.0, 1900.0], [100.0, 98.0])
    report = "\n".join(run._realclock_section(result))
    assert "| manual | 410 | 400, 420 |" in report
    assert "| real (at 99 req/s, latency-bound) | 1850 | 1800, 1900 |" in report
    assert "Manual ÷ real: **0.22**" in report


def test_the_report_puts_the_bar_in_cpu_per_request_beside_aiohttps_own_share() -> None:
    rows = [run.Comparison(name, [4000.0], [2000.0], [8000.0], [5000.0]) for name, _, _ in run.INFERENCE_ROWS]
    share = run.FrameworkShare(raw_rps=[60000.0], raw_us=[15.0], bare_us=[100.0], mock_us=[320.0])
    report = "\n".join(run._inference_section(run.Results(inference=rows, framework=share)))
    assert "**15 µs**; the bare aiohttp handler **100 µs**; the mock with default settings" in report
    assert "**320 µs**. aiohttp's own share of a request is ≈ 85 µs." in report
    assert "a budget of ≈ 200 µs per request, which the mock exceeds by 120 µs;" in report
    assert "it would spend ≈ 235 µs" in report
    share.mock_us = [180.0]
    assert "which the mock meets by 20 µs;" in "\n".join(run._inference_section(run.Results(rows, share)))


async def test_the_raw_reference_answers_the_bare_body_on_a_kept_alive_connection_then_closes_on_request() -> None:
    from benchmarks import raw_server

    loop = asyncio.get_running_loop()
    listening = await loop.create_server(raw_server.FixedAnswer, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(3):  # one connection, kept alive between requests
                async with session.post(f"http://127.0.0.1:{port}/v1/inference", data=b"not json") as resp:
                    assert resp.status == 200
                    assert await resp.json() == ANSWER
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), timeout=5)  # read() returns once the server closes
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert answer.endswith(raw_server.RESPONSE.split(b"\r\n\r\n", 1)[1])
        writer.close()
    finally:
        listening.close()
        await listening.wait_closed()
