"""The serving side of the simulator: a model server per allocation, a sharing runtime per GPU, and the
requests running on them.

The simulator calls `attach` when an allocation is placed (its engine joins its GPU, idle), `start`
for an inference (the request's natural length decided, its sequence submitted), `detach` when the
allocation ends (what it was running is returned, to be failed). The HTTP layer asks `progress` (how
far a request is at a moment) and `next_change_t` (when to look again), or `project` (its whole future
if nothing else arrives: what the manual clock reports at once). `sync` lets a GPU's time catch up.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from mock_server.config import MockConfig, PoolConfig, serving_profile
from mock_server.serving_profiles import ServingProfile
from mock_server.sim.serving.cost import StepCost, kv_capacity_tokens
from mock_server.sim.serving.engine import Engine, QueueFull, Sequence
from mock_server.sim.serving.gpu import GpuRuntime, Sharing, Tracked
from mock_server.sim.textgen import stable_seed

__all__ = ["QueueFull", "Request", "Serving", "Timeline"]

_KV_CAPACITIES_KEPT = 1024


@dataclass(frozen=True, slots=True)
class Timeline:
    """A request's times in simulated seconds from its arrival (None: not reached)."""

    queue_s: float | None
    """Waiting for the model server to admit it (the frontend's overhead is not queueing)."""
    ttft_s: float | None
    total_s: float | None
    tokens: int
    """Tokens generated so far (all of them once `total_s` is set)."""

    @property
    def tpot_s(self) -> float | None:
        if self.total_s is None or self.ttft_s is None or self.tokens < 2:
            return None
        return (self.total_s - self.ttft_s) / (self.tokens - 1)


@dataclass(eq=False, slots=True)
class Request:
    allocation_id: str
    gpu_id: str
    tracked: Tracked
    overhead_s: float
    """The frontend's time before the engine saw it (part of TTFT and of the total)."""


def step_cost(profile: ServingProfile, seed: int) -> StepCost:
    return StepCost(
        batch=tuple(profile.decode.batch),
        decode_s=tuple(ms / 1000 for ms in profile.decode.step_ms),
        kv_s_per_token=profile.kv_ns_per_token / 1e9,
        prefill_s_per_token=profile.prefill_us_per_token / 1e6,
        attention_s_per_token_ctx=profile.attention_ns_per_token_ctx / 1e9,
        noise_sigma=profile.noise_sigma,
        seed=seed,
        prefill_step_s=None if profile.prefill_step_ms is None else profile.prefill_step_ms / 1000,
    )


def sharing(pool: PoolConfig) -> Sharing:
    return Sharing(
        mode=pool.contention,
        vram_mb=float(pool.vram_mb_per_gpu),
        interference=pool.mps_interference,
        switch_overhead=pool.switch_overhead,
        quantum_s=pool.time_quantum_s,
        swap_gb_per_s=pool.swap_gb_per_s,
    )


