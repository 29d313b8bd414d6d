"""How long an inference takes (docs/simulation.md, "Latency").

    queue  = wait for a decode slot when more sequences run on the GPU than the model's max_concurrency,
             plus, with temporal contention, the wait for other tenants' time quanta
    ttft   = (prefill_overhead + prompt_tokens × prefill_per_token) × slowdown × J_ttft
    itl    = tpot × (1 + a·(n−1)) × (1 + b·context/1000) × slowdown × J_itl
    total  = queue + ttft + (completion_tokens − 1) × itl

`slowdown` = (the model's reference tflops / the allocation's tflops, at least 1)
           × (the GPU's allocated tflops / its physical tflops, at least 1; spatial contention only).
J are seeded lognormal jitters, median 1, clamped to [0.3, 1.7] as llm-d clamps its jitter.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from mock_server.config import GpuLatency, ModelConfig, PoolConfig

_JITTER_MIN, _JITTER_MAX = 0.3, 1.7


@dataclass(frozen=True, slots=True)
class Timings:
    queue_s: float
    ttft_s: float
    itl_s: float
    total_s: float

    @property
    def queue_ms(self) -> float:
        return round(self.queue_s * 1000, 3)

    @property
    def ttft_ms(self) -> float:
        return round(self.ttft_s * 1000, 3)

    @property
    def total_ms(self) -> float:
        return round(self.total_s * 1000, 3)


@dataclass(frozen=True, slots=True)
class Contention:
    """The state of the GPU the inference runs on, when it starts."""

    gpu_load: float
    """Allocated over physical tflops (>1 when overcommitted)."""
    running: int
    """Sequences running on the GPU, this one included."""
    tenants: int
    """Distinct tenants holding allocations on the GPU (temporal contention time-slices between them)."""


def jitter(rng: random.Random, sigma: float) -> float:
    if sigma == 0:
        return 1.0
    return min(_JITTER_MAX, max(_JITTER_MIN, rng.lognormvariate(0.0, sigma)))


def plan(
    *,
    model: ModelConfig,
    gpu: GpuLatency,
    pool: PoolConfig,
    alloc_tflops: float,
    prompt_tokens: int,
    completion_tokens: int,
    contention: Contention,
    rng: random.Random,
) -> Timings:
    share_slowdown = max(1.0, model.tflops / alloc_tflops)
    spatial = pool.contention == "spatial"
    slowdown = share_slowdown * (max(1.0, contention.gpu_load) if spatial else 1.0)

    prefill_s = (gpu.prefill_overhead_ms / 1000 + prompt_tokens * gpu.prefill_per_token_us / 1e6) * slowdown
    ttft_s = prefill_s * jitter(rng, model.ttft_sigma)
    batch = min(contention.running, model.max_concurrency)
    context = prompt_tokens + completion_tokens
    itl_s = (
        gpu.tpot_ms
        / 1000
        * (1 + model.batch_factor * (batch - 1))
        * (1 + model.context_factor * context / 1000)
        * slowdown
        * jitter(rng, model.itl_sigma)
    )
    decode_s = max(0, completion_tokens - 1) * itl_s

    queue_s = 0.0
    waiting = contention.running - model.max_concurrency
    if waiting > 0:
        # Each batch of max_concurrency sequences ahead must finish one service time before we start.
        queue_s += math.ceil(waiting / model.max_concurrency) * (prefill_s + decode_s)
    if not spatial and contention.gpu_load > 1 and contention.tenants > 1:
        # Time-slicing: with k tenants the GPU is ours one quantum in k; otherwise we wait for the
        # others' quanta. This is what makes overcommitted latency bimodal.
        k = contention.tenants
        if rng.random() >= 1 / k:
            queue_s += rng.uniform(0, (k - 1) * pool.time_quantum_s)
    return Timings(queue_s=queue_s, ttft_s=queue_s + ttft_s, itl_s=itl_s, total_s=queue_s + ttft_s + decode_s)
