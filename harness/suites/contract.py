"""The contract suite: schemathesis runs `contracts/hostedai.v1.yaml` against the target.

Every operation, positive and negative data, every check, and the stateful phase over the contract's
OpenAPI links, authenticated; with a second tenant's key, the two tenants are WFC peers so
`object_level_authorization` probes each other's allocations. One check per operation in the reports,
with schemathesis's own failure text and its curl reproductions.

Against a live HostedAI nothing may allocate at random (it costs money): allocate is left out (even
"negative" generation can produce a request a server accepts), as is the stateful phase, which follows
allocate links; every other operation runs in every mode. Inference needs an allocation of the
tenant's, which generated ids never are, so it cannot run a paid inference either.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.contracts import HOSTEDAI_CONTRACT
from harness.suites.base import CheckResult, RunOptions, Stopwatch, SuiteResult, Target

# The contract documents 422 for schema-valid requests that no GPU could satisfy and for max_tokens
# above a model's limit, which no static schema can express: positive data may be answered 422.
_CONFIG = """\
[cache]
enabled = false

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
"""

_PEERS = """\
[auth.wfc]
path = "{wfc}"
peers = ["tenant-a", "tenant-b"]
"""

_WFC = """\
auth:
  - name: tenant-a
    fixedHeaders: [{{name: Authorization, value: "Bearer {a}"}}]
  - name: tenant-b
    fixedHeaders: [{{name: Authorization, value: "Bearer {b}"}}]
"""

_SINGLE = """\
[auth.openapi.bearerAuth]
bearer = "{a}"
"""


class ContractSuite:
    name = "contract"
    needs_control_plane = False

    def __init__(self, contract: Path = HOSTEDAI_CONTRACT, timeout_s: float = 900) -> None:
        self.contract = contract
        self.timeout_s = timeout_s

    async def run(self, target: Target, options: RunOptions) -> SuiteResult:
        watch = Stopwatch()
        result = SuiteResult(self.name, replay=f"--seed {options.seed} --examples {options.examples}")
        with tempfile.TemporaryDirectory(prefix="hostedai-contract-") as tmp:
            workdir = Path(tmp)
            config = self._write_config(workdir, target)
            if target.has_control_plane:
                runs = [("all", ["--mode", "all", "--phases", "examples,coverage,fuzzing,stateful"])]
            else:
                live = ["--mode", "all", "--exclude-operation-id", "createAllocation"]
                runs = [("live", [*live, "--phases", "examples,coverage,fuzzing"])]
            for label, args in runs:
                junit = workdir / f"junit-{label}.xml"
                code, output = await self._schemathesis(target, options, config, junit, args, workdir)
                checks = _checks_from_junit(junit, None if label == "all" else label)
                if code not in (0, 1) or (not checks and code != 0):
                    checks.append(
                        CheckResult(
                            f"contract: schemathesis run ({label})",
                            "failed",
                            message=f"schemathesis exited {code}:\n{output[-4000:]}",
                        )
                    )
                result.checks.extend(checks)
        result.duration_s = watch.elapsed
        return result

    def _write_config(self, workdir: Path, target: Target) -> Path:
        text = _CONFIG
        if target.second_api_key:
            wfc = workdir / "wfc-auth.yaml"
            wfc.write_text(_WFC.format(a=target.api_key, b=target.second_api_key))
            text += _PEERS.format(wfc=wfc)
        else:
            text += _SINGLE.format(a=target.api_key)
        path = workdir / "schemathesis.toml"
        path.write_text(text)
        return path

    async def _schemathesis(
        self,
        target: Target,
        options: RunOptions,
        config: Path,
        junit: Path,
        args: list[str],
        workdir: Path,
    ) -> tuple[int, str]:
        argv = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config),
            "run",
            str(self.contract),
            "--url",
            target.url,
            "--checks",
            "all",
            # Released allocations stay readable by contract; use_after_free assumes DELETE destroys.
            "--exclude-checks",
            "use_after_free",
            "--max-examples",
            str(options.examples),
            "--seed",
            str(options.seed),
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "60",
            "--report",
            "junit",
            "--report-junit-path",
            str(junit),
            "--no-color",
            *(["--tls-verify", target.ca_bundle] if target.ca_bundle else []),
            *args,
        ]
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=workdir
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), timeout=self.timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()
            return -1, f"schemathesis did not finish within {self.timeout_s:g} s"
        return process.returncode or 0, output.decode(errors="replace")


def _checks_from_junit(path: Path, label: str | None) -> list[CheckResult]:
    if not path.exists():
        return []
    checks: list[CheckResult] = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"contract: {case.get('name')}" + (f" ({label})" if label else "")
        duration = float(case.get("time") or 0)
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            text = problem.text or problem.get("message") or ""
            curls = [line.strip() for line in text.splitlines() if line.strip().startswith("curl ")]
            checks.append(CheckResult(name, "failed", duration, text.strip(), curls))
        elif case.find("skipped") is not None:
            checks.append(CheckResult(name, "skipped", duration, case.find("skipped").get("message", "")))  # type: ignore[union-attr]
        else:
            checks.append(CheckResult(name, "passed", duration))
    return checks
