"""One push of the dashboard: the simulator aggregated into a document of bounded size.

Whatever the cluster's size, a snapshot holds: per pool, its totals and a *GPU map* of at most
`MAP_CELLS` cells (each cell the busiest band of the GPUs it stands for); one page of GPU rows; the
most recent allocations (at most `allocation_limit`) with counts by state; the oldest leaks; the fault
rules; the journal's tail; and the latency window. Building it is one pass over the GPUs and one over
the readable allocations (plus the leak report's), never a copy of the whole state, and nothing in it
grows with the number of GPUs. This module is the one place that knows how the simulator exposes load
(`gpu_work`): when the serving model changes, this is what changes.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from mock_server.dashboard.latency import LatencyWindow
from mock_server.sim.errors import NotFound
from mock_server.sim.model import Allocation, AllocationState, Gpu
from mock_server.sim.simulator import Simulator

MAP_CELLS = 256
"""The most cells a pool's GPU map has; a larger pool shares cells, ceil(gpus / MAP_CELLS) GPUs each."""
MAX_RULES = 100

GpuSort = Literal["index", "compute", "vram", "inflight"]

# A GPU's band, by how full it is; a map cell shows the highest band of its GPUs. One character each,
# so the page can show it as text as well as colour.
BANDS = {
    ".": "idle: no allocation",
    "1": "under half: compute and VRAM at most 50% allocated",
    "2": "over half: compute or VRAM above 50% allocated",
    "3": "full: compute or VRAM 100% allocated",
    "4": "overcommitted: more compute allocated than the GPU has",
    "x": "failed: takes no allocations",
}
_BAND_ORDER = {band: rank for rank, band in enumerate(BANDS)}


@dataclass(frozen=True, slots=True)
class View:
    """What one viewer asked to see: which GPUs and allocations, which journal entries."""

    pool_id: str | None = None
    gpu_sort: GpuSort = "index"
    gpu_offset: int = 0
    gpu_limit: int = 48
    allocation_state: str | None = None
    allocation_limit: int = 50
    leak_grace_s: float = 0.0
    leak_limit: int = 20


@dataclass(frozen=True, slots=True)
class JournalTail:
    entries: list[dict[str, Any]]
    """The newest matching entries, newest first."""
    total: int
    """Entries the journal holds."""


def band(gpu: Gpu) -> str:
    if not gpu.healthy:
        return "x"
    if not gpu.allocations:
        return "."
    compute = gpu.tflops_allocated / gpu.tflops
    vram = gpu.vram_mb_allocated / gpu.vram_mb
    if compute > 1 + 1e-9:
        return "4"
    fullest = max(compute, vram)
    if fullest >= 1 - 1e-9:
        return "3"
    return "2" if fullest > 0.5 else "1"


def gpu_work(gpu: Gpu, sim: Simulator) -> tuple[int, int]:
    """(in flight, queued) inferences on a GPU: every one begun and not finished, and of those the ones its
    model servers' schedulers hold waiting for a batch slot or KV-cache room (`mock_server/sim/serving`)."""
    if not gpu.inflight:
        return 0, 0
    _running, waiting = sim.serving.work(gpu.gpu_id, sim.clock.now())
    return gpu.inflight, waiting


