"""What one engine step costs, from a serving profile (`mock_server/serving_profiles.py`).

    step = decode(n) + kv × t_kv + p × (t_prefill + c × t_attn)

- `decode(n)`: the step time with `n` sequences decoding (short context), interpolated over the
  profile's grid of batch sizes — flat while the step is memory-bound, then rising as it becomes
  compute-bound (the roofline shape vLLM shows);
- `kv × t_kv`: attention reads every KV token of the batch;
- `p × (t_prefill + c × t_attn)`: `p` prompt tokens prefilled in the step, the attention part growing
  with the context `c` they attend to (the n² term of long prompts).

A step with nothing decoding still costs `decode(1)` (the scheduler, the sampler and the launch
overhead of a step do not vanish), unless the profile says what a prefill-only step costs. Noise is
one-sided (a step is never faster than the profile says: the physical floor) and a pure function of the
step's number and the engine's seed.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from dataclasses import dataclass
from statistics import NormalDist

_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class StepCost:
    batch: tuple[int, ...]
    """Grid of decoding batch sizes, ascending, starting at 1."""
    decode_s: tuple[float, ...]
    """Step time at each grid size (seconds)."""
    kv_s_per_token: float
    prefill_s_per_token: float
    attention_s_per_token_ctx: float
    """Per prompt token, per token of context it attends to."""
    noise_sigma: float = 0.0
    seed: int = 0
    prefill_step_s: float | None = None
    """The fixed part of a step that only prefills (nothing decoding); None: `decode(1)`."""

    def __post_init__(self) -> None:
        if not self.batch or self.batch[0] != 1 or list(self.batch) != sorted(set(self.batch)):
            raise ValueError("the decode grid's batch sizes are ascending and start at 1")
        if len(self.batch) != len(self.decode_s):
            raise ValueError("one decode step time per batch size")

    @property
    def shortest_step_s(self) -> float:
        """No step that makes a token is shorter (noise and slowdowns are factors ≥ 1; a step that only
        prefills makes one when a preempted sequence's re-prefill completes)."""
        shortest = min(self.decode_s)
        return shortest if self.prefill_step_s is None else min(shortest, self.prefill_step_s)

    @property
    def monotone(self) -> bool:
        """Whether a larger batch never steps faster (true of every measured profile)."""
        return all(a <= b for a, b in zip(self.decode_s, self.decode_s[1:], strict=False))

    def decode(self, n: int) -> float:
        """Step time with `n` sequences decoding, linear between grid points and beyond the last two."""
        n = max(1, n)
        grid, times = self.batch, self.decode_s
        if len(grid) == 1:
            return times[0]
        i = min(max(bisect_right(grid, n) - 1, 0), len(grid) - 2)
        x0, x1, y0, y1 = grid[i], grid[i + 1], times[i], times[i + 1]
        return max(times[0], y0 + (y1 - y0) * (n - x0) / (x1 - x0))

    def step_s(
        self, decoding: int, kv_tokens: int, prefill_tokens: int, prefill_context: int, memory_slowdown: float = 1.0
    ) -> float:
        """`memory_slowdown` stretches the memory-bound part (decode, KV reads): what co-tenants sharing
        the GPU's memory bandwidth cost (MPS); compute-bound prefill is barely touched by them."""
        prefill = prefill_tokens * self.prefill_s_per_token + prefill_context * self.attention_s_per_token_ctx
        if decoding == 0 and self.prefill_step_s is not None:
            return self.prefill_step_s + prefill
        return (self.decode(decoding) + kv_tokens * self.kv_s_per_token) * memory_slowdown + prefill

    def kv_growth_s(self, decoding: int, memory_slowdown: float = 1.0) -> float:
        """How much longer each next step of a decode run is: every sequence added a KV token."""
        return decoding * self.kv_s_per_token * memory_slowdown

    def noise(self, step: int) -> float:
        """A factor ≥ 1 for a run that starts at step number `step` (half-normal, deterministic)."""
        if self.noise_sigma <= 0:
            return 1.0
        digest = hashlib.blake2b(f"{self.seed}:{step}".encode(), digest_size=8).digest()
        u = (int.from_bytes(digest, "big") + 0.5) / 2**64
        return 1.0 + self.noise_sigma * abs(_NORMAL.inv_cdf(u))


def kv_capacity_tokens(vram_mb: float, weights_mb: float, overhead_mb: float, kv_kb_per_token: float) -> int:
    """KV-cache tokens an allocation of `vram_mb` holds once the weights and the runtime are loaded."""
    room_kb = (vram_mb - weights_mb - overhead_mb) * 1024
    return max(0, math.floor(room_kb / kv_kb_per_token))
