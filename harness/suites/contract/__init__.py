"""The contract suite: does the target keep the contract in `contracts/hostedai.v1.yaml`?

Two parts, on any target (a mock the run owns, or a live HostedAI by URL):

1. **Behaviour probes** (`probes.py`, judged in `judges.py`): what a schema cannot express — capacity
   given back on release, release idempotent, use after release refused, `Location` and `X-Request-Id`,
   problem+json with the documented codes, `Retry-After` on 429/503, `Idempotency-Key` honoured, list
   filters and pagination, tenant isolation, pool segregation by customer tier (another tier's pool is
   403 `pool_not_permitted`), streams that end with `done`, usage that matches what was generated and
   totals that add up, edge-value numbers.
2. **schemathesis** (`schemathesis_run.py`), every check and phase, through a loopback proxy
   (`proxy.py`) that keeps a live run's allocations within `--max-allocations`, releases every one,
   waits out 429s and counts what each operation was answered.

Against a mock the run owns, the mock is reset first (a clean, seeded start) and the probes also
inject one 503 and one 429 through its control plane, to see their `Retry-After`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry

from harness.connector import ConnectorMetrics, HostedAiConfig, HostedAiConnector, HostedAiError
from harness.control_plane import ControlPlane, ControlPlaneError
from harness.preflight import ssl_setting
from harness.resources import HOSTEDAI_CONTRACT
from harness.suites.base import CheckResult, RunOptions, Stopwatch, SuiteResult
from harness.suites.contract import judges, probes, schemathesis_run
from harness.suites.contract.proxy import BudgetProxy
from harness.suites.shapes import catalogue_shapes
from harness.target import Target

RELEASED = "contract: every allocation released"
CATALOGUE = "contract: catalogue"


class ContractSuite:
    name = "contract"
    needs_control_plane = False

    def __init__(self, contract: Path = HOSTEDAI_CONTRACT, timeout_s: float = 900) -> None:
        self.contract = contract
        self.timeout_s = timeout_s

    async def run(self, target: Target, options: RunOptions) -> SuiteResult:
        watch = Stopwatch()
        result = SuiteResult(self.name)
        owned = target.has_control_plane
        ssl = ssl_setting(target)
        config = HostedAiConfig(base_url=target.url, api_key=target.api_key, max_retries=2, ca_bundle=target.ca_bundle)
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl)) as session,
            HostedAiConnector(config, session=session, metrics=ConnectorMetrics(CollectorRegistry())) as connector,
        ):
            try:
                if owned:
                    await ControlPlane(target.url, target.admin_token or "", session=session).reset(options.seed)
                shapes = await catalogue_shapes(connector)
            except (HostedAiError, ControlPlaneError, ValueError) as exc:
                message = f"could not read the target's models and pools: {exc}"
                result.checks.append(CheckResult(CATALOGUE, "failed", message=message))
                result.duration_s = watch.elapsed
                return result
            budget = None if owned else options.max_allocations
            evidence = await probes.gather(
                target,
                connector,
                shapes["small"],
                budget=budget if budget is not None else 1 << 30,
                idempotency_key=options.idempotency_key,
                owned=owned,
                session=session,
            )
            left = None if budget is None else max(0, budget - len(evidence.allocated))
            with tempfile.TemporaryDirectory(prefix="hostedai-contract-") as tmp:
                workdir = Path(tmp)
                async with BudgetProxy(target, left, ssl) as proxy:
                    mask = schemathesis_run.Masking(proxy.url, target)
                    junit = workdir / "junit.xml"
                    argv = schemathesis_run.command(
                        proxy.url,
                        schemathesis_run.write_config(workdir, target),
                        junit,
                        options,
                        schemathesis_run.with_link_bodies(self.contract, workdir),
                    )
                    code, output = await schemathesis_run.run(argv, workdir, self.timeout_s)
                log = proxy.log
                checks = schemathesis_run.checks_from_junit(
                    junit, mask, log.statuses, schemathesis_run.operation_ids(self.contract), log.without_request_id
                )
                if code not in (0, 1) or (not checks and code != 0):
                    message = f"schemathesis exited {code}:\n{mask(output)[-4000:]}"
                    checks.append(CheckResult("contract: schemathesis run", "failed", message=message))
        evidence.retry_later += log.retry_later
        result.checks += judges.judge_all(evidence)
        result.checks += checks
        result.checks.append(_released(log.released_after))
        if log.refused_by_budget:
            result.notes.append(
                f"{log.refused_by_budget} generated allocate(s) were answered 403 by the harness itself: this run's "
                f"budget of {options.max_allocations} allocations (--max-allocations) was spent"
            )
        for operation, (limited, total) in log.mostly_rate_limited().items():
            result.notes.append(f"{operation}: {limited} of {total} answers were 429 — that operation went untested")
        result.duration_s = watch.elapsed
        return result


def _released(after: dict[str, str | None]) -> CheckResult:
    failed = {a: why for a, why in after.items() if why is not None}
    if failed:
        lines = [f"- {a}: {why}" for a, why in failed.items()]
        return CheckResult(
            RELEASED, "failed", message="could not release what schemathesis allocated:\n" + "\n".join(lines)
        )
    return CheckResult(
        RELEASED, "passed", message=f"{len(after)} allocation(s) made by generated requests, all released"
    )
