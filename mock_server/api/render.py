"""Domain objects to wire shapes (the schemas of contracts/hostedai.v1.yaml)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from mock_server.sim.clock import Clock
from mock_server.sim.ledger import UsageRecord, UsageTotals
from mock_server.sim.model import Allocation, AllocationState
from mock_server.sim.serving.service import Timeline
from mock_server.sim.simulator import InferencePlan, PoolStats


def timestamp(clock: Clock, sim_seconds: float | None) -> str | None:
    if sim_seconds is None:
        return None
    moment = datetime.fromtimestamp(clock.epoch + sim_seconds, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def allocation(a: Allocation, clock: Clock) -> dict[str, Any]:
    return {
        "allocation_id": a.allocation_id,
        "tenant_id": a.tenant_id,
        "pool_id": a.pool_id,
        "model": a.model,
        "tflops": a.tflops,
        "vram_mb": a.vram_mb,
        "overcommit": a.overcommit,
        "priority": a.priority,
        "state": a.state.value,
        "gpu_id": a.gpu_id,
        "labels": dict(a.labels),
        "created_at": timestamp(clock, a.created_at),
        "expires_at": timestamp(clock, a.expires_at),
        "ended_at": timestamp(clock, a.ended_at),
        "end_reason": a.end_reason.value if a.end_reason is not None else None,
        "preempted_by": a.preempted_by,
        "ready_at": timestamp(clock, a.ready_at) if a.state is AllocationState.PROVISIONING else None,
    }


def pool(p: PoolStats) -> dict[str, Any]:
    return {
        "pool_id": p.pool_id,
        "gpu_type": p.gpu_type,
        "gpus": p.gpus,
        "tflops_total": p.tflops_total,
        "tflops_allocated": p.tflops_allocated,
        "vram_mb_total": p.vram_mb_total,
        "vram_mb_allocated": p.vram_mb_allocated,
        "overcommit_ratio": p.overcommit_ratio,
        "allocations_active": p.allocations_active,
        "price_per_tflops_hour": p.price_per_tflops_hour,
    }


def inference_done(plan: InferencePlan, completion_tokens: int) -> dict[str, Any]:
    """The fields of an answered inference, minus the output: the stream's `done` event."""
    return _answered(plan, completion_tokens, None)


def inference(plan: InferencePlan) -> dict[str, Any]:
    """An answered inference: `inference_done`'s fields with the output."""
    return _answered(plan, plan.completion_tokens, plan.output)


def _answered(plan: InferencePlan, completion_tokens: int, output: str | None) -> dict[str, Any]:
    # Field order as in the contract's example: the output before finish_reason.
    body: dict[str, Any] = {
        "inference_id": plan.inference_id,
        "allocation_id": plan.allocation.allocation_id,
        "model": plan.model,
    }
    if output is not None:
        body["output"] = output
    body["finish_reason"] = plan.finish_reason
    body["usage"] = {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": plan.prompt_tokens + completion_tokens,
    }
    body["timings"] = timings(plan.timeline)
    return body


def timings(timeline: Timeline | None) -> dict[str, float]:
    """Milliseconds, rounded to the microsecond; what was never reached is 0 (a request cut short)."""
    if timeline is None:
        return {"queue_ms": 0.0, "ttft_ms": 0.0, "total_ms": 0.0, "tpot_ms": 0.0}
    return {
        "queue_ms": round((timeline.queue_s or 0.0) * 1000, 3),
        "ttft_ms": round((timeline.ttft_s or 0.0) * 1000, 3),
        "total_ms": round((timeline.total_s or 0.0) * 1000, 3),
        "tpot_ms": round((timeline.tpot_s or 0.0) * 1000, 3),
    }


USAGE_FIELDS = (
    "allocation_id",
    "pool_id",
    "model",
    "labels",
    "tflops_seconds",
    "vram_mb_seconds",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "started_at",
    "ended_at",
)


def usage_record(r: UsageRecord, clock: Clock) -> dict[str, Any]:
    return {
        "allocation_id": r.allocation_id,
        "pool_id": r.pool_id,
        "model": r.model,
        "labels": r.labels,
        "tflops_seconds": r.tflops_seconds,
        "vram_mb_seconds": r.vram_mb_seconds,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "cost": r.cost,
        "started_at": timestamp(clock, r.started_at),
        "ended_at": timestamp(clock, r.ended_at),
    }


def usage_totals(t: UsageTotals) -> dict[str, Any]:
    return {
        "allocations": t.allocations,
        "tflops_seconds": t.tflops_seconds,
        "vram_mb_seconds": t.vram_mb_seconds,
        "prompt_tokens": t.prompt_tokens,
        "completion_tokens": t.completion_tokens,
        "cost": t.cost,
    }


def usage_csv(records: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(USAGE_FIELDS)
    for r in records:
        labels = ";".join(f"{k}={v}" for k, v in sorted(r["labels"].items()))
        writer.writerow([labels if f == "labels" else ("" if r[f] is None else r[f]) for f in USAGE_FIELDS])
    return out.getvalue()
