"""Where an allocation goes: which GPU of a pool, and whom it preempts if it must.

Capacity rules (docs/simulation.md, "Capacity"):
- VRAM: the sum on a GPU never exceeds `vram_mb × vram_overcommit_ratio` (1.0 by default: never overcommitted).
- Compute with `overcommit`: the sum on a GPU may reach `tflops × overcommit_ratio`.
- Compute without it: the allocation needs guaranteed capacity, so the sum after placing it must stay
  within the GPU's physical `tflops`.

`choose_gpu` states the placement policies as a scan over every GPU: it is the definition. The
simulator asks the pool's capacity index (`capacity_index.py`) instead, which gives the same answer in
O(log n) per placement and per change of a GPU, so allocate and release cost does not grow with the
size of the pool (tests/sim/test_placement_index.py checks the two agree).
"""

from __future__ import annotations

from dataclasses import dataclass

from mock_server.config import PoolConfig
from mock_server.sim.model import Allocation, Gpu

# Tolerance for float sums of tflops, so 0.1 + 0.2 fits where 0.3 fits.
EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Demand:
    tflops: float
    vram_mb: int
    overcommit: bool
    priority: int


def vram_limit(pool: PoolConfig, gpu: Gpu) -> float:
    return gpu.vram_mb * pool.vram_overcommit_ratio


def compute_limit(pool: PoolConfig, gpu: Gpu, overcommit: bool) -> float:
    return gpu.tflops * (pool.overcommit_ratio if overcommit else 1.0)


def fits(pool: PoolConfig, gpu: Gpu, demand: Demand, tflops_used: float, vram_used: int) -> bool:
    return (
        vram_used + demand.vram_mb <= vram_limit(pool, gpu) + EPS
        and tflops_used + demand.tflops <= compute_limit(pool, gpu, demand.overcommit) + EPS
    )


def could_ever_fit(pool: PoolConfig, gpu: Gpu, demand: Demand) -> bool:
    """Whether the demand fits on this GPU when it is empty."""
    return fits(pool, gpu, demand, 0.0, 0)


def choose_gpu(pool: PoolConfig, gpus: list[Gpu], demand: Demand) -> Gpu | None:
    """The GPU to place on without preempting anyone, by the pool's placement policy.

    The definition, by a scan over every GPU; the simulator asks the pool's capacity index, which
    answers the same without the scan."""
    best: Gpu | None = None
    best_key: tuple[float, float, int] | None = None
    for gpu in gpus:
        if not gpu.healthy or not fits(pool, gpu, demand, gpu.tflops_allocated, gpu.vram_mb_allocated):
            continue
        if pool.placement == "first_fit":
            return gpu
        free_vram = vram_limit(pool, gpu) - gpu.vram_mb_allocated - demand.vram_mb
        free_tflops = compute_limit(pool, gpu, True) - gpu.tflops_allocated - demand.tflops
        # best_fit packs: the least room left after placing (VRAM first, it is the scarcer resource);
        # spread balances: the most room left.
        sign = 1.0 if pool.placement == "best_fit" else -1.0
        key = (sign * free_vram, sign * free_tflops, gpu.index)
        if best_key is None or key < best_key:
            best, best_key = gpu, key
    return best


@dataclass(frozen=True, slots=True)
class Preemption:
    gpu: Gpu
    victims: list[Allocation]


def plan_preemption(pool: PoolConfig, gpus: list[Gpu], demand: Demand) -> Preemption | None:
    """The cheapest set of lower-priority overcommitted allocations whose eviction makes room.

    Only an overcommitted request may preempt, and only allocations that were themselves overcommitted
    and have a strictly lower priority. Victims are taken lowest priority first, youngest first among
    equals; the GPU needing the fewest (then the lowest-priority) victims wins.
    """
    if not pool.preemption or not demand.overcommit:
        return None
    best: Preemption | None = None
    best_key: tuple[int, int, int] | None = None
    for gpu in gpus:
        if not gpu.healthy or not could_ever_fit(pool, gpu, demand):
            continue
        candidates = sorted(
            (a for a in gpu.allocations.values() if a.overcommit and a.priority < demand.priority),
            key=lambda a: (a.priority, -a.seq),
        )
        tflops, vram = gpu.tflops_allocated, gpu.vram_mb_allocated
        victims: list[Allocation] = []
        for victim in candidates:
            if fits(pool, gpu, demand, tflops, vram):
                break
            victims.append(victim)
            tflops -= victim.tflops
            vram -= victim.vram_mb
        if not victims or not fits(pool, gpu, demand, tflops, vram):
            continue
        key = (len(victims), sum(v.priority for v in victims), gpu.index)
        if best_key is None or key < best_key:
            best, best_key = Preemption(gpu, victims), key
    return best
