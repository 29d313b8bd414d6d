"""No false alarms: the live suites, pointed by URL at a correct mock (directly, and behind nginx as a
reverse proxy), pass seed after seed at a small depth: the stateful machine and the contract suite's
behaviour probes for 20 seeds, the whole contract suite (with schemathesis, 13 s a run here) for 4 and
the load suite (a 5 s locust run) for 3, to keep CI short. Every suite at full depth for 20 seeds is
`python -m benchmarks.selftest --part false-alarms` (docs/harness.md has its figures).

The mock is a separate process, seen by the harness as a live HostedAI: no control plane, the public
API only, two tenants' keys."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from benchmarks.selftest.servers import nginx_proxy
from harness.connector import ConnectorMetrics, HostedAiConfig, HostedAiConnector
from harness.suites.base import RunOptions, SuiteResult
from harness.suites.contract import ContractSuite, judges, probes
from harness.suites.load import LoadSuite
from harness.suites.shapes import catalogue_shapes
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
async def test_contract_probes_never_false_alarm(routes: dict[str, Target], route: str) -> None:
    target = routes[route]
    alarms = {}
    for seed in SEEDS:
        async with (
            aiohttp.ClientSession() as session,
            HostedAiConnector(
                HostedAiConfig(base_url=target.url, api_key=target.api_key),
                session=session,
                metrics=ConnectorMetrics(CollectorRegistry()),
            ) as client,
        ):
            shape = (await catalogue_shapes(client))["small" if seed % 2 else "large"]
            evidence = await probes.gather(
                target, client, shape, budget=8, idempotency_key=True, owned=False, session=session
            )
        results = judges.judge_all(evidence)
        failed = [f"{r.name}: {r.message[:500]}" for r in results if r.outcome == "failed"]
        if failed or not any(r.outcome == "passed" for r in results):
            alarms[seed] = failed
    assert alarms == {}


@pytest.mark.parametrize("route", ["direct", "nginx"])
async def test_contract_never_false_alarms(routes: dict[str, Target], route: str) -> None:
    alarms = {}
    for seed in SEEDS[:4]:
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
