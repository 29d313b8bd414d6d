"""`ProcessResult`: what the orchestrator answers for one text (the body of Harpoon's `/v2/process`).

The wire shape is pinned by `ProcessResult` in contracts/harpoon.v2.yaml; a test validates real answers
against it. Harpoon's own models, not the connector's, so the HostedAI contract can evolve without
changing Harpoon's.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from harness.orchestrator.accounting import Cost
from harness.orchestrator.classifier import Classification


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Usage(_Payload):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Timings(_Payload):
    """HostedAI's server-side latency of the inference, in milliseconds."""

    queue_ms: float
    ttft_ms: float
    total_ms: float


class BatchInfo(_Payload):
    """How the request was batched: it shared its allocation with `size - 1` others."""

    size: int
    """The requests on the shared allocation, this one included."""
    wait_ms: float
    """How long the request waited for its batch to close: the latency batching added before allocating."""


class ProcessResult(_Payload):
    output: str
    fallback: bool
    """True when HostedAI was not asked (its circuit is open) and `output` is an explanation instead."""
    reason: str | None
    """Why the answer is a fallback; None otherwise."""
    classification: Classification
    model: str
    """The model that served the request, or would have (fallback)."""
    pool_id: str | None
    allocation_id: str | None
    usage: Usage | None
    cost: Cost
    timings: Timings | None
    tenant: str
    batch: BatchInfo | None = None
    """Set when the request was batched (harness/orchestrator/batching.py)."""
