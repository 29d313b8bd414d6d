"""A correct server that rate-limits (429 with Retry-After, as HostedAI does) is not a failure: the suites
wait out its Retry-After and slow down, and what stayed untested is said, never claimed passed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.suites.base import RunOptions, SuiteResult
from harness.suites.contract import ContractSuite
from harness.suites.load import LoadSuite
from harness.suites.stateful import StatefulSuite
from harness.target import Target
from mock_server import MockHostedAI
from tests.conftest import config_with

RATE_LIMITED = config_with(
    tenants=lambda t: {**t, "dev": {**t["dev"], "rate_limit": {"rps": 25, "burst": 10}}},
)


@pytest.fixture
async def limited() -> AsyncIterator[Target]:
    # The real clock, so the tenant's bucket refills as a live service's does.
    async with MockHostedAI(RATE_LIMITED, clock="real", time_scale=1.0, seed=4) as mock:
        yield Target(mock.url, mock.api_key, second_api_key=mock.api_key_for("team-b"), label=mock.url)


def _failed(result: SuiteResult) -> dict[str, str]:
    return {c.name: c.message[:400] for c in result.checks if c.outcome == "failed"}


async def test_the_contract_suite_waits_out_429s_instead_of_failing(limited: Target) -> None:
    result = await ContractSuite().run(limited, RunOptions(seed=4, examples=1, max_allocations=8))
    assert _failed(result) == {}
    retry_after = next(c for c in result.checks if c.name == "contract: Retry-After on every 429 and 503")
    assert retry_after.outcome == "passed", retry_after.message  # the burst was rate-limited, as it should be


async def test_the_stateful_suite_waits_out_429s_instead_of_failing(limited: Target) -> None:
    result = await StatefulSuite(steps=10).run(limited, RunOptions(seed=4, examples=3, max_allocations=8))
    assert _failed(result) == {}
    assert result.count("passed") > 0


async def test_locust_users_honour_429s_and_keep_them_out_of_the_error_rate(tmp_path: Path) -> None:
    tight = config_with(tenants=lambda t: {**t, "dev": {**t["dev"], "rate_limit": {"rps": 2, "burst": 2}}})
    async with MockHostedAI(tight, clock="real", time_scale=1.0, seed=4) as mock:
        live = Target(mock.url, mock.api_key, label=mock.url)
        result = await LoadSuite().run(live, RunOptions(seed=4, examples=1, max_allocations=50, report_dir=tmp_path))
    report = json.loads((tmp_path / "load" / "slo-report.json").read_text())
    assert report["rate_limited"] > 0
    assert _failed(result) == {}
    made = next(c for c in result.checks if c.name == "load: requests were made")
    assert "answered 429 and honoured" in made.message
