"""Request batching: small requests of one class arriving together share one allocation (each with its
own inference on it), bounded by a batch size and a wait limit, and every tenant is charged exactly
its requests' shares of the held time. The batch's wait timer is fired by hand (`ManualTimers`), so no
test depends on how fast the machine is."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from fractions import Fraction
from typing import Any, ClassVar

import pytest

from harness.connector import CapacityExhausted, HostedAiConnector, RequestTimeout, ValidationFailed
from harness.control_plane import ControlPlane
from harness.orchestrator import BatchPolicy, Orchestrator, SharedHold
from harness.orchestrator import orchestrator as orchestrator_module
from harness.orchestrator.batching import Batcher
from mock_server import MockHostedAI
from tests.orchestrator.support import (
    CLASSES,
    COMPLEX_TEXT,
    NO_CAPACITY,
    SIMPLE_TEXT,
    FakeClock,
    add_fault,
    assert_nothing_held,
    journal,
)

TEXTS = [SIMPLE_TEXT, "Spell overcommit backwards.", "What is a GPU?", "Translate 'lease' into French."]


class ManualTimers:
    """A batch's wait timer that runs only when the test fires it."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None], list[bool]]] = []

    def __call__(self, seconds: float, callback: Callable[[], None]) -> Any:
        cancelled = [False]
        self.pending.append((seconds, callback, cancelled))

        class Handle:
            def cancel(self) -> None:
                cancelled[0] = True

        return Handle()

    def fire(self) -> None:
        for _, callback, cancelled in self.pending:
            if not cancelled[0]:
                callback()
        self.pending.clear()

    @property
    def armed(self) -> list[float]:
        return [seconds for seconds, _, cancelled in self.pending if not cancelled[0]]


class RecordingHold(SharedHold):
    """SharedHold, keeping when its allocation was granted and when each request left it."""

    made: ClassVar[list[RecordingHold]] = []

    def __init__(self, started: float, members: int) -> None:
        super().__init__(started, members)
        self.started = Fraction(started)
        self.leaves: list[Fraction] = []
        RecordingHold.made.append(self)

    def leave(self, at: float) -> Fraction:
        self.leaves.append(Fraction(at))
        return super().leave(at)

    @property
    def held(self) -> Fraction:
        return max(self.leaves) - self.started


@pytest.fixture
def holds(monkeypatch: pytest.MonkeyPatch) -> list[RecordingHold]:
    RecordingHold.made = []
    monkeypatch.setattr(orchestrator_module, "SharedHold", RecordingHold)
    return RecordingHold.made


def batching(connector: HostedAiConnector, timers: ManualTimers, *, max_size: int = 4, **options: Any) -> Orchestrator:
    policy = BatchPolicy(enabled=True, max_size=max_size, max_wait_ms=20)
    # Each read of this clock moves it 0.25 s: every share is non-zero, and exact in binary.
    return Orchestrator(
        connector, CLASSES, clock=FakeClock(step=0.25), batching=policy, batch_schedule=timers, **options
    )


# ---- the shared hold: pure ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "leaves", "shares"),
    [
        (1, [5], [5]),
        (2, [4, 4], [2, 2]),
        # 0→1 split 3 ways, 1→2 split 2 ways, 2→4 paid by the last alone (it also waits for the release).
        (3, [1, 2, 4], [Fraction(1, 3), Fraction(5, 6), Fraction(17, 6)]),
        (2, [3, 2], [Fraction(3, 2), Fraction(3, 2)]),  # a clock stepping back adds nothing
    ],
)
def test_each_slice_of_held_time_is_split_among_the_requests_still_there(
    members: int, leaves: list[float], shares: list[Fraction]
) -> None:
    hold = SharedHold(0.0, members)
    assert [hold.leave(at) for at in leaves] == shares
    assert sum(shares) == max(leaves)  # exactly the allocation's held time, nothing lost to rounding


def test_shares_of_float_times_add_up_exactly() -> None:
    hold = SharedHold(1000.1, 3)
    shares = [hold.leave(at) for at in (1000.3, 1000.7, 1001.9)]
    assert sum(shares) == Fraction(1001.9) - Fraction(1000.1)


# ---- the batcher: which requests go together ------------------------------------------------------------


async def test_a_full_batch_closes_at_once_without_waiting() -> None:
    closed: list[list[str]] = []
    timers = ManualTimers()
    batcher = Batcher(BatchPolicy(enabled=True, max_size=3), lambda b: closed.append(list(b.tenants)), schedule=timers)
    joined = await asyncio.gather(*(batcher.join("simple", t) for t in ("a", "b", "c")))
    assert closed == [["a", "b", "c"]]
    assert len({id(b) for b in joined}) == 1
    assert timers.armed == []  # the wait timer of a full batch is cancelled