def _ratio(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole else 0.0


def _pools(sim: Simulator) -> list[dict[str, Any]]:
    rows = []
    for stats in sim.pool_stats():
        gpus = sim.pools[stats.pool_id].gpus
        per_cell = max(1, math.ceil(len(gpus) / MAP_CELLS))
        cells: list[str] = []
        bands: Counter[str] = Counter()
        inflight = queued = 0
        for start in range(0, len(gpus), per_cell):
            top = "."
            for gpu in gpus[start : start + per_cell]:
                b = band(gpu)
                bands[b] += 1
                if _BAND_ORDER[b] > _BAND_ORDER[top]:
                    top = b
                if gpu.inflight:
                    running, waiting = gpu_work(gpu, sim)
                    inflight += running
                    queued += waiting
            cells.append(top)
        physical_tflops = sum(g.tflops for g in gpus)
        rows.append(
            {
                "pool_id": stats.pool_id,
                "gpu_type": stats.gpu_type,
                "gpus": len(gpus),
                "gpus_healthy": stats.gpus,
                "tflops_total": stats.tflops_total,
                "tflops_allocated": stats.tflops_allocated,
                "vram_mb_total": stats.vram_mb_total,
                "vram_mb_allocated": stats.vram_mb_allocated,
                "overcommit_ratio": stats.overcommit_ratio,
                "compute_level": _ratio(stats.tflops_allocated, physical_tflops),
                "vram_level": _ratio(stats.vram_mb_allocated, stats.vram_mb_total),
                "allocations_active": stats.allocations_active,
                "inflight": inflight,
                "queued": queued,
                "bands": {b: bands.get(b, 0) for b in BANDS},
                "map": "".join(cells),
                "gpus_per_cell": per_cell,
            }
        )
    return rows


def _gpu_rows(sim: Simulator, view: View) -> dict[str, Any]:
    gpus: list[Gpu] | Iterable[Gpu]
    if view.pool_id is not None:
        gpus = sim.pools[view.pool_id].gpus
        total = len(gpus)
    else:
        gpus = sim.gpus.values()
        total = len(sim.gpus)
    end = view.gpu_offset + view.gpu_limit
    keys: dict[str, Callable[[Gpu], float]] = {
        "compute": lambda g: g.tflops_allocated / g.tflops,
        "vram": lambda g: g.vram_mb_allocated / g.vram_mb,
        "inflight": lambda g: g.inflight,
    }
    if view.gpu_sort == "index":
        page = list(itertools.islice(gpus, view.gpu_offset, end))
    else:
        # The top `end` by the key, in O(gpus × log end): no sort of the whole pool.
        page = heapq.nlargest(end, gpus, key=keys[view.gpu_sort])[view.gpu_offset :]
    rows = []
    for gpu in page:
        inflight, queued = gpu_work(gpu, sim)
        rows.append(
            {
                "gpu_id": gpu.gpu_id,
                "pool_id": gpu.pool_id,
                "healthy": gpu.healthy,
                "band": band(gpu),
                "tflops": gpu.tflops,
                "tflops_allocated": round(gpu.tflops_allocated, 6),
                "vram_mb": gpu.vram_mb,
                "vram_mb_allocated": gpu.vram_mb_allocated,
                "allocations": len(gpu.allocations),
                "inflight": inflight,
                "queued": queued,
            }
        )
    return {
        "pool_id": view.pool_id,
        "sort": view.gpu_sort,
        "offset": view.gpu_offset,
        "limit": view.gpu_limit,
        "total": total,
        "rows": rows,
    }


def _allocation_row(alloc: Allocation, now: float, leak: str | None) -> dict[str, Any]:
    expires = alloc.expires_at
    end = alloc.ended_at if alloc.ended_at is not None else now
    return {
        "allocation_id": alloc.allocation_id,
        "tenant_id": alloc.tenant_id,
        "pool_id": alloc.pool_id,
        "gpu_id": alloc.gpu_id,
        "model": alloc.model,
        "tflops": alloc.tflops,
        "vram_mb": alloc.vram_mb,
        "priority": alloc.priority,
        "state": alloc.state.value,
        "end_reason": alloc.end_reason.value if alloc.end_reason is not None else None,
        "age_s": round(now - alloc.created_at, 3),
        "held_s": round(end - alloc.created_at, 3),
        "ttl_seconds": alloc.ttl_seconds,
        "lease_left_s": round(expires - now, 3) if expires is not None else None,
        "inflight": alloc.inflight,
        "leak": leak,
    }


def _allocations(sim: Simulator, view: View, now: float, leaks: dict[str, str]) -> dict[str, Any]:
    by_state: Counter[AllocationState] = Counter(a.state for a in sim.allocations.values())
    wanted = AllocationState(view.allocation_state) if view.allocation_state is not None else None
    # Newest first: the readable allocations are kept in creation order.
    newest = (a for a in reversed(sim.allocations.values()) if wanted is None or a.state is wanted)
    rows = [
        _allocation_row(a, now, leaks.get(a.allocation_id)) for a in itertools.islice(newest, view.allocation_limit)
    ]
    return {
        "total": len(sim.allocations),
        "by_state": {s.value: by_state.get(s, 0) for s in AllocationState},
        "state": view.allocation_state,
        "rows": rows,
    }


def _leaks(found: list[tuple[Allocation, str]], view: View, now: float) -> dict[str, Any]:
    reasons = Counter(reason for _, reason in found)
    return {
        "grace_s": view.leak_grace_s,
        "count": len(found),
        "still_active": reasons.get("still_active", 0),
        "expired_unreleased": reasons.get("expired_unreleased", 0),
        "rows": [
            {
                "allocation_id": alloc.allocation_id,
                "tenant_id": alloc.tenant_id,
                "pool_id": alloc.pool_id,
                "state": alloc.state.value,
                "reason": reason,
                "age_s": round(now - alloc.created_at, 3),
                "request_id": alloc.request_id,
            }
            for alloc, reason in found[: view.leak_limit]
        ],
    }


def build(
    sim: Simulator,
    view: View,
    *,
    clock: dict[str, Any],
    latency: LatencyWindow,
    journal: JournalTail,
    allocates_waiting: int,
) -> dict[str, Any]:
    """The dashboard document (`Dashboard` in contracts/admin.v1.yaml). `clock` is the control plane's
    clock view; `allocates_waiting` the allocate requests queued for capacity right now."""
    if view.pool_id is not None and view.pool_id not in sim.pools:
        raise NotFound(f"No pool {view.pool_id}.")
    sim.tick()
    now = sim.clock.now()
    found = sim.leaks(view.leak_grace_s)
    pools = _pools(sim)
    rules = sim.faults.rules
    return {
        "seed": sim.seed,
        "clock": clock,
        "totals": {
            "pools": len(pools),
            "gpus": sum(p["gpus"] for p in pools),
            "gpus_healthy": sum(p["gpus_healthy"] for p in pools),
            "allocations_active": sum(p["allocations_active"] for p in pools),
            "inflight": sum(p["inflight"] for p in pools),
            "queued": sum(p["queued"] for p in pools),
            "allocates_waiting": allocates_waiting,
            "leaks": len(found),
            "rules": len(rules),
        },
        "bands": dict(BANDS),
        "pools": pools,
        "gpus": _gpu_rows(sim, view),
        "allocations": _allocations(sim, view, now, {a.allocation_id: reason for a, reason in found}),
        "leaks": _leaks(found, view, now),
        "rules": [r.describe() for r in rules[:MAX_RULES]],
        "journal": {"total": journal.total, "entries": journal.entries},
        "latency": latency.view(),
    }
