"""Typed payloads of the HostedAI contract, as the client sees them.

Written by hand for readable names and docstrings; `test_payload_models_match_the_contract` in
`tests/connector/test_units.py` checks every field against `contracts/hostedai.v1.yaml`, so the two
cannot drift apart. Responses ignore unknown fields (a newer server may add some); requests never
send fields the contract lacks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Requirements(_Request):
    """What to reserve (the integration guide's `ResourceRequirements`)."""

    model: str
    tflops: float = Field(gt=0)
    vram_mb: int = Field(gt=0)
    max_tokens: int | None = Field(default=None, gt=0)


AllocationState = Literal["provisioning", "active", "preempted", "expired", "released", "failed"]


class Allocation(_Response):
    allocation_id: str
    tenant_id: str
    pool_id: str
    model: str
    tflops: float
    vram_mb: int
    overcommit: bool
    priority: int
    state: AllocationState
    gpu_id: str
    labels: dict[str, str] = {}
    created_at: datetime
    expires_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None
    preempted_by: str | None = None
    ready_at: datetime | None = None
    """While `provisioning`, when the allocation is expected to serve."""


class InferenceRequest(_Request):
    """One prompt (the guide's `InferenceRequest`; the allocation is named separately)."""

    prompt: str
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    stop: list[str] | None = None
    seed: int | None = Field(default=None, ge=0)
    model: str | None = None


class TokenUsage(_Response):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Timings(_Response):
    """Server-side latency, in milliseconds."""

    queue_ms: float
    ttft_ms: float
    total_ms: float
    tpot_ms: float | None = None


class InferenceResponse(_Response):
    inference_id: str
    allocation_id: str
    model: str
    output: str
    finish_reason: Literal["stop", "length"]
    usage: TokenUsage
    timings: Timings


class StreamToken(_Response):
    index: int
    text: str


class StreamDone(_Response):
    """The end of a stream: the inference's fields minus the output."""

    inference_id: str
    allocation_id: str
    model: str
    finish_reason: Literal["stop", "length"]
    usage: TokenUsage
    timings: Timings


class Pool(_Response):
    pool_id: str
    gpu_type: str
    gpus: int
    tflops_total: float
    tflops_allocated: float
    vram_mb_total: int
    vram_mb_allocated: int
    overcommit_ratio: float
    allocations_active: int
    price_per_tflops_hour: float


class Model(_Response):
    model: str
    vram_mb: int
    tflops: float
    max_tokens: int
    context_tokens: int
    pools: list[str]


class UsageRecord(_Response):
    allocation_id: str
    pool_id: str
    model: str
    labels: dict[str, str] = {}
    tflops_seconds: float
    vram_mb_seconds: float
    prompt_tokens: int
    completion_tokens: int
    cost: float
    started_at: datetime
    ended_at: datetime | None = None


class UsageTotals(_Response):
    allocations: int
    tflops_seconds: float
    vram_mb_seconds: float
    prompt_tokens: int
    completion_tokens: int
    cost: float


class UsageReport(_Response):
    """The window's totals (exact, whatever detail the server still keeps) and its per-allocation
    records; `HostedAiConnector.usage` gathers the records of every page."""

    tenant_id: str
    since: datetime | None = None
    until: datetime | None = None
    period_seconds: float | None = None
    records: list[UsageRecord]
    totals: UsageTotals
    next_cursor: str | None = None
    """None once `HostedAiConnector.usage` has followed every page."""
