"""The simulator at scale, in-process (no HTTP): memory per live allocation, and the cost of an
allocate + release as the pool grows.

    python -m benchmarks.scale [--rounds 5] [--cycles 2000] [--gpus 100,1000,10000] [--per-gpu 10]

Prints one JSON document; `benchmarks.run` runs it in a fresh interpreter and writes the report.

- Memory: 100,000 live allocations on 10,000 GPUs (one pool), traced with tracemalloc; the baseline is
  the least a store of the same allocations can be: one dict of their fields per allocation, in one
  dict keyed by id, traced the same way in the same process.
- Cost: pools of 100, 1,000 and 10,000 GPUs, each with the same number of live allocations per GPU;
  one cycle allocates a new allocation and releases a random live one, so the live count stays put;
  a "hot" cycle releases what it just allocated (its data stays in the CPU caches). Each round times
  every size back to back; `benchmarks.run` reports medians and the median of per-round ratios to the
  smallest pool. Ended allocations leave at once (retention 0), so the state is the same every round.
  For comparison, the scan placement used before the index (`placement.choose_gpu`) is timed on the
  same pools.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
import tracemalloc
from typing import Any

from mock_server.config import MockConfig, parse_config
from mock_server.sim import placement
from mock_server.sim.clock import ManualClock
from mock_server.sim.simulator import AllocationSpec, Simulator

POLICIES = ("best_fit", "first_fit", "spread")
# Allocation sizes (VRAM MB, TFLOPS) drawn at random: the models of the default config and a bigger one.
SIZES = [(2048, 5.0), (4096, 10.0), (8192, 20.0)]


def config(gpus: int, policy: str) -> MockConfig:
    latency = {"prefill_overhead_ms": 8.0, "prefill_per_token_us": 3.0, "tpot_ms": 3.5}
    return parse_config(
        {
            # Ended allocations leave at once (no retention window): the live state stays the same size
            # however many cycles run, so later rounds measure the same thing as earlier ones.
            "simulation": {"seed": 0, "clock": "manual", "retention_seconds": 0},
            "pools": [
                {
                    "id": "pool",
                    "gpu_type": "H100-80GB",
                    "gpus": gpus,
                    "tflops_per_gpu": 989.0,
                    "vram_mb_per_gpu": 81920,
                    "overcommit_ratio": 2.0,
                    "placement": policy,
                }
            ],
            "models": {
                "m": {
                    "vram_mb": 2048,
                    "tflops": 5,
                    "max_tokens": 64,
                    "context_tokens": 4096,
                    "pools": ["pool"],
                    "latency": {"H100-80GB": latency},
                }
            },
            "tenants": {"dev": {"api_keys": ["dev-key"]}},
        }
    )


def spec(rng: random.Random) -> AllocationSpec:
    vram_mb, tflops = rng.choice(SIZES)
    return AllocationSpec("pool", "m", tflops, vram_mb, labels={"team": "bench"})


def populate(sim: Simulator, count: int, rng: random.Random) -> list[str]:
    return [sim.allocate("dev", spec(rng), request_id=f"req_{i:016x}").allocation.allocation_id for i in range(count)]


def memory(gpus: int, per_gpu: int) -> dict[str, Any]:
    count = gpus * per_gpu
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    sim = Simulator(config(gpus, "best_fit"), ManualClock())
    empty = tracemalloc.get_traced_memory()[0]
    populate(sim, count, random.Random(1))
    gc.collect()
    full = tracemalloc.get_traced_memory()[0]
    # The baseline: each allocation's fields in a plain dict, in one dict by id.
    rng = random.Random(1)
    store: dict[str, dict[str, Any]] = {}
    before = tracemalloc.get_traced_memory()[0]
    for i in range(count):
        s = spec(rng)
        allocation_id = f"alloc_{rng.getrandbits(64):016x}"
        store[allocation_id] = {
            "allocation_id": allocation_id,
            "tenant_id": "dev",
            "pool_id": s.pool_id,
            "gpu_id": f"pool-gpu-{i % gpus}",
            "model": s.model,
            "tflops": s.tflops,
            "vram_mb": s.vram_mb,
            "labels": dict(s.labels),
            "created_at": float(i),
            "request_id": f"req_{i:016x}",
        }
    plain = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert sum(len(g.allocations) for g in sim.pools["pool"].gpus) == count
    return {
        "gpus": gpus,
        "allocations": count,
        "simulator_empty_bytes": empty - base,
        "bytes_per_allocation": (full - empty) / count,
        "baseline_bytes_per_allocation": plain / count,
    }


def cost(policy: str, sizes: list[int], per_gpu: int, rounds: int, cycles: int) -> dict[str, Any]:
    sims: dict[int, tuple[Simulator, list[str], random.Random]] = {}
    for n in sizes:
        rng = random.Random(n)
        sim = Simulator(config(n, policy), ManualClock())
        sims[n] = (sim, populate(sim, n * per_gpu, rng), rng)
    # What exists now is never garbage: keep the collector from walking it again in a timed loop
    # (a full collection over a million objects would land in whichever pool size is being timed).
    gc.collect()
    gc.freeze()
    per_round: dict[int, list[float]] = {n: [] for n in sizes}
    hot_round: dict[int, list[float]] = {n: [] for n in sizes}
    for r in range(rounds):
        # Each round times every size back to back, starting with a different one each time, so a
        # change in the machine's speed hits the sizes alike and cancels out of the per-round ratio.
        for n in sizes[r % len(sizes) :] + sizes[: r % len(sizes)]:
            sim, live, rng = sims[n]
            specs = [spec(rng) for _ in range(cycles)]
            victims = [rng.randrange(len(live)) for _ in range(cycles)]
            start = time.perf_counter()
            for s, victim in zip(specs, victims, strict=True):
                new = sim.allocate("dev", s, request_id="req_bench").allocation.allocation_id
                sim.release("dev", live[victim])
                live[victim] = new
            per_round[n].append((time.perf_counter() - start) / cycles * 1e6)
            # The same cycle releasing what it just allocated: the data it touches stays in the CPU's
            # caches, so what remains is the cost of the code path alone.
            start = time.perf_counter()
            for s in specs:
                sim.release("dev", sim.allocate("dev", s, request_id="req_bench").allocation.allocation_id)
            hot_round[n].append((time.perf_counter() - start) / cycles * 1e6)
    # The scan the simulator used before the index, on the same pools, for comparison.
    scan_us: dict[int, float] = {}
    for n in sizes:
        sim, _, rng = sims[n]
        pool = sim.pools["pool"]
        specs = [spec(rng) for _ in range(50)]
        demands = [placement.Demand(s.tflops, s.vram_mb, s.overcommit, s.priority) for s in specs]
        repeat = max(1, 20_000 // n)
        start = time.perf_counter()
        for _ in range(repeat):
            for d in demands:
                placement.choose_gpu(pool.config, pool.gpus, d)
        scan_us[n] = (time.perf_counter() - start) / (repeat * len(demands)) * 1e6
        start = time.perf_counter()
        index = sim.placement_index["pool"]
        for _ in range(repeat * 20):
            for d in demands:
                index.choose(d)
        scan_us[-n] = (time.perf_counter() - start) / (repeat * 20 * len(demands)) * 1e6
    gc.unfreeze()
    return {
        "policy": policy,
        "per_gpu": per_gpu,
        "cycle_us": {str(n): per_round[n] for n in sizes},
        "hot_cycle_us": {str(n): hot_round[n] for n in sizes},
        "scan_choose_us": {str(n): scan_us[n] for n in sizes},
        "index_choose_us": {str(n): scan_us[-n] for n in sizes},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--cycles", type=int, default=500, help="allocate+release cycles per round and pool")
    parser.add_argument("--gpus", default="100,1000,10000")
    parser.add_argument("--per-gpu", type=int, default=10, help="live allocations per GPU")
    parser.add_argument("--policies", default=",".join(POLICIES))
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.gpus.split(",")]
    result = {
        "memory": memory(max(sizes), args.per_gpu),
        "cost": [cost(policy, sizes, args.per_gpu, args.rounds, args.cycles) for policy in args.policies.split(",")],
    }
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