async def test_a_batch_closes_when_its_wait_runs_out() -> None:
    closed: list[list[str]] = []
    timers = ManualTimers()
    batcher = Batcher(
        BatchPolicy(enabled=True, max_size=8, max_wait_ms=20), lambda b: closed.append(b.tenants), schedule=timers
    )
    waiting = [asyncio.ensure_future(batcher.join("simple", t)) for t in ("a", "b")]
    await asyncio.sleep(0)
    assert closed == []
    assert timers.armed == [0.02]
    timers.fire()
    await asyncio.gather(*waiting)
    assert closed == [["a", "b"]]
    # The next request opens a new batch.
    later = asyncio.ensure_future(batcher.join("simple", "c"))
    await asyncio.sleep(0)
    assert timers.armed == [0.02]
    later.cancel()


async def test_a_request_that_gives_up_while_waiting_leaves_the_batch() -> None:
    closed: list[list[str]] = []
    timers = ManualTimers()
    batcher = Batcher(BatchPolicy(enabled=True, max_size=8), lambda b: closed.append(b.tenants), schedule=timers)
    alone = asyncio.ensure_future(batcher.join("simple", "a"))
    await asyncio.sleep(0)
    alone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await alone
    assert timers.armed == []  # nobody waits: the batch is dropped, nothing is allocated
    timers.fire()
    assert closed == []


def test_only_the_configured_classes_are_batched_and_only_when_enabled() -> None:
    assert Batcher(BatchPolicy(enabled=True), lambda b: None).takes("simple")
    assert not Batcher(BatchPolicy(enabled=True), lambda b: None).takes("complex")
    assert not Batcher(BatchPolicy(), lambda b: None).takes("simple")


# ---- the orchestrator against the mock ----------------------------------------------------------------


async def test_simple_requests_arriving_together_share_one_allocation(
    hostedai: MockHostedAI, connector: HostedAiConnector
) -> None:
    orchestrator = batching(connector, ManualTimers())
    tenants = ["acme", "acme", "globex", "initech"]
    results = await asyncio.gather(*(orchestrator.process(t, tenant=n) for t, n in zip(TEXTS, tenants, strict=True)))

    assert {r.allocation_id for r in results} != {None}
    assert len({r.allocation_id for r in results}) == 1
    assert [r.batch.size if r.batch else None for r in results] == [4, 4, 4, 4]
    assert all(r.output and r.usage and r.usage.completion_tokens > 0 for r in results)
    allocates = await journal(hostedai, operation="allocate")
    inferences = await journal(hostedai, operation="inference")
    assert ([e["status"] for e in allocates], len(inferences)) == ([201], 4)  # one allocation, four inferences
    allocation = hostedai.sim.allocations[results[0].allocation_id or ""]
    assert (allocation.labels["harpoon_tenant"], allocation.labels["harpoon_batch"]) == ("*", "4")
    await assert_nothing_held(hostedai)


async def test_per_tenant_cost_of_shared_allocations_adds_up_exactly(
    hostedai: MockHostedAI, connector: HostedAiConnector, holds: list[RecordingHold]
) -> None:
    orchestrator = batching(connector, ManualTimers(), max_size=3)
    tenants = ["acme", "globex", "acme", "globex", "initech", "acme"]
    texts = TEXTS + TEXTS[:2]
    results = await asyncio.gather(*(orchestrator.process(t, tenant=n) for t, n in zip(texts, tenants, strict=True)))

    assert len(holds) == 2  # two batches of three
    ledger = orchestrator.ledger
    held = sum((h.held for h in holds), Fraction(0))
    exact = [ledger.exact(t) for t in sorted(set(tenants))]
    assert sum((e.held_seconds for e in exact), Fraction(0)) == held
    tflops = Fraction(CLASSES.classes.simple.tflops)
    assert sum((e.tflops_seconds for e in exact), Fraction(0)) == tflops * held
    price = Fraction(0.003)  # gpu-pool-1, the configured pool
    assert sum((e.cost for e in exact), Fraction(0)) == tflops * held / 3600 * price
    assert ledger.allocations_total().held_seconds == held
    assert ledger.reconciles()
    # What each request was told is its own share; a tenant's totals are its requests' shares.
    for tenant in set(tenants):
        mine = [r for r in results if r.tenant == tenant]
        totals = orchestrator.costs(tenant)
        assert totals.allocations == len(mine)
        assert totals.batched == len(mine)
        assert totals.allocation_share == pytest.approx(len(mine) / 3)
        assert totals.tflops_seconds == pytest.approx(sum(r.cost.tflops_seconds for r in mine), rel=1e-12)
        assert totals.completion_tokens == sum(r.usage.completion_tokens for r in mine if r.usage)
    await assert_nothing_held(hostedai)


