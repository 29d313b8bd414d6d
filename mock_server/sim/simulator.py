"""The simulator: HostedAI's state and rules, with no HTTP in sight.

The HTTP layer parses a request, calls one method here and renders what comes back (or the `SimError`
raised). Every method first lets simulated time catch up (`tick`): leases expire, ended allocations
leave the retention window, idempotency records age out. Determinism: given the clock and the sequence
of calls, outputs and timings are the same on every run; with an explicit seed, ids are too. Without
one, ids come from fresh entropy at every start and reset, so they never repeat across restarts.

Memory is bounded whatever the number of calls: ended allocations are forgotten past the retention
window (in time and in count), usage beyond it survives as exact aggregates (`ledger.py`), and every
index (per tenant, per label, leases) holds only allocations still kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import math
import random
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from mock_server.config import MockConfig, ModelConfig, PoolConfig
from mock_server.sim import placement, textgen
from mock_server.sim.capacity_index import CapacityIndex, capacity_index
from mock_server.sim.clock import Clock
from mock_server.sim.errors import (
    AllocationNotActive,
    CapacityExhausted,
    FieldProblem,
    InvalidInput,
    NotFound,
    NotReady,
    PoolNotPermitted,
    QuotaExceeded,
    RateLimited,
    Unavailable,
)
from mock_server.sim.faults import FaultEngine, FaultRule
from mock_server.sim.idempotency import IdempotencyStore, as_first_answered
from mock_server.sim.ledger import Ledger, UsageRecord, UsageTotals, Window
from mock_server.sim.model import END_STATE, Allocation, AllocationState, EndReason, Gpu, Pool
from mock_server.sim.ratelimit import TokenBucket
from mock_server.sim.scenarios import scenario_rules
from mock_server.sim.serving import workload
from mock_server.sim.serving.service import QueueFull, Request, Serving, Timeline

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AllocationSpec:
    pool_id: str
    model: str
    tflops: float
    vram_mb: int
    overcommit: bool = False
    priority: int = 5
    ttl_seconds: int | None = None
    labels: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AllocateResult:
    allocation: Allocation
    """The allocation as it was when created (for a replay: as first answered)."""
    replayed: bool
    provision_s: float
    preempted: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InferenceSpec:
    allocation_id: str
    prompt: str
    max_tokens: int | None = None
    temperature: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    model: str | None = None


@dataclass(slots=True)
class InferencePlan:
    """An inference from its checks to its end: the answer's text, and its request on the model server."""

    inference_id: str
    allocation: Allocation
    gpu: Gpu
    model: str
    tokens: list[str]
    finish_reason: str
    prompt_tokens: int
    overhead_s: float
    """The frontend's time before the model server sees it (the HTTP layer waits it out first)."""
    request: Request | None = None
    timeline: Timeline | None = None
    """What it took, once known (from the model server, or projected on the manual clock)."""
    finished: bool = False

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens)

    @property
    def output(self) -> str:
        return "".join(self.tokens)


@dataclass(frozen=True, slots=True)
class PoolStats:
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


@dataclass(slots=True)
class _TenantUsage:
    active: int = 0
    tflops: float = 0.0


# Stale lease entries tolerated before the heap is compacted, at least (see `_compact_leases`).
STALE_LEASES_KEPT = 1024


