"""The load suite: locust, headless, runs loadtests/locustfile.py against the target and its SLO gates.

`loadtests/` is a locust project of its own (it imports neither the harness nor the mock); this suite
runs it as a program, bounded by a hard timeout, and reads the report it writes at the end of the run
(`--slo-report`: the wire requests and every gate's verdict) into checks:

- `load: requests were made`: the run ended by itself and made wire requests (SIM rows aside);
- `load: SLO <row> <gate>`: one per gate of the SLO file (loadtests/slo.yaml), as the run judged it
  (skipped when the row had no requests);
- `load: no allocation leaked`: nothing of this run is still held (`leaks.py`). With a control plane,
  the mock's leak report (nothing `still_active`, nothing `expired_unreleased`) for the allocations
  carrying this run's label; without one, the public list of active allocations with that label.

With `--report-dir`, locust's CSV stats, its HTML report and the SLO report are kept in `<dir>/load/`.

Size scales gently with `--examples` (25: 10 users for about 12 s). Against a live HostedAI the run is
bounded hard: at most 2 users for 10 s and at most `--max-allocations` allocations, each released by
the session that made it, or by the locustfile's clean-up when the run stops (docs/load.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from harness.connector import ConnectorMetrics, HostedAiConfig, HostedAiConnector, HostedAiError
from harness.control_plane import ControlPlane
from harness.resources import LOADTESTS_DIR
from harness.suites import leaks
from harness.suites.base import CheckResult, Outcome, RunOptions, Stopwatch, SuiteResult
from harness.target import Target

RUN_LABEL = "loadtest_run"


@dataclass(frozen=True, slots=True)
class LoadPlan:
    users: int
    spawn_rate: float
    run_time_s: int
    max_allocations: int = 0
    """0: no limit (a mock); a live target: `RunOptions.max_allocations`."""


def plan_load(options: RunOptions, live: bool) -> LoadPlan:
    """Depth → size: 25 examples are 10 users for 12 s; 3 are 3 users for 5 s; 100 are 35 users for 35 s."""
    users = min(50, 2 + options.examples // 3)
    run_time_s = min(60, 5 + options.examples * 3 // 10)
    if live:
        return LoadPlan(min(2, users), 1.0, min(10, run_time_s), options.max_allocations)
    return LoadPlan(users, float(users), run_time_s)


class LoadSuite:
    name = "load"
    needs_control_plane = False

    def __init__(
        self,
        loadtests: Path = LOADTESTS_DIR,
        slo_file: Path | None = None,
        startup_timeout_s: float = 90,
    ) -> None:
        self.loadtests = loadtests
        self.slo_file = slo_file or loadtests / "slo.yaml"
        self.startup_timeout_s = startup_timeout_s

    async def run(self, target: Target, options: RunOptions) -> SuiteResult:
        watch = Stopwatch()
        result = SuiteResult(self.name, replay=f"--seed {options.seed} --examples {options.examples}")
        problem = self._missing()
        if problem:
            result.checks.append(CheckResult("load: locust run", "failed", message=problem))
            result.duration_s = watch.elapsed
            return result
        plan = plan_load(options, live=not target.has_control_plane)
        run_id = f"lt-{uuid.uuid4().hex[:12]}"
        with tempfile.TemporaryDirectory(prefix="hostedai-load-") as tmp:
            workdir = Path(tmp)
            artifacts = options.report_dir / "load" if options.report_dir else None
            if artifacts:
                artifacts.mkdir(parents=True, exist_ok=True)
            slo_report = (artifacts or workdir) / "slo-report.json"
            slo_report.unlink(missing_ok=True)  # a report left by an earlier run must not pass for this one's
            code, output = await self._locust(target, options, plan, run_id, workdir, artifacts, slo_report)
            report = _read_report(slo_report)
            result.checks.append(_requests_check(report, code, output))
            result.checks.extend(_slo_checks(report, output))
        result.checks.append(await _leak_check(target, run_id))
        result.duration_s = watch.elapsed
        return result

    def _missing(self) -> str | None:
        if find_spec("locust") is None:
            return "locust is not installed in this environment: pip install 'locust>=2.20'"
        if not (self.loadtests / "locustfile.py").is_file():
            return f"no locustfile at {self.loadtests / 'locustfile.py'} (the checkout's loadtests/ directory)"
        return None

    def command(
        self,
        target: Target,
        options: RunOptions,
        plan: LoadPlan,
        run_id: str,
        slo_report: Path,
        artifacts: Path | None = None,
    ) -> list[str]:
        return [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(self.loadtests / "locustfile.py"),
            "--headless",
            "--only-summary",
            "-u",
            str(plan.users),
            "-r",
            str(plan.spawn_rate),
            "-t",
            f"{plan.run_time_s}s",
            "--host",
            target.url,
            "--slo-file",
            str(self.slo_file),
            "--slo-report",
            str(slo_report),
            "--run-id",
            run_id,
            "--workload-seed",
            str(options.seed),
            "--max-allocations",
            str(plan.max_allocations),
            *(["--ca-bundle", target.ca_bundle] if target.ca_bundle else []),
            *(["--csv", str(artifacts / "locust"), "--html", str(artifacts / "locust.html")] if artifacts else []),
        ]

    async def _locust(
        self,
        target: Target,
        options: RunOptions,
        plan: LoadPlan,
        run_id: str,
        workdir: Path,
        artifacts: Path | None,
        slo_report: Path,
    ) -> tuple[int | None, str]:
        """Locust's exit code (None: killed at the hard timeout) and its output."""
        process = await asyncio.create_subprocess_exec(
            *self.command(target, options, plan, run_id, slo_report, artifacts),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=workdir,  # locust reads ./locust.conf and ./pyproject.toml: none here
            # LOCUST_* variables would change the run behind the suite's back (locust reads them as options).
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")},
                "HOSTED_AI_API_KEY": target.api_key,
            },
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), timeout=plan.run_time_s + self.startup_timeout_s)
        except TimeoutError:
            return None, (await _stop(process)).decode(errors="replace")
        finally:
            if process.returncode is None:  # cancelled
                await asyncio.shield(_stop(process))
        return process.returncode, output.decode(errors="replace")