async def test_a_batch_closes_on_its_wait_with_fewer_requests(
    hostedai: MockHostedAI, connector: HostedAiConnector
) -> None:
    timers = ManualTimers()
    orchestrator = batching(connector, timers, max_size=8)
    waiting = [asyncio.ensure_future(orchestrator.process(t, tenant="acme")) for t in TEXTS[:2]]
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiting)
    assert await journal(hostedai, operation="allocate") == []  # nothing allocated while the batch waits
    timers.fire()
    results = await asyncio.gather(*waiting)
    assert [r.batch.size if r.batch else None for r in results] == [2, 2]
    assert all(r.batch and r.batch.wait_ms > 0 for r in results)
    await assert_nothing_held(hostedai)


async def test_complex_requests_are_not_batched(hostedai: MockHostedAI, connector: HostedAiConnector) -> None:
    orchestrator = batching(connector, ManualTimers())
    results = await asyncio.gather(*(orchestrator.process(COMPLEX_TEXT, tenant="acme") for _ in range(2)))
    assert [r.batch for r in results] == [None, None]
    assert len({r.allocation_id for r in results}) == 2
    await assert_nothing_held(hostedai)


async def test_without_batching_every_request_allocates(hostedai: MockHostedAI, connector: HostedAiConnector) -> None:
    orchestrator = Orchestrator(connector, CLASSES, clock=FakeClock(step=0.25))
    results = await asyncio.gather(*(orchestrator.process(t) for t in TEXTS))
    assert len({r.allocation_id for r in results}) == 4
    assert {r.batch for r in results} == {None}


async def test_one_failed_inference_fails_only_its_request(
    hostedai: MockHostedAI, connector: HostedAiConnector
) -> None:
    # A refusal the connector does not retry, for the first inference only.
    refusal = {"type": "error", "status": 422, "code": "validation_failed"}
    async with ControlPlane(hostedai.url, hostedai.admin_token or "") as admin:
        await admin.add_fault({"match": {"operation": "inference"}, "times": 1, "action": refusal})
    orchestrator = batching(connector, ManualTimers(), max_size=2)
    outcomes = await asyncio.gather(
        orchestrator.process(TEXTS[0], tenant="acme"),
        orchestrator.process(TEXTS[1], tenant="globex"),
        return_exceptions=True,
    )
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    served = [o for o in outcomes if not isinstance(o, BaseException)]
    assert [type(f) for f in failed] == [ValidationFailed]
    assert len(served) == 1
    assert served[0].batch is not None
    assert served[0].batch.size == 2
    # Both were on the allocation, so both are charged their share.
    assert orchestrator.costs("acme").allocations == orchestrator.costs("globex").allocations == 1
    releases = await journal(hostedai, operation="release")
    assert [e["status"] for e in releases] == [204]  # the shared allocation, released once
    await assert_nothing_held(hostedai)


async def test_no_capacity_for_a_batch_fails_every_request_in_it(
    hostedai: MockHostedAI, connector: HostedAiConnector
) -> None:
    await add_fault(hostedai, {**NO_CAPACITY, "retry_after": 0}, operation="allocate")
    orchestrator = batching(connector, ManualTimers(), max_size=3)
    results = await asyncio.gather(*(orchestrator.process(t, tenant="acme") for t in TEXTS[:3]), return_exceptions=True)
    assert all(isinstance(r, CapacityExhausted) for r in results)
    assert orchestrator.costs("acme").allocations == 0
    await assert_nothing_held(hostedai)


async def test_a_request_whose_budget_runs_out_in_an_open_batch_leaves_it_and_nothing_is_allocated(
    hostedai: MockHostedAI, connector: HostedAiConnector
) -> None:
    timers = ManualTimers()  # never fired: the batch would wait for ever
    orchestrator = batching(connector, timers, max_size=8, request_budget_s=0.05)
    with pytest.raises(RequestTimeout):
        await orchestrator.process(SIMPLE_TEXT, tenant="acme")
    assert timers.armed == []  # the batch it was alone in is dropped
    assert await journal(hostedai, operation="allocate") == []
    assert orchestrator.costs("acme").allocations == 0
