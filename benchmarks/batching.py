"""Request batching against the mock: allocations per request, and the latency batching adds, at
several arrival rates.

    python -m benchmarks.batching [--rates 2,10,40] [--seconds 8] [--rounds 3] [--time-scale 1]

Prints one JSON document; `benchmarks.run` (section `batching`) runs it and writes the report.

The mock runs as a process on the real clock (its default config; `--time-scale` shortens every
simulated latency alike), the Harpoon orchestrator in this process. Simple requests (the batched
class, at temperature 0 so that a text's answer is as long in both modes) arrive as a seeded Poisson
process at each rate for `--seconds`, from three tenants in turn;
each is one `Orchestrator.process()`, timed from its arrival to its answer. Every rate runs twice per
round, batching off (the baseline: one allocation per request) and on (the shipped policy: at most 8
per allocation, 25 ms wait), in alternating order, so both see the same machine. Figures: allocations
per request (distinct allocation ids over requests), latency p50 and p95 of each mode, the latency
batching added (subject minus baseline, per round, then the median), and whether the tenants were
charged exactly what the allocations cost (`CostLedger.reconciles`, in `Fraction`s).

Every loop is bounded: requests by count (rate × seconds), each by the orchestrator's budget.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from benchmarks.run import _pin
from harness.connector import ConnectorMetrics, HostedAiConnector, parse_connector_config
from harness.orchestrator import BatchPolicy, Orchestrator, load_model_classes

ROOT = Path(__file__).resolve().parents[1]
TENANTS = ("acme", "globex", "initech")
TEXTS = (
    "What is the capital of France?",
    "Spell overcommit backwards.",
    "Give me a one-line definition of preemption.",
    "Translate 'lease' into French.",
)
SHIPPED_POLICY = BatchPolicy(enabled=True, max_size=8, max_wait_ms=25)
_READY = "HostedAI mock listening on "
MOCK_ARGV = (sys.executable, "-m", "mock_server", "--port", "0", "--clock", "real", "--log-level", "WARNING")


@contextmanager
def _mock(time_scale: float) -> Iterator[str]:
    """The mock on the real clock, pinned to CPU 0 (this process runs on CPU 1 under benchmarks.run)."""
    process = subprocess.Popen(
        [*_pin(0), *MOCK_ARGV, "--time-scale", str(time_scale)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith(_READY):
            raise SystemExit(f"benchmarks.batching: the mock did not start: {line!r}")
        yield line[len(_READY) :].split()[0]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()  # it drains open connections first; the figures are already taken
            process.wait(timeout=10)


def _arrivals(rate: float, seconds: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    times, now = [], 0.0
    while True:
        now += rng.expovariate(rate)
        if now >= seconds:
            return times
        times.append(now)


async def _run(url: str, rate: float, seconds: float, seed: int, policy: BatchPolicy | None) -> dict[str, Any]:
    shipped = load_model_classes(ROOT / "configs" / "models.yaml")
    # Greedy (temperature 0): a text's answer has the same length in both modes, so latencies compare.
    simple = shipped.classes.simple.model_copy(update={"temperature": 0.0})
    classes = shipped.model_copy(update={"classes": shipped.classes.model_copy(update={"simple": simple})})
    config = parse_connector_config({"hosted_ai": {"base_url": url, "api_key": "dev-key"}})
    async with HostedAiConnector(config, metrics=ConnectorMetrics(CollectorRegistry())) as connector:
        orchestrator = Orchestrator(connector, classes, batching=policy)
        started = time.perf_counter()
        latencies: list[float] = []
        allocations: set[str] = set()

        async def one(index: int, at: float) -> None:
            await asyncio.sleep(max(0.0, started + at - time.perf_counter()))
            arrived = time.perf_counter()
            result = await orchestrator.process(TEXTS[index % len(TEXTS)], tenant=TENANTS[index % len(TENANTS)])
            latencies.append((time.perf_counter() - arrived) * 1000)
            allocations.add(result.allocation_id or "")

        await asyncio.gather(*(one(i, at) for i, at in enumerate(_arrivals(rate, seconds, seed))))
    requests = len(latencies)
    return {
        "requests": requests,
        "allocations": len(allocations),
        "p50_ms": statistics.median(latencies),
        "p95_ms": statistics.quantiles(latencies, n=20)[-1] if requests > 1 else latencies[0],
        # The tenants' charges, summed exactly, against what the allocations cost as wholes.
        "cost_exact": orchestrator.ledger.reconciles(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batching", description=__doc__)
    parser.add_argument("--rates", default="2,10,40", help="arrival rates, requests per second")
    parser.add_argument("--seconds", type=float, default=8.0, help="how long requests arrive at each rate")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--time-scale", type=float, default=1.0, help="the mock's real seconds per simulated one")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    rows: list[dict[str, Any]] = []
    with _mock(args.time_scale) as url:
        for rate in rates:
            row: dict[str, Any] = {"rate": rate, "baseline": [], "batched": []}
            for round_ in range(args.rounds):
                seed = int(rate * 1000) + round_
                order = [("baseline", None), ("batched", SHIPPED_POLICY)]
                for mode, policy in order if round_ % 2 == 0 else order[::-1]:
                    row[mode].append(asyncio.run(_run(url, rate, args.seconds, seed, policy)))
            rows.append(row)
    policy = SHIPPED_POLICY.model_dump()
    print(json.dumps({"time_scale": args.time_scale, "seconds": args.seconds, "policy": policy, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
