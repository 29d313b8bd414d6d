"""The stateful suite against the in-process mock: all checks pass on the real thing, and each
deliberately broken mock (patched in this process) fails the check that guards that behaviour, with
a shrunk sequence of steps that replays it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from harness.suites.base import CheckResult, RunOptions, SuiteResult
from harness.suites.stateful import (
    ALL_RELEASED,
    CAPACITY,
    CHECKS,
    IDEMPOTENT_ALLOCATE,
    ISOLATION,
    RELEASE_IDEMPOTENT,
    TIERS,
    StatefulSuite,
)
from harness.target import Target
from mock_server import MockHostedAI
from mock_server.sim import errors as sim_errors
from mock_server.sim.model import Allocation, Gpu
from mock_server.sim.simulator import AllocateResult, AllocationSpec, Simulator
from tests.conftest import config_with

# Enough examples that every rule is drawn whatever the order Hypothesis happens to draw them in: that
# order depends on the process's memory layout (rule hashes are object ids), not only on the seed.
OPTIONS = RunOptions(seed=1, examples=10)


@pytest.fixture(autouse=True)
def _quiet_connector(caplog: pytest.LogCaptureFixture) -> None:
    # The connector logs every error answer as a warning; hundreds are expected here.
    caplog.set_level(logging.ERROR, logger="harness.connector")


@pytest.fixture
async def mock() -> AsyncIterator[MockHostedAI]:
    async with MockHostedAI(clock="manual", seed=1) as running:
        yield running


@pytest.fixture
async def lenient_mock() -> AsyncIterator[MockHostedAI]:
    """Not strict: a broken answer goes out as it is, not as strict mode's 500."""
    async with MockHostedAI(clock="manual", seed=1, strict=False) as running:
        yield running


def mock_target(mock: MockHostedAI) -> Target:
    return Target(
        url=mock.url,
        api_key=mock.api_key,
        admin_token=mock.admin_token,
        second_api_key=mock.api_key_for("team-b"),
    )


def check(result: SuiteResult, name: str) -> CheckResult:
    (found,) = [c for c in result.checks if c.name == name]
    return found


def outcomes(result: SuiteResult) -> dict[str, str]:
    return {c.name: c.outcome for c in result.checks}


def assert_only_failure(result: SuiteResult, name: str) -> CheckResult:
    """`name` failed with a shrunk, replayable sequence of steps; every other check held."""
    failed = [c.name for c in result.checks if c.outcome == "failed"]
    assert failed == [name], "\n\n".join(f"{c.name}: {c.message}" for c in result.checks if c.outcome == "failed")
    found = check(result, name)
    (steps,) = found.reproduce
    assert steps.startswith("state = HostedAiMachine()\n")
    assert steps.endswith("state.teardown()")
    assert steps in found.message
    return found


def active(mock: MockHostedAI) -> list[Allocation]:
    return [a for a in mock.sim.allocations.values() if a.active]


async def test_every_check_holds_against_the_mock(mock: MockHostedAI) -> None:
    result = await StatefulSuite().run(mock_target(mock), OPTIONS)

    assert result.suite == "stateful"
    assert [c.name for c in result.checks] == [*CHECKS, ALL_RELEASED]
    assert outcomes(result) == dict.fromkeys([*CHECKS, ALL_RELEASED], "passed"), [
        (c.name, c.message) for c in result.checks if c.outcome != "passed"
    ]
    assert result.ok
    assert result.replay == "--seed 1 --examples 10"
    assert active(mock) == []


async def test_capacity_never_given_back(mock: MockHostedAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Gpu, "give_back", lambda self, alloc: None)

    # One tenant: with two, the shortest witness may be one tier crossing (allocate and release in a step).
    result = await StatefulSuite().run(replace(mock_target(mock), second_api_key=None), OPTIONS)

    failure = assert_only_failure(result, CAPACITY)
    assert "GET /v1/pools does not add up" in failure.message
    assert "held_0 = state.allocate(" in failure.reproduce[0]
    assert "state.release(allocation=held_0)" in failure.reproduce[0]


