"""Stateful property test: however allocate, release, double release and the passing of time (with leases)
interleave, the per-GPU accounting matches the allocations it holds and never exceeds capacity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, multiple, rule

from mock_server.config import parse_config
from mock_server.sim.clock import ManualClock
from mock_server.sim.errors import CapacityExhausted, InvalidInput
from mock_server.sim.model import AllocationState, Gpu
from mock_server.sim.simulator import AllocationSpec, Simulator

_LATENCY = {"prefill_overhead_ms": 10.0, "prefill_per_token_us": 50.0, "tpot_ms": 5.0}

# Small pools, so capacity runs out, preemption happens and every placement policy is exercised.
# The accounting under test is of reservations: allocations serve at once and end at once.
_INSTANT: dict[str, Any] = {
    "lifecycle": {"provision_s": {"s": 0}, "load_s": {"s": 0}},
    "on_preemption": {"grace_s": 0, "wire": "event"},
}

CONFIG = parse_config(
    {
        "simulation": {"seed": 1, "clock": "manual", "retention_seconds": 1e9},
        "pools": [
            {
                "id": "a",
                "gpu_type": "A",
                "gpus": 2,
                "tflops_per_gpu": 100.0,
                "vram_mb_per_gpu": 1000,
                "overcommit_ratio": 2.0,
                "placement": "best_fit",
                **_INSTANT,
            },
            {
                "id": "b",
                "gpu_type": "B",
                "gpus": 2,
                "tflops_per_gpu": 50.0,
                "vram_mb_per_gpu": 600,
                "overcommit_ratio": 3.0,
                "placement": "spread",
                **_INSTANT,
            },
            {
                "id": "c",
                "gpu_type": "A",
                "gpus": 2,
                "tflops_per_gpu": 30.0,
                "vram_mb_per_gpu": 500,
                "overcommit_ratio": 1.5,
                "placement": "first_fit",
                "preemption": False,
                **_INSTANT,
            },
        ],
        "models": {
            "small": {
                "vram_mb": 100,
                "tflops": 5,
                "max_tokens": 64,
                "context_tokens": 1024,
                "pools": ["a", "b", "c"],
                "latency": {"A": _LATENCY, "B": _LATENCY},
            },
            "big": {
                "vram_mb": 300,
                "tflops": 20,
                "max_tokens": 64,
                "context_tokens": 1024,
                "pools": ["a", "b"],
                "latency": {"A": _LATENCY, "B": _LATENCY},
            },
        },
        "tenants": {"dev": {"api_keys": ["dev-key"]}, "team-b": {"api_keys": ["team-b-key"]}},
    }
)

TFLOPS = st.sampled_from([0.1, 0.2, 0.7, 2.5, 5.0, 10.0, 12.3, 20.0, 25.0, 33.3, 45.0, 60.0, 100.0, 150.0])
# VRAM asked above the model's own need (0 most often); 1000 more never fits on any GPU.
VRAM_EXTRA = st.sampled_from([0, 0, 50, 100, 200, 400, 1000])
TTL = st.one_of(st.none(), st.integers(min_value=1, max_value=120))
ADVANCE = st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(min_value=0.0, max_value=90.0, allow_nan=False))

Ref = tuple[str, str]  # (tenant, allocation_id)


@dataclass
class Expected:
    """The reference model's view of one allocation."""

    tenant: str
    pool_id: str
    created_at: float
    ttl: int | None
    state: AllocationState = AllocationState.ACTIVE


def gpu_fits(gpu: Gpu, overcommit_ratio: float, tflops: float, vram_mb: int, overcommit: bool) -> bool:
    limit = gpu.tflops * (overcommit_ratio if overcommit else 1.0)
    return gpu.vram_mb_allocated + vram_mb <= gpu.vram_mb and gpu.tflops_allocated + tflops <= limit + 1e-9


def gpu_snapshot(sim: Simulator) -> dict[str, tuple[float, int, frozenset[str]]]:
    return {g.gpu_id: (g.tflops_allocated, g.vram_mb_allocated, frozenset(g.allocations)) for g in sim.gpus.values()}


