"""No false alarms: every live suite, pointed by URL at a correct mock (directly, and behind nginx as a
transparent reverse proxy), passes for 20 seeds in a row, at a small depth. The same at full depth is
`python -m benchmarks.selftest --part false-alarms` (docs/harness.md has its figures).

The mock is a separate process, seen by the harness as a live HostedAI: no control plane, the public
API only, two tenants' keys."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from benchmarks.selftest.servers import nginx_proxy
from harness.suites.base import RunOptions, SuiteResult
from harness.suites.contract import ContractSuite
from harness.suites.load import LoadSuite
from harness.suites.stateful import StatefulSuite
from harness.target import MockProcess, Target

SEEDS = range(1, 21)
pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None and not shutil.which("/usr/sbin/nginx"),
    reason="nginx is not installed (.ci/run installs Debian's nginx-light)",
)


@pytest.fixture(scope="module")
def routes() -> Iterator[dict[str, Target]]:
    """The same correct mock two ways: by its own URL, and behind nginx."""
    with MockProcess(seed=11).running() as mock, nginx_proxy(mock.url) as proxied:
        direct = Target(mock.url, mock.api_key, second_api_key=mock.second_api_key, label=mock.url)
        behind = Target(proxied, mock.api_key, second_api_key=mock.second_api_key, label=proxied)
        yield {"direct": direct, "nginx": behind}


def _failures(result: SuiteResult) -> list[str]:
    return [f"{c.name}: {c.message[:500]}" for c in result.checks if c.outcome == "failed"]


@pytest.mark.parametrize("route", ["direct", "nginx"])
async def test_stateful_never_false_alarms(routes: dict[str, Target], route: str) -> None:
    alarms = {}
    for seed in SEEDS:
        result = await StatefulSuite(steps=10).run(routes[route], RunOptions(seed=seed, examples=3, max_allocations=8))
        if _failures(result) or not result.count("passed"):
            alarms[seed] = _failures(result)
    assert alarms == {}


@pytest.mark.parametrize("route", ["direct", "nginx"])
async def test_contract_never_false_alarms(routes: dict[str, Target], route: str) -> None:
    alarms = {}
    for seed in SEEDS:
        result = await ContractSuite().run(routes[route], RunOptions(seed=seed, examples=1, max_allocations=8))
        if _failures(result) or not result.count("passed"):
            alarms[seed] = _failures(result)
    assert alarms == {}


@pytest.mark.parametrize("route", ["direct", "nginx"])
async def test_load_never_false_alarms(routes: dict[str, Target], route: str) -> None:
    alarms = {}
    for seed in SEEDS[:3]:
        result = await LoadSuite().run(routes[route], RunOptions(seed=seed, examples=1, max_allocations=4))
        if _failures(result) or not result.count("passed"):
            alarms[seed] = _failures(result)
    assert alarms == {}
