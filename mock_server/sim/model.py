"""The simulator's entities: GPUs, pools and allocations. Plain data with slots, no behaviour beyond
bookkeeping, so 100,000 live allocations stay small."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from mock_server.config import PoolConfig


class AllocationState(StrEnum):
    PROVISIONING = "provisioning"
    """Held (and billed) but not serving yet: the provider attaches a GPU, the model server loads."""
    ACTIVE = "active"
    PREEMPTED = "preempted"
    EXPIRED = "expired"
    RELEASED = "released"
    FAILED = "failed"


class EndReason(StrEnum):
    RELEASED = "released"
    EXPIRED = "expired"
    PREEMPTED = "preempted"
    GPU_FAILURE = "gpu_failure"
    OOM = "oom"


# The state an allocation ends in, for each reason it can end.
END_STATE = {
    EndReason.RELEASED: AllocationState.RELEASED,
    EndReason.EXPIRED: AllocationState.EXPIRED,
    EndReason.PREEMPTED: AllocationState.PREEMPTED,
    EndReason.GPU_FAILURE: AllocationState.FAILED,
    EndReason.OOM: AllocationState.FAILED,
}


@dataclass(slots=True, eq=False)
class Allocation:
    allocation_id: str
    tenant_id: str
    pool_id: str
    gpu_id: str
    model: str
    tflops: float
    vram_mb: int
    overcommit: bool
    priority: int
    labels: dict[str, str]
    created_at: float
    ttl_seconds: int | None
    request_id: str
    seq: int
    last_used_at: float = 0.0
    state: AllocationState = AllocationState.ACTIVE
    ended_at: float | None = None
    end_reason: EndReason | None = None
    preempted_by: str | None = None
    inflight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ready_at: float | None = None
    """When it serves (None: from the start); until then it is `provisioning`."""
    ends_at: float | None = None
    """Set when it was preempted with a grace period: it serves until then, then ends `preempted`."""
    holds_capacity: bool = True
    """False once its capacity went to another allocation (a preemption's grace) or back to the pool."""
    tokens_by_period: dict[int, tuple[int, int]] | None = None
    """(prompt, completion) tokens per usage period, for usage windows; None before the first inference."""
    lease_queued: bool = False
    """Whether the lease heap holds an entry for this allocation (at most one, so the heap stays small)."""

    @property
    def active(self) -> bool:
        """Not ended: it holds its reservation (and is billed), serving or still provisioning."""
        return self.state is AllocationState.ACTIVE or self.state is AllocationState.PROVISIONING

    @property
    def ready(self) -> bool:
        return self.state is AllocationState.ACTIVE

    def ended_or(self, now: float) -> float:
        """When it ended, or `now` while it is active: the end of its held time so far."""
        return self.ended_at if self.ended_at is not None else now

    @property
    def expires_at(self) -> float | None:
        """When the lease runs out if nothing uses the allocation; None without a lease or once ended."""
        if self.ttl_seconds is None or not self.active:
            return None
        return self.last_used_at + self.ttl_seconds


class GpuWatcher(Protocol):
    """Told after a GPU's free capacity or health changed (the placement index keeps itself exact so)."""

    def gpu_changed(self, gpu: Gpu) -> None: ...


@dataclass(slots=True, eq=False)
class Gpu:
    gpu_id: str
    pool_id: str
    index: int
    tflops: float
    vram_mb: int
    _healthy: bool = True
    tflops_allocated: float = 0.0
    vram_mb_allocated: int = 0
    inflight: int = 0
    allocations: dict[str, Allocation] = field(default_factory=dict)
    watcher: GpuWatcher | None = field(default=None, repr=False)

    @property
    def healthy(self) -> bool:
        return self._healthy

    @healthy.setter
    def healthy(self, value: bool) -> None:
        self._healthy = value
        if self.watcher is not None:
            self.watcher.gpu_changed(self)

    @property
    def load(self) -> float:
        """Allocated compute over physical compute: above 1 the GPU is overcommitted."""
        return self.tflops_allocated / self.tflops

    def hold(self, alloc: Allocation) -> None:
        self.allocations[alloc.allocation_id] = alloc
        self.tflops_allocated += alloc.tflops
        self.vram_mb_allocated += alloc.vram_mb
        if self.watcher is not None:
            self.watcher.gpu_changed(self)

    def give_back(self, alloc: Allocation) -> None:
        del self.allocations[alloc.allocation_id]
        self.tflops_allocated -= alloc.tflops
        self.vram_mb_allocated -= alloc.vram_mb
        if not self.allocations:
            # Floating-point sums of tflops drift; an empty GPU holds exactly nothing.
            self.tflops_allocated = 0.0
        if self.watcher is not None:
            self.watcher.gpu_changed(self)


@dataclass(slots=True, eq=False)
class Pool:
    config: PoolConfig
    gpus: list[Gpu]

    @property
    def pool_id(self) -> str:
        return self.config.id

    def healthy_gpus(self) -> list[Gpu]:
        return [g for g in self.gpus if g.healthy]