async def test_the_shrunk_sequence_is_the_same_on_every_run(
    mock: MockHostedAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Gpu, "give_back", lambda self, alloc: None)
    suite = StatefulSuite()

    first = await suite.run(mock_target(mock), OPTIONS)
    second = await suite.run(mock_target(mock), OPTIONS)

    assert check(first, CAPACITY).reproduce == check(second, CAPACITY).reproduce


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (lambda alloc: sim_errors.AllocationNotActive("already ended", alloc.state.value), 409),
        (lambda alloc: sim_errors.NotFound("gone"), 404),
    ],
    ids=["409", "404"],
)
async def test_release_not_idempotent(
    lenient_mock: MockHostedAI, monkeypatch: pytest.MonkeyPatch, error: Any, status: int
) -> None:
    release = Simulator.release

    def strict_release(self: Simulator, tenant_id: str, allocation_id: str) -> Allocation:
        alloc = self.get_allocation(tenant_id, allocation_id)
        if not alloc.active:
            raise error(alloc)
        return release(self, tenant_id, allocation_id)

    monkeypatch.setattr(Simulator, "release", strict_release)

    result = await StatefulSuite().run(mock_target(lenient_mock), OPTIONS)

    failure = assert_only_failure(result, RELEASE_IDEMPOTENT)
    assert "the second DELETE /v1/allocate/alloc_" in failure.message
    assert f"answered {status}" in failure.message
    assert "state.release_twice(allocation=held_0)" in failure.reproduce[0]


async def test_another_tenants_allocation_visible(mock: MockHostedAI, monkeypatch: pytest.MonkeyPatch) -> None:
    def any_tenant(self: Simulator, tenant_id: str, allocation_id: str) -> Allocation:
        alloc = self.allocations.get(allocation_id)
        if alloc is None:
            raise sim_errors.NotFound(f"No allocation {allocation_id}.")
        return alloc

    monkeypatch.setattr(Simulator, "get_allocation", any_tenant)

    result = await StatefulSuite().run(mock_target(mock), OPTIONS)

    failure = assert_only_failure(result, ISOLATION)
    assert "another tenant's GET our allocation alloc_" in failure.message
    assert "succeeded (expected 404)" in failure.message
    assert "state.foreign_tenant(allocation=held_0)" in failure.reproduce[0]
    assert active(mock) == []


async def test_idempotency_key_ignored(mock: MockHostedAI, monkeypatch: pytest.MonkeyPatch) -> None:
    allocate = Simulator.allocate

    def forgetful(self: Simulator, tenant_id: str, spec: AllocationSpec, **kwargs: Any) -> AllocateResult:
        return allocate(self, tenant_id, spec, request_id=kwargs["request_id"])

    monkeypatch.setattr(Simulator, "allocate", forgetful)

    result = await StatefulSuite().run(mock_target(mock), OPTIONS)

    failure = assert_only_failure(result, IDEMPOTENT_ALLOCATE)
    assert "the same Idempotency-Key and body allocated twice" in failure.message
    assert "state.replay_allocate(" in failure.reproduce[0]
    assert active(mock) == []


async def test_a_live_target_gets_at_most_max_allocations(mock: MockHostedAI) -> None:
    live = Target(url=mock.url, api_key=mock.api_key, label=mock.url)
    options = RunOptions(seed=1, examples=5, max_allocations=3)

    result = await StatefulSuite().run(live, options)

    made = [a for a in mock.sim.allocations.values() if a.tenant_id == mock.tenant]
    assert 1 <= len(made) <= 3
    assert active(mock) == []
    assert result.ok, [(c.name, c.message) for c in result.checks if c.outcome == "failed"]
    assert check(result, CAPACITY).outcome == "skipped"
    assert check(result, ISOLATION).outcome == "skipped"
    assert check(result, ALL_RELEASED).outcome == "passed"