@settings(max_examples=200, stateful_step_count=40, derandomize=True, deadline=None)
class AccountingMachine(RuleBasedStateMachine):
    allocations = Bundle("allocations")
    released = Bundle("released")

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.sim = Simulator(CONFIG, self.clock)
        self.expected: dict[str, Expected] = {}

    def active_ids(self) -> set[str]:
        return {i for i, e in self.expected.items() if e.state is AllocationState.ACTIVE}

    @rule(
        target=allocations,
        tenant=st.sampled_from(["dev", "team-b"]),
        pool_id=st.sampled_from(["a", "b", "c"]),
        model=st.sampled_from(["small", "big"]),
        tflops=TFLOPS,
        vram_extra=VRAM_EXTRA,
        overcommit=st.booleans(),
        priority=st.integers(min_value=0, max_value=9),
        ttl=TTL,
    )
    def allocate(
        self,
        tenant: str,
        pool_id: str,
        model: str,
        tflops: float,
        vram_extra: int,
        overcommit: bool,
        priority: int,
        ttl: int | None,
    ) -> object:
        self.sim.tick()
        before = gpu_snapshot(self.sim)
        pool = self.sim.pools[pool_id]
        vram_mb = self.sim.models[model].vram_mb + vram_extra
        spec = AllocationSpec(
            pool_id, model, tflops, vram_mb, overcommit=overcommit, priority=priority, ttl_seconds=ttl
        )
        try:
            result = self.sim.allocate(tenant, spec, request_id="req")
        except (InvalidInput, CapacityExhausted) as exc:
            self.check_refusal(exc, spec)
            assert gpu_snapshot(self.sim) == before, "a refused request changed the accounting"
            return multiple()

        alloc = result.allocation
        assert alloc.pool_id == pool_id
        assert alloc.gpu_id in {g.gpu_id for g in pool.gpus}
        assert alloc.allocation_id not in self.expected
        if not result.preempted:
            tflops_before, vram_before, _ = before[alloc.gpu_id]
            gpu = self.sim.gpus[alloc.gpu_id]
            assert vram_before + vram_mb <= gpu.vram_mb
            assert tflops_before + tflops <= gpu.tflops * (pool.config.overcommit_ratio if overcommit else 1) + 1e-9
        for victim_id in result.preempted:
            assert overcommit, "a guaranteed request preempted someone"
            assert victim_id in self.active_ids()
            victim = self.sim.allocations[victim_id]
            assert victim.overcommit
            assert victim.priority < priority
            assert victim.gpu_id == alloc.gpu_id
            assert victim.state is AllocationState.PREEMPTED
            assert victim.preempted_by == alloc.allocation_id
            self.expected[victim_id].state = AllocationState.PREEMPTED
        self.expected[alloc.allocation_id] = Expected(tenant, pool_id, self.clock.now(), ttl)
        return (tenant, alloc.allocation_id)

    def check_refusal(self, error: InvalidInput | CapacityExhausted, spec: AllocationSpec) -> None:
        """A refusal is justified: unsatisfiable means no empty GPU could hold the request; capacity
        exhausted means no GPU of the pool has room for it now."""
        pool = self.sim.pools[spec.pool_id].config
        if isinstance(error, InvalidInput):
            model = self.sim.models[spec.model]
            empty_limit = pool.tflops_per_gpu * (pool.overcommit_ratio if spec.overcommit else 1.0)
            assert all(e.message.startswith("unsatisfiable") for e in error.errors)
            assert (
                spec.pool_id not in model.pools
                or spec.vram_mb < model.vram_mb
                or spec.vram_mb > pool.vram_mb_per_gpu
                or spec.tflops > empty_limit + 1e-9
            ), "refused as unsatisfiable a request an empty GPU could hold"
        else:
            assert error.retry_after == CONFIG.simulation.capacity_retry_after_s
            gpus = self.sim.pools[spec.pool_id].gpus
            assert not any(
                gpu_fits(g, pool.overcommit_ratio, spec.tflops, spec.vram_mb, spec.overcommit) for g in gpus
            ), "capacity exhausted although a GPU had room"

    @rule(target=released, ref=consumes(allocations))
    def release(self, ref: Ref) -> Ref:
        tenant, allocation_id = ref
        self.sim.tick()
        was = self.expected[allocation_id]
        alloc = self.sim.release(tenant, allocation_id)
        if was.state is AllocationState.ACTIVE:
            was.state = AllocationState.RELEASED
        assert alloc.state is was.state
        return ref

    @rule(ref=released)
    def release_again(self, ref: Ref) -> None:
        tenant, allocation_id = ref
        self.sim.tick()
        before = gpu_snapshot(self.sim)
        stats_before = self.sim.pool_stats()
        alloc = self.sim.release(tenant, allocation_id)
        assert alloc.state is self.expected[allocation_id].state
        assert alloc.state is not AllocationState.ACTIVE
        assert gpu_snapshot(self.sim) == before
        assert self.sim.pool_stats() == stats_before

    @rule(seconds=ADVANCE)
    def advance(self, seconds: float) -> None:
        now = self.clock.advance(seconds)
        for e in self.expected.values():
            if e.state is AllocationState.ACTIVE and e.ttl is not None and e.created_at + e.ttl <= now:
                e.state = AllocationState.EXPIRED

    @invariant()
    def accounting_is_consistent(self) -> None:
        stats = {s.pool_id: s for s in self.sim.pool_stats()}  # lets time catch up first (tick)
        sim_active = {i for i, a in self.sim.allocations.items() if a.active}
        assert sim_active == self.active_ids()
        for allocation_id, e in self.expected.items():
            assert self.sim.allocations[allocation_id].state is e.state

        homes: dict[str, list[str]] = {}
        for gpu in self.sim.gpus.values():
            pc = self.sim.pools[gpu.pool_id].config
            held = list(gpu.allocations.values())
            assert abs(gpu.tflops_allocated - sum(a.tflops for a in held)) <= 1e-6
            assert gpu.vram_mb_allocated == sum(a.vram_mb for a in held)
            assert gpu.vram_mb_allocated <= pc.vram_mb_per_gpu
            assert gpu.tflops_allocated <= gpu.tflops * pc.overcommit_ratio + 1e-6
            # Guaranteed allocations were each placed within physical compute and are never preempted.
            assert sum(a.tflops for a in held if not a.overcommit) <= gpu.tflops + 1e-6
            for a in held:
                assert a.active, f"ended allocation {a.allocation_id} still on {gpu.gpu_id}"
                assert a.gpu_id == gpu.gpu_id
                homes.setdefault(a.allocation_id, []).append(gpu.gpu_id)
        assert set(homes) == self.active_ids()
        assert all(len(gpus) == 1 for gpus in homes.values())

        for pool_id, pool in self.sim.pools.items():
            s = stats[pool_id]
            assert abs(s.tflops_allocated - sum(g.tflops_allocated for g in pool.gpus)) <= 1e-6
            assert s.vram_mb_allocated == sum(g.vram_mb_allocated for g in pool.gpus)
            assert s.allocations_active == sum(1 for i in self.active_ids() if self.expected[i].pool_id == pool_id)
            assert s.tflops_total == pool.config.tflops_per_gpu * pool.config.gpus
            assert s.vram_mb_total == pool.config.vram_mb_per_gpu * pool.config.gpus


TestAccounting = AccountingMachine.TestCase