async def _stop(process: asyncio.subprocess.Process, grace_s: float = 30) -> bytes:
    """SIGTERM first: locust then stops its users, which release what they hold; SIGKILL after `grace_s`."""
    process.terminate()
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=grace_s)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
    return output


def _tail(output: str) -> str:
    return output[-4000:]


def _read_report(path: Path) -> Mapping[str, Any] | None:
    try:
        report: Mapping[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return report


def _requests_check(report: Mapping[str, Any] | None, code: int | None, output: str) -> CheckResult:
    name = "load: requests were made"
    if code is None:
        return CheckResult(name, "failed", message=f"locust did not finish in time and was killed:\n{_tail(output)}")
    if code not in (0, 1):
        return CheckResult(name, "failed", message=f"locust exited {code} without its report:\n{_tail(output)}")
    if report is None:
        message = f"locust exited {code} but wrote no report, so its figures cannot be judged:\n{_tail(output)}"
        return CheckResult(name, "failed", message=message)
    requests = report["requests"]
    limited = int(report.get("rate_limited", 0))
    summary = f"{requests['count']} requests, {requests['failures']} failed, {requests['rps']:g} req/s"
    if limited:
        summary += f"; {limited} more answered 429 and honoured (Retry-After)"
    if limited > requests["count"]:
        return CheckResult(name, "skipped", message=f"untested: the target rate-limited most of the run ({summary})")
    if not requests["count"]:
        return CheckResult(name, "failed", message=f"no requests were made:\n{_tail(output)}")
    return CheckResult(name, "passed", message=summary)


def _slo_checks(report: Mapping[str, Any] | None, output: str) -> list[CheckResult]:
    if report is None:
        return []  # the requests check says why
    checks = []
    for gate in report["gates"]:
        actual = "no requests" if gate["actual"] is None else f"{gate['actual']:g}"
        message = f"{gate['metric']}: actual {actual} (limit {gate['limit']:g}, {gate['requests']} requests)"
        outcome: Outcome = "skipped" if gate["passed"] is None else "passed" if gate["passed"] else "failed"
        checks.append(CheckResult(f"load: SLO {gate['label']}", outcome, message=message))
    if report["exceptions"]:
        message = f"{report['exceptions']} unhandled exception(s) in locust tasks:\n{_tail(output)}"
        checks.append(CheckResult("load: no unhandled exceptions in tasks", "failed", message=message))
    return checks


async def _leak_check(target: Target, run_id: str) -> CheckResult:
    name = "load: no allocation leaked"
    labels = {RUN_LABEL: run_id}
    config = HostedAiConfig(base_url=target.url, api_key=target.api_key, max_retries=2, ca_bundle=target.ca_bundle)
    async with HostedAiConnector(config, metrics=ConnectorMetrics(CollectorRegistry())) as connector:
        if not target.has_control_plane:
            return leaks.judge(name, await leaks.from_public_list(connector, labels))
        try:
            ours = {a.allocation_id for a in await connector.list_allocations(labels=labels)}
        except HostedAiError as exc:
            return CheckResult(name, "failed", message=f"cannot tell: could not list this run's allocations: {exc}")
        async with ControlPlane(target.url, target.admin_token or "", session=connector.session) as admin:
            return leaks.judge(name, await leaks.from_leak_report(admin, only=ours))