async def test_a_live_target_without_idempotency_is_no_failure(
    mock: MockHostedAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    allocate = Simulator.allocate

    def forgetful(self: Simulator, tenant_id: str, spec: AllocationSpec, **kwargs: Any) -> AllocateResult:
        return allocate(self, tenant_id, spec, request_id=kwargs["request_id"])

    monkeypatch.setattr(Simulator, "allocate", forgetful)
    live = Target(url=mock.url, api_key=mock.api_key, label=mock.url)

    # Declared, as for HostedAI today (--no-idempotency-key): undeclared, the check must fail, and whether
    # these 5 examples happen to replay an allocate depends only on the machine's draws.
    options = RunOptions(seed=1, examples=5, max_allocations=6, idempotency_key=False)
    result = await StatefulSuite().run(live, options)

    assert result.ok, [(c.name, c.message) for c in result.checks if c.outcome == "failed"]
    assert len(mock.sim.allocations) <= 6
    assert active(mock) == []


async def test_cancelling_the_run_releases_what_it_holds(mock: MockHostedAI, monkeypatch: pytest.MonkeyPatch) -> None:
    allocated = asyncio.Event()
    hold = Gpu.hold

    def hold_and_tell(self: Gpu, alloc: Allocation) -> None:
        hold(self, alloc)
        allocated.set()

    monkeypatch.setattr(Gpu, "hold", hold_and_tell)
    live = Target(url=mock.url, api_key=mock.api_key, label=mock.url)
    task = asyncio.create_task(StatefulSuite().run(live, RunOptions(seed=1, examples=5000, max_allocations=10_000)))
    await asyncio.wait_for(allocated.wait(), timeout=10)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    made = len(mock.sim.allocations)
    assert made >= 1
    assert active(mock) == []
    await asyncio.sleep(0.05)
    assert len(mock.sim.allocations) == made, "the machine went on after the cancellation"


async def test_tiers_not_enforced_on_allocate(mock: MockHostedAI, monkeypatch: pytest.MonkeyPatch) -> None:
    # The pool list is still filtered by tier, but any tenant may allocate anywhere.
    monkeypatch.setattr(Simulator, "_pool_for", lambda self, tenant_id, pool_id: self._pool(pool_id))

    result = await StatefulSuite().run(mock_target(mock), OPTIONS)

    failure = assert_only_failure(result, TIERS)
    assert "the second tenant's key allocated alloc_" in failure.message
    assert "in gpu-pool-1, a pool its GET /v1/pools does not list" in failure.message
    assert "state.cross_tier(" in failure.reproduce[0]
    assert active(mock) == []


async def test_pools_listed_to_a_tier_that_may_not_use_them(
    mock: MockHostedAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Allocating is refused across tiers, but every tenant is shown every pool.
    pool_stats = Simulator.pool_stats

    def unfiltered(self: Simulator, pool_id: str | None = None, *, tenant_id: str | None = None) -> Any:
        return pool_stats(self, pool_id, tenant_id=tenant_id if pool_id is not None else None)

    monkeypatch.setattr(Simulator, "pool_stats", unfiltered)
    monkeypatch.setattr(Simulator, "pools_of", lambda self, tenant_id: frozenset(self.pools))

    result = await StatefulSuite().run(mock_target(mock), OPTIONS)

    failure = assert_only_failure(result, TIERS)
    assert "the second tenant's key lists gpu-pool-1 in GET /v1/pools, yet allocating there answered 403" in (
        failure.message
    )


async def test_without_a_tier_boundary_the_tier_check_is_skipped_with_its_reason() -> None:
    untiered = config_with(
        pools=lambda pools: [{**p, "tiers": None} for p in pools],
    )
    async with MockHostedAI(untiered, clock="manual", seed=1) as mock:
        result = await StatefulSuite().run(mock_target(mock), OPTIONS)
    assert result.ok
    assert check(result, TIERS).outcome == "skipped"
    assert check(result, TIERS).message == "both tenants' keys list the same pools: no tier boundary to cross"