class Serving:
    def __init__(self, config: MockConfig, seed: int, on_change: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.seed = seed
        self.on_change = on_change
        """Told the GPU id when a GPU's plan changed so that its requests may end sooner (a request left
        before its end, an allocation left the GPU): waiters look again."""
        self.runtimes: dict[str, GpuRuntime] = {}
        self._ids = itertools.count(1)
        self._profiles: dict[tuple[str, str], ServingProfile] = {}
        # The VRAM sizes are the clients' (an allocate asks for any): bounded by `_KV_CAPACITIES_KEPT`.
        self._kv_capacities: dict[tuple[str, str, int], int] = {}

    def profile(self, model: str, gpu_type: str) -> ServingProfile:
        # Looked up on every inference; the config never changes under a Serving (a reset makes a new one).
        key = (model, gpu_type)
        found = self._profiles.get(key)
        if found is None:
            found = self._profiles[key] = serving_profile(self.config, model, gpu_type)
        return found

    def kv_capacity(self, model: str, gpu_type: str, vram_mb: int) -> int:
        key = (model, gpu_type, vram_mb)
        found = self._kv_capacities.get(key)
        if found is None:
            p = self.profile(model, gpu_type)
            found = kv_capacity_tokens(vram_mb, p.weights_mb, p.overhead_mb, p.kv_kb_per_token)
            if len(self._kv_capacities) >= _KV_CAPACITIES_KEPT:
                self._kv_capacities.clear()
            self._kv_capacities[key] = found
        return found

    # ---- allocations ----------------------------------------------------------------------------------

    def attach(self, pool: PoolConfig, gpu_id: str, allocation_id: str, model: str, vram_mb: int, t: float) -> None:
        profile = self.profile(model, pool.gpu_type)
        engine = Engine(
            # A stable hash: Python's own hash of a string differs between processes, and with it the
            # noise of every step, so the same seed gave other timings in another process.
            step_cost(profile, stable_seed("step-noise", self.seed, allocation_id) & 0xFFFFFFFF),
            kv_capacity=max(1, self.kv_capacity(model, pool.gpu_type, vram_mb)),
            max_num_seqs=profile.max_num_seqs,
            max_batched_tokens=profile.max_num_batched_tokens,
            max_waiting=pool.max_waiting,
        )
        runtime = self.runtimes.get(gpu_id)
        if runtime is None:
            runtime = self.runtimes[gpu_id] = GpuRuntime(sharing(pool))
        runtime.add(allocation_id, engine, vram_mb, t)

    def detach(self, gpu_id: str, allocation_id: str, t: float) -> list[Tracked]:
        runtime = self.runtimes.get(gpu_id)
        if runtime is None:
            return []
        left = runtime.remove(allocation_id, t)
        if not runtime.slots:
            del self.runtimes[gpu_id]
        self._changed(gpu_id)
        return left

    # ---- requests ---------------------------------------------------------------------------------------

    def start(
        self, gpu_id: str, allocation_id: str, prompt_tokens: int, output_tokens: int, overhead_s: float, t: float
    ) -> Request:
        """Submit a request to its allocation's engine now. Its frontend overhead (tokenizing, HTTP) came
        before: the HTTP layer waits it out first, and every time reported includes it."""
        runtime = self.runtimes[gpu_id]
        seq = Sequence(next(self._ids), prompt_tokens, max(1, output_tokens), 0.0)
        # No change is told: an arrival only delays the GPU's other requests (see `Simulator.on_gpu_changed`).
        tracked = runtime.submit(allocation_id, seq, t)
        return Request(allocation_id, gpu_id, tracked, overhead_s)

    def answer_at_once(
        self, gpu_id: str, allocation_id: str, prompt_tokens: int, output_tokens: int, overhead_s: float, t: float
    ) -> Timeline:
        """`start`, `project` and `cancel` at one instant, for a request answered and gone at the moment
        it came (the manual clock's plain answer): its whole future if nothing else arrives, with the
        GPU left as those three calls leave it.

        When every engine on the GPU is idle, that future depends only on the engine's step count (the
        noise of its next step) and the request's shape, and the GPU ends as it began: the timeline is
        remembered per engine and the engine is not touched. A load test's requests mostly come this
        way, so most of them cost a dictionary lookup here instead of a submit, a projection and a
        cancel on the engine."""
        runtime = self.runtimes[gpu_id]
        runtime.sync(t)
        slot = runtime.slots[allocation_id]
        engine = slot.engine
        # What the submit would set for an engine alone on its GPU: full speed, no co-tenant slowdown.
        # Idle is not enough: a request cancelled mid-step leaves its (empty) step running, and the next
        # one waits for it (queue time, the next step's noise).
        idle = not runtime.live
        alone = idle and slot.speed == 1.0 and engine.memory_slowdown == 1.0
        key = (engine.steps, prompt_tokens, output_tokens, overhead_s)
        if alone:
            known = engine.answers.get(key)
            if isinstance(known, Timeline):
                return known
            # Not met on this engine yet (a fresh allocation's first request): its future on a copy of
            # the engine, without the GPU's submit and cancel around it.
            seq = Sequence(next(self._ids), prompt_tokens, max(1, output_tokens), 0.0)
            timeline = _timeline(runtime.answer_alone(allocation_id, seq, t), overhead_s)
            engine.answers.remember(key, timeline)
            return timeline
        request = self.start(gpu_id, allocation_id, prompt_tokens, output_tokens, overhead_s, t)
        try:
            timeline = self.project(request)
        finally:
            self.cancel(request, t)
        if alone:
            engine.answers.remember(key, timeline)
        return timeline

    def cancel(self, request: Request, t: float) -> None:
        runtime = self.runtimes.get(request.gpu_id)
        # A request that finished changes nothing by leaving: the engine already went on without it, and
        # the GPU's other waiters need not look again (under load, every answer woke all of them).
        if runtime is not None and runtime.cancel(request.allocation_id, request.tracked, t):
            self._changed(request.gpu_id)

    def sync(self, gpu_id: str, t: float) -> None:
        runtime = self.runtimes.get(gpu_id)
        if runtime is not None:
            runtime.sync(t)

    def work(self, gpu_id: str, t: float) -> tuple[int, int]:
        """(running, waiting) sequences on the GPU at `t`, over every allocation's engine: the load a
        dashboard shows (waiting ones wait for a batch slot or KV-cache room)."""
        runtime = self.runtimes.get(gpu_id)
        if runtime is None:
            return 0, 0
        runtime.sync(t)
        engines = [slot.engine for slot in runtime.slots.values()]
        return sum(len(e.running) for e in engines), sum(len(e.waiting) for e in engines)

    def progress(self, request: Request, t: float) -> Timeline:
        self.sync(request.gpu_id, t)
        return _timeline(request.tracked, request.overhead_s)

    def next_change_t(self, request: Request, *, every_token: bool = True) -> float:
        """When the request's next token (or its end) is due if nothing else arrives. Without
        `every_token`, the soonest it could end whatever arrives (`GpuRuntime.earliest_end_t`): an answer
        sent whole need not look at each token, nor again when another request arrives."""
        runtime = self.runtimes.get(request.gpu_id)
        if runtime is None:
            return float("inf")
        if not every_token:
            return runtime.earliest_end_t(request.allocation_id, request.tracked)
        return min(runtime.next_token_t(request.allocation_id, request.tracked), runtime.next_event_t())

    def project(self, request: Request) -> Timeline:
        """The request's whole future if nothing else arrives (the GPU itself is left as it is)."""
        runtime = self.runtimes.get(request.gpu_id)
        if runtime is None:
            return _timeline(request.tracked, request.overhead_s)
        return _timeline(runtime.project(request.allocation_id, request.tracked), request.overhead_s)

    def _changed(self, gpu_id: str) -> None:
        if self.on_change is not None:
            self.on_change(gpu_id)


def _timeline(tracked: Tracked, overhead_s: float) -> Timeline:
    t0 = tracked.arrived_t

    def since(t: float | None) -> float | None:
        return None if t is None else overhead_s + max(0.0, t - t0)

    queue = None if tracked.admitted_t is None else max(0.0, tracked.admitted_t - t0)
    return Timeline(queue, since(tracked.first_token_t), since(tracked.finished_t), tracked.seq.generated)
