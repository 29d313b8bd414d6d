"""`LoadSuite`: locust run as a program against the target, read back into checks — on the embedded mock,
as a live target (no control plane: bounded hard), and from the reports a broken run leaves."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.suites.base import RunOptions
from harness.suites.load import LoadSuite, _requests_check, _slo_checks, plan_load
from harness.target import Target, mock_process

from .conftest import journal


async def test_every_check_passes_on_the_embedded_mock_and_the_artifacts_are_kept(tmp_path: Path) -> None:
    async with mock_process(seed=4) as target:
        result = await LoadSuite().run(target, RunOptions(seed=4, examples=3, report_dir=tmp_path))
    failed = {c.name: c.message for c in result.checks if c.outcome == "failed"}
    assert result.ok, failed
    names = [c.name for c in result.checks]
    assert names[0] == "load: requests were made"
    assert names[-1] == "load: no allocation leaked"
    assert "load: SLO POST /v1/allocate p95 ≤ 1000 ms" in names
    assert "load: SLO total error rate ≤ 1.00 %" in names
    assert result.checks[0].message.endswith("req/s")
    assert "every one released" in result.checks[-1].message
    assert 5 < result.duration_s < 60
    kept = {p.name for p in (tmp_path / "load").iterdir()}
    assert {"slo-report.json", "locust_stats.csv", "locust.html"} <= kept


async def test_a_live_target_is_bounded_by_max_allocations_and_checked_by_the_public_api() -> None:
    async with mock_process(seed=5) as mock:
        live = Target(url=mock.url, api_key=mock.api_key, label=mock.url)  # no admin token: as a live HostedAI
        result = await LoadSuite().run(live, RunOptions(seed=5, examples=1, max_allocations=3))
        allocates = journal(mock, "allocate")
    failed = {c.name: c.message for c in result.checks if c.outcome == "failed"}
    assert result.ok, failed
    assert len(allocates) == 3
    leak_check = result.checks[-1]
    assert (leak_check.name, leak_check.outcome) == ("load: no allocation leaked", "passed")
    assert "GET /v1/allocate?state=active" in leak_check.message
    assert result.duration_s < 30  # the budget ended the run before its 5 s were up, or at them


async def test_a_run_past_its_hard_timeout_is_stopped_and_still_releases_everything() -> None:
    async with mock_process(seed=6) as target:
        result = await LoadSuite(startup_timeout_s=0).run(target, RunOptions(seed=6, examples=1))
    outcomes = {c.name: (c.outcome, c.message) for c in result.checks}
    assert outcomes["load: requests were made"][0] == "failed"
    assert "did not finish in time" in outcomes["load: requests were made"][1]
    assert outcomes["load: no allocation leaked"][0] == "passed", outcomes


def test_size_scales_gently_with_examples_and_a_live_run_stays_small() -> None:
    assert plan_load(RunOptions(examples=25), live=False) == plan_load(RunOptions(), live=False)
    default = plan_load(RunOptions(), live=False)
    assert (default.users, default.run_time_s, default.max_allocations) == (10, 12, 0)
    assert (plan_load(RunOptions(examples=3), live=False).run_time_s) == 5
    deep = plan_load(RunOptions(examples=10_000), live=False)
    assert (deep.users, deep.run_time_s) == (50, 60)
    live = plan_load(RunOptions(examples=10_000, max_allocations=7), live=True)
    assert (live.users, live.spawn_rate, live.run_time_s, live.max_allocations) == (2, 1.0, 10, 7)


def test_the_command_is_headless_bounded_and_names_the_slo_file(tmp_path: Path) -> None:
    suite = LoadSuite(slo_file=tmp_path / "slo.yaml")
    target = Target(url="https://api.example", api_key="k", ca_bundle="/ca.pem", label="https://api.example")
    plan = plan_load(RunOptions(max_allocations=4), live=True)
    argv = suite.command(target, RunOptions(seed=9), plan, "lt-1", tmp_path / "r.json")
    assert argv[1:3] == ["-m", "locust"]
    assert "--headless" in argv
    assert "--only-summary" in argv
    flags = ("-u", "-t", "--host", "--slo-file", "--run-id", "--max-allocations", "--ca-bundle", "--workload-seed")
    assert {flag: argv[argv.index(flag) + 1] for flag in flags} == {
        "-u": "2",
        "-t": "10s",
        "--host": "https://api.example",
        "--slo-file": str(tmp_path / "slo.yaml"),
        "--run-id": "lt-1",
        "--max-allocations": "4",
        "--ca-bundle": "/ca.pem",
        "--workload-seed": "9",
    }


@pytest.mark.parametrize(
    ("code", "report", "message"),
    [
        (None, None, "did not finish in time and was killed"),
        (2, None, "locust exited 2 without its report"),
        (0, {"requests": {"count": 0, "failures": 0, "rps": 0}, "gates": [], "exceptions": 0}, "no requests"),
    ],
)
def test_a_broken_run_fails_the_requests_check(
    code: int | None, report: dict[str, object] | None, message: str
) -> None:
    check = _requests_check(report, code, "locust said this")
    assert check.outcome == "failed"
    assert message in check.message


def test_each_gate_becomes_a_check_with_its_outcome() -> None:
    gates = [
        {"label": "total ≥ 1 req/s", "metric": "min_rps", "limit": 1, "actual": 4.5, "requests": 9, "passed": True},
        {"label": "X p50 ≤ 0.001 ms", "metric": "p50_ms", "limit": 0.001, "actual": 3, "requests": 9, "passed": False},
        {"label": "Y p95 ≤ 5 ms", "metric": "p95_ms", "limit": 5, "actual": None, "requests": 0, "passed": None},
    ]
    checks = _slo_checks({"gates": gates, "exceptions": 2}, "Traceback: boom")
    assert [(c.name, c.outcome) for c in checks] == [
        ("load: SLO total ≥ 1 req/s", "passed"),
        ("load: SLO X p50 ≤ 0.001 ms", "failed"),
        ("load: SLO Y p95 ≤ 5 ms", "skipped"),
        ("load: no unhandled exceptions in tasks", "failed"),
    ]
    assert checks[1].message == "p50_ms: actual 3 (limit 0.001, 9 requests)"
    assert "no requests" in checks[2].message
    assert "Traceback: boom" in checks[3].message
