"""The probe script: a bounded, seeded conversation with a HostedAI, the same against a live service and
against the mock, so that their traces can be compared step by step.

1. the catalogue (pools, models);
2. `cycles` allocate → (plain inference, streamed inference) × `inferences` → status → release cycles,
   over every pool × model cell the tenant may use, in turn;
3. the deliberate errors: allocate in a pool that does not exist (404), status of an allocation that does
   not exist (404), an inference above the model's `max_tokens` (422), release twice (204, 204), an
   inference after release (409);
4. the sweep: this run's allocations still active, found by the run's label and released.

Cost is capped: at most `max_allocations` allocations (one of them for the errors), each `max_tokens`
long, and every allocation is released — by the cycle, else by the sweep, also when the run is
interrupted. An error from the target is recorded, never fatal: the recorder records, drift judges.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.connector import (
    HostedAiConnector,
    HostedAiError,
    InferenceRequest,
    Model,
    Pool,
    Requirements,
    StreamDone,
    StreamToken,
)
from harness.drift.recorder import Recorder
from harness.suites.leaks import from_public_list

RUN_LABEL = "hostedai-drift-run"
"""The label every allocation of a probe run carries, so the sweep finds exactly the run's own."""
NO_SUCH_POOL = "hostedai-drift-no-such-pool"
NO_SUCH_ALLOCATION = "alloc_hostedai_drift_no_such_allocation"
_WORDS = (
    *("explain", "compare", "the", "GPU", "pool", "allocation", "latency", "token", "stream", "budget"),
    *("model", "proof", "why", "second", "one", "fails", "summarise", "schedule", "cache", "batch"),
    *("prefill", "decode", "memory", "bandwidth", "overcommit", "tenant", "quota", "region"),
)


class ProbeError(Exception):
    """The probe cannot run against this target (one line)."""


@dataclass(frozen=True, slots=True)
class ProbePlan:
    cycles: int = 12
    inferences: int = 3
    """Per cycle: this many plain and this many streamed inferences."""
    max_tokens: int = 32
    max_allocations: int = 20
    pools: tuple[str, ...] | None = None
    """Only these pools (None: every pool the tenant lists)."""

    def as_header(self) -> dict[str, Any]:
        return {
            "cycles": self.cycles,
            "inferences": self.inferences,
            "max_tokens": self.max_tokens,
            "max_allocations": self.max_allocations,
            "pools": list(self.pools) if self.pools is not None else None,
        }

    @classmethod
    def from_header(cls, probe: Mapping[str, Any]) -> ProbePlan:
        pools = probe.get("pools")
        return cls(
            cycles=int(probe["cycles"]),
            inferences=int(probe["inferences"]),
            max_tokens=int(probe["max_tokens"]),
            max_allocations=int(probe["max_allocations"]),
            pools=tuple(pools) if pools is not None else None,
        )

    @property
    def cycles_within_budget(self) -> int:
        """One allocation is kept for the error steps."""
        return max(0, min(self.cycles, self.max_allocations - 1))


@dataclass(slots=True)
class ProbeOutcome:
    allocations: int = 0
    notes: list[str] = field(default_factory=list)


def cells(pools: list[Pool], models: list[Model], only: tuple[str, ...] | None) -> list[tuple[Pool, Model]]:
    """Every (pool, model) pair the catalogue offers, in a stable order."""
    chosen = sorted((p for p in pools if only is None or p.pool_id in only), key=lambda p: p.pool_id)
    return [(p, m) for p in chosen for m in sorted(models, key=lambda m: m.model) if p.pool_id in m.pools]


def prompt(rng: random.Random) -> str:
    """A prompt of 8 to 64 words: lengths vary, so TTFT is sampled over a spread of prefill sizes."""
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 64)))


async def run_probe(connector: HostedAiConnector, recorder: Recorder, plan: ProbePlan, seed: int) -> ProbeOutcome:
    rng = random.Random(seed)
    outcome = ProbeOutcome()
    labels = {RUN_LABEL: uuid.uuid4().hex[:16]}
    try:
        with recorder.step("catalogue"):
            try:
                pools = await connector.list_pools()
                models = await connector.list_models()
            except HostedAiError as exc:
                raise ProbeError(f"cannot read the catalogue (GET /v1/pools, /v1/models): {exc}") from None
        offered = cells(pools, models, plan.pools)
        if not offered:
            raise ProbeError("the target offers no pool × model cell to probe (check --pools)")
        for cycle in range(plan.cycles_within_budget):
            pool, model = offered[cycle % len(offered)]
            await _cycle(connector, recorder, plan, rng, pool, model, labels, outcome)
        if plan.max_allocations >= 1:
            pool, model = offered[0]
            await _errors(connector, recorder, plan, rng, pool, model, labels, outcome)
    finally:
        # Whatever happened above (an error, a cancellation), nothing of this run stays held.
        with recorder.step("sweep"):
            evidence = await from_public_list(connector, labels)
        if evidence.problem:
            outcome.notes.append(f"the sweep could not run: {evidence.problem}")
        elif evidence.leaks:
            outcome.notes.append(f"the sweep released {len(evidence.leaks)} allocation(s) left held")
    return outcome