def fingerprint(body: object) -> str:
    """A stable digest of a request body, for telling a replay from a different request."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class UsagePage:
    records: list[UsageRecord]
    next_seq: int | None
    """The seq to continue after, or None on the last page."""
    totals: UsageTotals
    """Of the whole window, not only of this page."""
    window: Window


def paginate(
    allocations: Iterable[Allocation], after_seq: int, limit: int | None
) -> tuple[list[Allocation], int | None]:
    """Up to `limit` of the allocations (in creation order) after `after_seq`, and the seq to continue
    after (None when nothing is left)."""
    page: list[Allocation] = []
    for alloc in allocations:
        if alloc.seq <= after_seq:
            continue
        if len(page) == limit:
            return page, page[-1].seq
        page.append(alloc)
    return page, None


def _fresh_entropy() -> int:
    return secrets.randbits(64)


class Simulator:
    def __init__(
        self, config: MockConfig, clock: Clock, seed: int | None = None, *, entropy: Callable[[], int] = _fresh_entropy
    ) -> None:
        """`entropy` seeds the id streams of a run without an explicit seed (injectable for tests)."""
        self.config = config
        self.clock = clock
        self._entropy = entropy
        self.on_allocation_ended: list[Callable[[Allocation], None]] = []
        self.on_capacity_freed: list[Callable[[str], None]] = []
        self.on_gpu_changed: list[Callable[[str], None]] = []
        """Told a GPU's id when what runs on it changed in a way that can hasten the requests on it (an
        inference left before its end, an allocation left the GPU); not when one arrives, which only
        delays them."""
        self.reset(seed)

    # ---- lifecycle ---------------------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> None:
        """Back to the configured state: no allocations, no usage, fresh random streams. With a seed
        (this one, else the configured one) every stream replays, ids included; without, ids are new."""
        explicit = self.config.simulation.seed if seed is None else seed
        self.seeded = explicit is not None
        self.seed = explicit if explicit is not None else 0
        cell = self.config.simulation.cell
        ids = textgen.stable_seed("ids", self.seed) if self.seeded else self._entropy()
        # A cell's name enters the seed (so request ids differ between cells too) and prefixes the ids
        # it issues (so two cells can never issue the same allocation id, whatever their seeds).
        self.id_seed = ids if cell is None else textgen.stable_seed("ids", ids, cell)
        """Seeds every id stream: allocation and inference ids here, request ids in the HTTP layer."""
        self._id_prefix = "" if cell is None else f"{cell}_"
        self._rng_ids = random.Random(self.id_seed)
        self._rng_lifecycle = random.Random(textgen.stable_seed("lifecycle", self.seed))
        self._rng_output = random.Random(textgen.stable_seed("output", self.seed))
        self.pools: dict[str, Pool] = {}
        self.gpus: dict[str, Gpu] = {}
        self.placement_index: dict[str, CapacityIndex] = {}
        for pc in self.config.pools:
            gpus = [
                Gpu(
                    gpu_id=f"{pc.id}-gpu-{i}",
                    pool_id=pc.id,
                    index=i,
                    tflops=pc.tflops_per_gpu,
                    vram_mb=pc.vram_mb_per_gpu,
                )
                for i in range(pc.gpus)
            ]
            self.pools[pc.id] = Pool(config=pc, gpus=gpus)
            self.gpus.update((g.gpu_id, g) for g in gpus)
            # Watches the pool's GPUs from here on, so placement needs no scan of them.
            self.placement_index[pc.id] = capacity_index(pc, gpus)
        self.models: dict[str, ModelConfig] = dict(self.config.models)
        self.allocations: dict[str, Allocation] = {}
        """Every allocation still kept: active, or ended within the retention window."""
        self._by_tenant: dict[str, dict[str, Allocation]] = defaultdict(dict)
        # tenant -> (label key, value) -> the kept allocations carrying it, in creation order.
        self._by_label: dict[str, dict[tuple[str, str], dict[str, Allocation]]] = defaultdict(dict)
        self._tenant_usage: dict[str, _TenantUsage] = defaultdict(_TenantUsage)
        self._tenant_of_key = {k: t for t, tc in self.config.tenants.items() for k in tc.api_keys}
        # Pool segregation: the pools each tenant's tier may use (a pool without `tiers` serves every tier).
        self._tenant_pools = {
            t: frozenset(p.id for p in self.config.pools if p.tiers is None or tc.tier in p.tiers)
            for t, tc in self.config.tenants.items()
        }
        self._buckets: dict[str, TokenBucket] = {}
        self._leases: list[tuple[float, int, Allocation]] = []
        # Entries of `_leases` whose allocation has ended: they wait for their due time to be popped, and
        # keep the ended allocation alive meanwhile, so the heap is compacted when they pile up.
        self._stale_leases = 0
        # Ended allocations by end time (a heap: a lease may end in the past of the last release).
        self._ended: list[tuple[float, int, Allocation]] = []
        simulation = self.config.simulation
        self.idempotency = IdempotencyStore(simulation.idempotency_ttl_seconds, simulation.idempotency_max_keys)
        prices = {p.id: p.price_per_tflops_hour for p in self.config.pools}
        self.ledger = Ledger(simulation.usage_period_seconds, prices)
        self.serving = Serving(self.config, self.seed, on_change=self._gpu_changed)
        # Allocations becoming ready, and allocations ending after a preemption's grace, by time.
        self._readiness: list[tuple[float, int, Allocation]] = []
        self._endings: list[tuple[float, int, Allocation]] = []
        self._seq = 0
        self.clock.restart()
        self.faults = FaultEngine(rng=random.Random(textgen.stable_seed("faults", self.seed)))
        for spec in self.config.faults:
            self.faults.add(spec, source="config")
        for name in self.config.scenarios:
            self.apply_scenario(name)

    def apply_scenario(self, name: str) -> list[FaultRule]:
        """Add a named scenario's rules, their windows starting now."""
        return [self.faults.add(spec, source=f"scenario:{name}") for spec in scenario_rules(name, self.clock.now())]

    def tick(self) -> None:
        """Let simulated time catch up: allocations become ready, preempted ones end after their grace,
        idle leases expire, what is past retention is forgotten."""
        now = self.clock.now()
        while self._readiness and self._readiness[0][0] <= now:
            _, _, alloc = heapq.heappop(self._readiness)
            if alloc.state is AllocationState.PROVISIONING:
                alloc.state = AllocationState.ACTIVE
                alloc.last_used_at = max(alloc.last_used_at, alloc.ready_at or now)
        while self._endings and self._endings[0][0] <= now:
            due, _, alloc = heapq.heappop(self._endings)
            if alloc.active:
                self._end(alloc, EndReason.PREEMPTED, preempted_by=alloc.preempted_by, at=due)
        while self._leases and self._leases[0][0] <= now:
            _, _, alloc = heapq.heappop(self._leases)
            alloc.lease_queued = False
            lease_due = alloc.expires_at  # None once ended
            if lease_due is None:
                self._stale_leases -= 1
                continue
            if alloc.inflight:
                # Not idle: an inference is running; `finish_inference` queues it again.
                continue
            if lease_due > now:
                # Used since the entry was queued: look again when the lease now runs out.
                self._push_lease(alloc)
                continue
            # It ended when the lease ran out, not when the simulator next looked: billing and
            # retention must not depend on when requests happen to arrive.
            self._end(alloc, EndReason.EXPIRED, at=lease_due)
        simulation = self.config.simulation
        retention, kept = simulation.retention_seconds, simulation.retention_max_allocations
        ended = self._ended
        while ended and (len(ended) > kept or ended[0][0] + retention <= now):
            self._forget(heapq.heappop(ended)[2])
        self.idempotency.expire(now)

    def _forget(self, gone: Allocation) -> None:
        """An ended allocation leaves the retention window: only its usage aggregates remain."""
        self.allocations.pop(gone.allocation_id, None)
        self._by_tenant[gone.tenant_id].pop(gone.allocation_id, None)
        by_label = self._by_label[gone.tenant_id]
        for label in gone.labels.items():
            holders = by_label.get(label)
            if holders is not None:
                holders.pop(gone.allocation_id, None)
                if not holders:
                    del by_label[label]

    # ---- tenants -----------------------------------------------------------------------------------

    def tenant_for_key(self, api_key: str) -> str | None:
        return self._tenant_of_key.get(api_key)

    def pools_of(self, tenant_id: str) -> frozenset[str]:
        """The pools the tenant's tier may use."""
        return self._tenant_pools[tenant_id]

    def _pool(self, pool_id: str) -> Pool:
        pool = self.pools.get(pool_id)
        if pool is None:
            raise NotFound(f"No pool {pool_id}.")
        return pool

    def _pool_for(self, tenant_id: str, pool_id: str) -> Pool:
        """The pool, if it exists (NotFound) and serves the tenant's tier (PoolNotPermitted)."""
        pool = self._pool(pool_id)
        if pool_id not in self._tenant_pools[tenant_id]:
            tier = self.config.tenants[tenant_id].tier
            serves = ", ".join(pool.config.tiers or ())
            raise PoolNotPermitted(f"Pool {pool_id} serves the tiers {serves}; tenant {tenant_id} is {tier}.")
        return pool

    def take_rate_token(self, tenant_id: str) -> None:
        """Charge one request to the tenant's rate limit; raises RateLimited when it is spent."""
        limit = self.config.tenants[tenant_id].rate_limit
        if limit is None:
            return
        now = self.clock.now()
        bucket = self._buckets.get(tenant_id)
        if bucket is None:
            bucket = self._buckets[tenant_id] = TokenBucket(limit.rps, limit.burst, now)
        wait = bucket.take(now)
        if wait:
            raise RateLimited(f"Tenant {tenant_id} exceeded {limit.rps:g} requests per second.", retry_after=wait)

    # ---- allocations -------------------------------------------------------------------------------

    def allocate(
        self,
        tenant_id: str,
        spec: AllocationSpec,
        *,
        request_id: str,
        idempotency_key: str | None = None,
        body_fingerprint: str | None = None,
    ) -> AllocateResult:
        self.tick()
        now = self.clock.now()
        key = idempotency_key if self.config.simulation.idempotency else None
        # Without the request's own digest, the spec's: the same key with another spec still conflicts.
        digest = (body_fingerprint or fingerprint(dataclasses.asdict(spec))) if key else ""
        if key:
            first = self.idempotency.replay(tenant_id, key, digest)
            if first is not None:
                return AllocateResult(allocation=first, replayed=True, provision_s=0.0)

        pool = self._pool_for(tenant_id, spec.pool_id)
        model = self.models.get(spec.model)
        if model is None:
            raise NotFound(f"No model {spec.model}.")
        self._check_satisfiable(pool, model, spec)
        self._check_quota(tenant_id, spec)

        demand = placement.Demand(spec.tflops, spec.vram_mb, spec.overcommit, spec.priority)
        gpu = self.placement_index[pool.pool_id].choose(demand)
        victims: list[Allocation] = []
        if gpu is None:
            preemption = placement.plan_preemption(pool.config, pool.gpus, demand)
            if preemption is None:
                raise CapacityExhausted(
                    f"No GPU in {pool.pool_id} has {spec.vram_mb} MB VRAM and {spec.tflops:g} TFLOPS free.",
                    retry_after=self.config.simulation.capacity_retry_after_s,
                )
            gpu, victims = preemption.gpu, preemption.victims

        self._seq += 1
        alloc = Allocation(
            allocation_id=f"alloc_{self._id_prefix}{self._rng_ids.getrandbits(64):016x}",
            tenant_id=tenant_id,
            pool_id=pool.pool_id,
            gpu_id=gpu.gpu_id,
            model=spec.model,
            tflops=spec.tflops,
            vram_mb=spec.vram_mb,
            overcommit=spec.overcommit,
            priority=spec.priority,
            labels=dict(spec.labels),
            created_at=now,
            ttl_seconds=spec.ttl_seconds,
            request_id=request_id,
            seq=self._seq,
            last_used_at=now,
        )
        ready_at = self._ready_at(pool.config, now, self._preempt(victims, alloc, pool.config, now))
        if ready_at > now:
            alloc.state, alloc.ready_at = AllocationState.PROVISIONING, ready_at
            heapq.heappush(self._readiness, (ready_at, alloc.seq, alloc))
        gpu.hold(alloc)
        self.serving.attach(pool.config, gpu.gpu_id, alloc.allocation_id, alloc.model, alloc.vram_mb, now)
        self._kill_for_memory(pool.config, gpu, alloc)
        self.allocations[alloc.allocation_id] = alloc
        self._by_tenant[tenant_id][alloc.allocation_id] = alloc
        by_label = self._by_label[tenant_id]
        for label in alloc.labels.items():
            holders = by_label.get(label)
            if holders is None:
                holders = by_label[label] = {}
            holders[alloc.allocation_id] = alloc
        usage = self._tenant_usage[tenant_id]
        usage.active += 1
        usage.tflops += alloc.tflops
        self.ledger.open(alloc)
        self._push_lease(alloc)
        if key:
            self.idempotency.remember(tenant_id, key, digest, alloc, now)
        return AllocateResult(
            allocation=as_first_answered(alloc),
            replayed=False,
            provision_s=pool.config.provision_ms / 1000,
            preempted=tuple(v.allocation_id for v in victims),
        )

    def _preempt(self, victims: list[Allocation], by: Allocation, pool: PoolConfig, now: float) -> float:
        """Preempt the victims: their capacity goes to `by` now; each serves out the pool's grace period
        and then ends. Returns when the last of them is gone."""
        grace = pool.on_preemption.grace_s
        for victim in victims:
            if grace <= 0:
                self._end(victim, EndReason.PREEMPTED, preempted_by=by.allocation_id)
                continue
            self._return_capacity(victim)
            victim.preempted_by, victim.ends_at = by.allocation_id, now + grace
            heapq.heappush(self._endings, (now + grace, victim.seq, victim))
        return now + grace if victims and grace > 0 else now

    def _kill_for_memory(self, pool: PoolConfig, gpu: Gpu, newcomer: Allocation) -> None:
        """hosted·ai temporal mode pages VRAM beyond the GPU's; past the failure ratio a co-tenant is
        killed (lowest priority first, youngest first among equals; never the newcomer)."""
        if pool.contention != "temporal":
            return
        limit = gpu.vram_mb * pool.vram_failure_ratio
        others = sorted((a for a in gpu.allocations.values() if a is not newcomer), key=lambda a: (a.priority, -a.seq))
        for victim in others:
            if gpu.vram_mb_allocated <= limit:
                return
            self._end(victim, EndReason.OOM)

    def _ready_at(self, pool: PoolConfig, now: float, gpu_free_at: float) -> float:
        """When a new allocation serves: the GPU attached (after any victim left), then the model loaded."""
        lifecycle = pool.lifecycle
        attached = max(now + lifecycle.provision_s.sample(self._rng_lifecycle), gpu_free_at)
        return attached + lifecycle.load_s.sample(self._rng_lifecycle)

    def _return_capacity(self, alloc: Allocation) -> None:
        if not alloc.holds_capacity:
            return
        alloc.holds_capacity = False
        self.gpus[alloc.gpu_id].give_back(alloc)
        usage = self._tenant_usage[alloc.tenant_id]
        usage.active -= 1
        usage.tflops = usage.tflops - alloc.tflops if usage.active else 0.0
        for freed in self.on_capacity_freed:
            freed(alloc.pool_id)

    def _check_satisfiable(self, pool: Pool, model: ModelConfig, spec: AllocationSpec) -> None:
        problems: list[FieldProblem] = []
        gpu_type = pool.config.gpu_type
        if pool.pool_id not in model.pools:
            problems.append(
                FieldProblem("/body/requirements/model", f"unsatisfiable: {spec.model} is not served in {pool.pool_id}")
            )
        if spec.vram_mb < model.vram_mb:
            problems.append(
                FieldProblem(
                    "/body/requirements/vram_mb",
                    f"unsatisfiable: {spec.model} needs at least {model.vram_mb} MB of VRAM",
                )
            )
        elif pool.pool_id in model.pools and self.serving.kv_capacity(spec.model, gpu_type, spec.vram_mb) <= 0:
            profile = self.serving.profile(spec.model, gpu_type)
            problems.append(
                FieldProblem(
                    "/body/requirements/vram_mb",
                    f"unsatisfiable: {spec.vram_mb} MB cannot hold {spec.model}'s weights and runtime on "
                    f"{gpu_type} ({profile.weights_mb + profile.overhead_mb:g} MB) and any KV cache",
                )
            )
        demand = placement.Demand(spec.tflops, spec.vram_mb, spec.overcommit, spec.priority)
        if not any(placement.could_ever_fit(pool.config, g, demand) for g in pool.gpus[:1]):
            gpu = pool.gpus[0]
            problems.append(
                FieldProblem(
                    "/body/requirements",
                    f"unsatisfiable: no GPU of {pool.pool_id} could ever hold {spec.tflops:g} TFLOPS and "
                    f"{spec.vram_mb} MB (each has {gpu.tflops:g} TFLOPS, overcommit ratio "
                    f"{pool.config.overcommit_ratio:g}, and {gpu.vram_mb} MB)",
                )
            )
        if problems:
            raise InvalidInput("No allocation could ever satisfy these requirements.", problems)

    def _check_quota(self, tenant_id: str, spec: AllocationSpec) -> None:
        quota = self.config.tenants[tenant_id].quota
        usage = self._tenant_usage[tenant_id]
        if quota.max_active_allocations is not None and usage.active + 1 > quota.max_active_allocations:
            raise QuotaExceeded(
                f"Tenant {tenant_id} may hold at most {quota.max_active_allocations} active allocations."
            )
        if quota.max_tflops is not None and usage.tflops + spec.tflops > quota.max_tflops + 1e-9:
            raise QuotaExceeded(f"Tenant {tenant_id} may hold at most {quota.max_tflops:g} TFLOPS.")

    def _compact_leases(self) -> None:
        """Drop the entries of ended allocations from the lease heap. Without this, a lease of T seconds at
        R allocations a second keeps T × R ended allocations alive on the heap (300,000 for a 300 s lease
        at 1,000 a second); with it, stale entries are at most half the heap (amortised O(1) per end)."""
        live = []
        for entry in self._leases:
            if entry[2].active:
                live.append(entry)
            else:
                entry[2].lease_queued = False
        heapq.heapify(live)
        self._leases = live
        self._stale_leases = 0

    def _push_lease(self, alloc: Allocation) -> None:
        due = alloc.expires_at
        if due is not None and not alloc.lease_queued:
            alloc.lease_queued = True
            heapq.heappush(self._leases, (due, alloc.seq, alloc))

    def get_allocation(self, tenant_id: str, allocation_id: str) -> Allocation:
        self.tick()
        alloc = self._by_tenant[tenant_id].get(allocation_id)
        if alloc is None:
            # Another tenant's allocation is indistinguishable from one that does not exist.
            raise NotFound(f"No allocation {allocation_id}.")
        return alloc

    def list_allocations(
        self,
        tenant_id: str,
        *,
        states: Iterable[str] = (),
        labels: dict[str, str] | None = None,
        limit: int = 100,
        after_seq: int = 0,
    ) -> tuple[list[Allocation], int | None]:
        """A page of the tenant's readable allocations in creation order, and the seq to continue after.
        Served from an index: a label's holders, or the live allocations when only active ones are asked
        for; never a scan of everything kept."""
        self.tick()
        wanted = {AllocationState(s) for s in states}
        candidates: Iterable[Allocation]
        if labels:
            by_label = self._by_label[tenant_id]
            candidates = min((by_label.get(item, {}) for item in labels.items()), key=len).values()
        elif wanted == {AllocationState.ACTIVE}:
            candidates = self.ledger.live(tenant_id)
        else:
            candidates = self._by_tenant[tenant_id].values()
        return paginate(
            (
                a
                for a in candidates
                if (not wanted or a.state in wanted)
                and not (labels and any(a.labels.get(k) != v for k, v in labels.items()))
            ),
            after_seq,
            limit,
        )

    def release(self, tenant_id: str, allocation_id: str) -> Allocation:
        """End the allocation; releasing one that already ended changes nothing."""
        alloc = self.get_allocation(tenant_id, allocation_id)
        if alloc.active:
            self._end(alloc, EndReason.RELEASED)
        return alloc

    def _end(
        self, alloc: Allocation, reason: EndReason, *, preempted_by: str | None = None, at: float | None = None
    ) -> None:
        alloc.state = END_STATE[reason]
        alloc.end_reason = reason
        alloc.ended_at = self.clock.now() if at is None else at
        alloc.preempted_by = preempted_by
        # Its model server goes with it; requests still running on it are failed by their handlers.
        self.serving.detach(alloc.gpu_id, alloc.allocation_id, self.clock.now())
        self.ledger.close(alloc)
        if alloc.lease_queued:
            self._stale_leases += 1
            if self._stale_leases > max(STALE_LEASES_KEPT, len(self._leases) // 2):
                self._compact_leases()
        heapq.heappush(self._ended, (alloc.ended_at, alloc.seq, alloc))
        for listener in self.on_allocation_ended:
            listener(alloc)
        self._return_capacity(alloc)

    # ---- failures ----------------------------------------------------------------------------------

    def gpu(self, gpu_id: str) -> Gpu:
        gpu = self.gpus.get(gpu_id)
        if gpu is None:
            raise NotFound(f"No GPU {gpu_id}.")
        return gpu

    def fail_gpu(self, gpu_id: str) -> list[str]:
        """An Xid error: the GPU takes no more work, and every allocation on it ends `failed`
        (their running inferences fail). Returns the ids of the allocations that failed."""
        gpu = self.gpu(gpu_id)
        self.tick()
        gpu.healthy = False
        victims = sorted(gpu.allocations.values(), key=lambda a: a.seq)
        for alloc in victims:
            self._end(alloc, EndReason.GPU_FAILURE)
        return [a.allocation_id for a in victims]

    def recover_gpu(self, gpu_id: str) -> Gpu:
        gpu = self.gpu(gpu_id)
        gpu.healthy = True
        for freed in self.on_capacity_freed:
            freed(gpu.pool_id)
        return gpu

    def leaks(self, grace_s: float, tenant_id: str | None = None) -> list[tuple[Allocation, str]]:
        """Allocations a client forgot: still active for `grace_s` or longer (at grace 0, everything still
        held, however young), or ended by their lease running out instead of by a release; oldest first."""
        self.tick()
        now = self.clock.now()
        found: list[tuple[Allocation, str]] = []
        kept = self.allocations.values() if tenant_id is None else self._by_tenant[tenant_id].values()
        for alloc in kept:
            if alloc.active and now - alloc.created_at >= grace_s:
                found.append((alloc, "still_active"))
            elif alloc.end_reason is EndReason.EXPIRED:
                found.append((alloc, "expired_unreleased"))
        found.sort(key=lambda pair: pair[0].seq)
        return found

    # ---- inference ---------------------------------------------------------------------------------

    def start_inference(self, tenant_id: str, spec: InferenceSpec) -> InferencePlan:
        """Check the request and decide its answer (text, length); the allocation counts as busy until
        `finish_inference`. The request reaches the model server with `submit_inference`."""
        alloc = self.get_allocation(tenant_id, spec.allocation_id)
        if not alloc.active:
            raise AllocationNotActive(f"Allocation {alloc.allocation_id} is {alloc.state.value}.", alloc.state.value)
        model = self.models[alloc.model]
        pool = self.pools[alloc.pool_id].config
        problems: list[FieldProblem] = []
        if spec.model is not None and spec.model != alloc.model:
            problems.append(FieldProblem("/body/model", f"the allocation runs {alloc.model}, not {spec.model}"))
        max_tokens = model.max_tokens if spec.max_tokens is None else spec.max_tokens
        if max_tokens > model.max_tokens:
            problems.append(
                FieldProblem("/body/max_tokens", f"{max_tokens} is above {alloc.model}'s limit of {model.max_tokens}")
            )
        prompt_tokens = workload.count_prompt_tokens(spec.prompt, model.chars_per_token)
        if prompt_tokens + min(max_tokens, model.max_tokens) > model.context_tokens:
            problems.append(
                FieldProblem(
                    "/body/prompt",
                    f"{prompt_tokens} prompt tokens plus max_tokens {max_tokens} exceed {alloc.model}'s "
                    f"context of {model.context_tokens} tokens",
                )
            )
        kv = self.serving.kv_capacity(alloc.model, pool.gpu_type, alloc.vram_mb)
        if prompt_tokens + 1 > kv:
            problems.append(
                FieldProblem(
                    "/body/prompt",
                    f"{prompt_tokens} prompt tokens do not fit the allocation's KV cache of {kv} tokens "
                    f"({alloc.vram_mb} MB less {alloc.model}'s weights and runtime)",
                )
            )
        if problems:
            raise InvalidInput("The inference request cannot be served by this allocation.", problems)
        if not alloc.ready:
            wait = max(1, math.ceil((alloc.ready_at or 0) - self.clock.now()))
            detail = f"Allocation {alloc.allocation_id} is still provisioning: its model server is loading."
            raise NotReady(detail, retry_after=wait)

        seed = spec.seed
        if seed is None:
            # Without a seed, a zero temperature is greedy (same prompt, same output); otherwise draw one
            # from the simulator's seeded stream, so outputs vary yet replay exactly.
            seed = 0 if spec.temperature == 0 else self._rng_output.getrandbits(32)
        draws = textgen.Draws(alloc.model, spec.prompt, seed)
        natural = workload.natural_length(draws, model.output_tokens, model.max_tokens)
        generation = textgen.generate(draws, min(natural, max_tokens), list(spec.stop))
        finish = "length" if natural > max_tokens and generation.finish_reason == "length" else "stop"
        profile = self.serving.profile(alloc.model, pool.gpu_type)
        gpu = self.gpus[alloc.gpu_id]
        alloc.inflight += 1
        gpu.inflight += 1
        alloc.last_used_at = self.clock.now()
        return InferencePlan(
            inference_id=f"inf_{self._id_prefix}{self._rng_ids.getrandbits(64):016x}",
            allocation=alloc,
            gpu=gpu,
            model=alloc.model,
            tokens=generation.tokens,
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            overhead_s=profile.request_overhead_ms / 1000,
        )

    def submit_inference(self, plan: InferencePlan) -> None:
        """The request reaches the allocation's model server now. Raises AllocationNotActive when the
        allocation ended meanwhile, Unavailable when the server's waiting queue is full."""
        plan.request = self._onto_model_server(plan, self.serving.start)

    def answer_at_once(self, plan: InferencePlan) -> Timeline:
        """`submit_inference` and `project_inference` in one, for a request answered whole at the instant
        it came (the manual clock's plain answer); `finish_inference` follows as usual. Raises as
        `submit_inference` does."""
        plan.timeline = self._onto_model_server(plan, self.serving.answer_at_once)
        return plan.timeline

    def _onto_model_server(self, plan: InferencePlan, call: Callable[[str, str, int, int, float, float], T]) -> T:
        """`call` (a `Serving` method) with the request as its allocation's model server sees it."""
        alloc = plan.allocation
        if not alloc.active:
            raise AllocationNotActive(f"Allocation {alloc.allocation_id} is {alloc.state.value}.", alloc.state.value)
        try:
            return call(
                alloc.gpu_id,
                alloc.allocation_id,
                plan.prompt_tokens,
                max(1, plan.completion_tokens),
                plan.overhead_s,
                self.clock.now(),
            )
        except QueueFull as exc:
            raise self._refused(alloc, exc) from None

    def _refused(self, alloc: Allocation, full: QueueFull) -> Unavailable:
        return Unavailable(
            f"Allocation {alloc.allocation_id}'s model server refuses more work: {full}.",
            retry_after=self.config.simulation.capacity_retry_after_s,
        )

    def inference_progress(self, plan: InferencePlan) -> Timeline:
        """How far the request is now (tokens generated so far; times once reached)."""
        assert plan.request is not None
        plan.timeline = self.serving.progress(plan.request, self.clock.now())
        return plan.timeline

    def inference_next_change(self, plan: InferencePlan, *, every_token: bool = True) -> float:
        """When to look at the request again (simulated time): its next token or its end, as planned now
        (without `every_token`: the next moment it could end, for an answer sent whole)."""
        assert plan.request is not None
        return self.serving.next_change_t(plan.request, every_token=every_token)

    def project_inference(self, plan: InferencePlan) -> Timeline:
        """The request's whole future if nothing else arrives: what the manual clock reports at once."""
        assert plan.request is not None
        plan.timeline = self.serving.project(plan.request)
        return plan.timeline

    def finish_inference(self, plan: InferencePlan, tokens_delivered: int) -> None:
        """The inference is over: it delivered this many tokens (all of them, or fewer when cut short)."""
        if plan.finished:
            return
        plan.finished = True
        if plan.request is not None:
            self.serving.cancel(plan.request, self.clock.now())
        alloc = plan.allocation
        alloc.inflight -= 1
        plan.gpu.inflight -= 1
        now = self.clock.now()
        self.ledger.tokens(alloc, now, plan.prompt_tokens, tokens_delivered)
        if alloc.active:
            # The lease counts idle time from the end of the last inference.
            alloc.last_used_at = now
            self._push_lease(alloc)

    def _gpu_changed(self, gpu_id: str) -> None:
        for listener in self.on_gpu_changed:
            listener(gpu_id)

    # ---- read-only views ---------------------------------------------------------------------------

    def pool_stats(self, pool_id: str | None = None, *, tenant_id: str | None = None) -> list[PoolStats]:
        """Every pool, or one; with `tenant_id`, only those the tenant's tier may use (asking for another
        by id raises PoolNotPermitted)."""
        self.tick()
        if pool_id is not None:
            pool = self._pool_for(tenant_id, pool_id) if tenant_id is not None else self._pool(pool_id)
            return [self._stats(pool.config, pool.gpus)]
        allowed = self._tenant_pools[tenant_id] if tenant_id is not None else self.pools.keys()
        return [self._stats(p.config, p.gpus) for p in self.pools.values() if p.pool_id in allowed]

    @staticmethod
    def _stats(pc: PoolConfig, gpus: list[Gpu]) -> PoolStats:
        healthy = [g for g in gpus if g.healthy]
        return PoolStats(
            pool_id=pc.id,
            gpu_type=pc.gpu_type,
            gpus=len(healthy),
            tflops_total=round(sum(g.tflops for g in healthy), 6),
            tflops_allocated=round(sum(g.tflops_allocated for g in gpus), 6),
            vram_mb_total=sum(g.vram_mb for g in healthy),
            vram_mb_allocated=sum(g.vram_mb_allocated for g in gpus),
            overcommit_ratio=pc.overcommit_ratio,
            allocations_active=sum(len(g.allocations) for g in gpus),
            price_per_tflops_hour=pc.price_per_tflops_hour,
        )

    def usage(
        self,
        tenant_id: str,
        since: float | None = None,
        until: float | None = None,
        *,
        limit: int | None = None,
        after_seq: int = 0,
    ) -> UsagePage:
        """The tenant's usage in `[since, until)` widened to whole usage periods: a page of per-allocation
        records (allocations still kept, in creation order) and the exact totals of the whole window."""
        self.tick()
        now = self.clock.now()
        window = self.ledger.window(since, until)
        held = (a for a in self._by_tenant[tenant_id].values() if window.overlaps(a.created_at, a.ended_or(now)))
        allocations, next_seq = paginate(held, after_seq, limit)
        records = [self.ledger.record(a, now, window) for a in allocations]
        return UsagePage(records, next_seq, self.ledger.totals(tenant_id, now, window), window)