def _cell(pool: Pool, model: Model) -> dict[str, str]:
    return {"pool_id": pool.pool_id, "model": model.model, "gpu_type": pool.gpu_type}


def _requirements(model: Model) -> Requirements:
    return Requirements(model=model.model, tflops=model.tflops, vram_mb=model.vram_mb)


async def _cycle(
    connector: HostedAiConnector,
    recorder: Recorder,
    plan: ProbePlan,
    rng: random.Random,
    pool: Pool,
    model: Model,
    labels: dict[str, str],
    outcome: ProbeOutcome,
) -> None:
    cell = _cell(pool, model)
    with recorder.step("allocate", **cell):
        try:
            allocation = await connector.request_allocation(
                _requirements(model), pool=pool.pool_id, labels=labels, ttl_seconds=600
            )
        except HostedAiError as exc:
            outcome.notes.append(f"allocate in {pool.pool_id} for {model.model} failed: {exc.kind}")
            return
    outcome.allocations += 1
    try:
        for _ in range(plan.inferences):
            request = InferenceRequest(
                prompt=prompt(rng), max_tokens=plan.max_tokens, temperature=0, seed=rng.randrange(2**31)
            )
            with recorder.step("inference", **cell):
                await _quietly(connector.inference(allocation.allocation_id, request), outcome)
            with recorder.step("inference-stream", **cell):
                await _stream(connector, recorder, allocation.allocation_id, request, outcome)
        with recorder.step("status", **cell):
            await _quietly(connector.get_allocation(allocation.allocation_id), outcome)
    finally:
        with recorder.step("release", **cell):
            await _quietly(connector.release_allocation(allocation.allocation_id), outcome)


async def _errors(
    connector: HostedAiConnector,
    recorder: Recorder,
    plan: ProbePlan,
    rng: random.Random,
    pool: Pool,
    model: Model,
    labels: dict[str, str],
    outcome: ProbeOutcome,
) -> None:
    cell = _cell(pool, model)
    with recorder.step("error:unknown-pool", model=model.model):
        await _quietly(
            connector.request_allocation(_requirements(model), pool=NO_SUCH_POOL, labels=labels), outcome, noted=False
        )
    with recorder.step("error:unknown-allocation"):
        await _quietly(connector.get_allocation(NO_SUCH_ALLOCATION), outcome, noted=False)
    with recorder.step("error:allocate", **cell):
        try:
            allocation = await connector.request_allocation(
                _requirements(model), pool=pool.pool_id, labels=labels, ttl_seconds=600
            )
        except HostedAiError as exc:
            outcome.notes.append(f"the error steps' allocate failed: {exc.kind}")
            return
    outcome.allocations += 1
    too_long = InferenceRequest(prompt=prompt(rng), max_tokens=model.max_tokens + 1, temperature=0)
    with recorder.step("error:max-tokens-over-limit", **cell):
        await _quietly(connector.inference(allocation.allocation_id, too_long), outcome, noted=False)
    with recorder.step("error:release-twice", **cell):
        await _quietly(connector.release_allocation(allocation.allocation_id), outcome)
        await _quietly(connector.release_allocation(allocation.allocation_id), outcome)
    after = InferenceRequest(prompt=prompt(rng), max_tokens=plan.max_tokens, temperature=0)
    with recorder.step("error:inference-after-release", **cell):
        await _quietly(connector.inference(allocation.allocation_id, after), outcome, noted=False)


async def _quietly(call: Awaitable[Any], outcome: ProbeOutcome, *, noted: bool = True) -> None:
    """Await one connector call; its error is in the trace already (and noted, where none was meant)."""
    try:
        await call
    except HostedAiError as exc:
        if noted:
            outcome.notes.append(f"{type(exc).__name__}: {exc}"[:200])


async def _stream(
    connector: HostedAiConnector,
    recorder: Recorder,
    allocation_id: str,
    request: InferenceRequest,
    outcome: ProbeOutcome,
) -> None:
    started = time.perf_counter()
    times: list[float] = []
    done: StreamDone | None = None
    try:
        async for event in connector.stream_inference(allocation_id, request):
            if isinstance(event, StreamToken):
                times.append(time.perf_counter() - started)
            else:
                done = event
    except HostedAiError as exc:
        outcome.notes.append(f"{type(exc).__name__}: {exc}"[:200])
    if done is not None:
        ttft = times[0] if times else time.perf_counter() - started
        recorder.stream_seen(ttft_s=ttft, token_times_s=times, done=done.model_dump(mode="json"))
