"""schemathesis over `contracts/hostedai.v1.yaml`, as a program, through the budget proxy.

Every operation, positive and negative data, every check, all four phases (examples, coverage,
fuzzing, and the stateful phase over the contract's OpenAPI links), authenticated; with a second
tenant's key, the two tenants are WFC peers so `object_level_authorization` probes each other's
allocations. One check per operation in the reports, with schemathesis's own failure text and its
curl reproductions rewritten to name the target (not the proxy) and the key's variable (not the key).

Two deliberate settings, both contract choices documented in docs/harness.md: positive data may be
answered 422 (the contract's `unsatisfiable`, which no static schema can express), and `use_after_free`
is off (a released allocation stays readable with `state: released`).
"""

from __future__ import annotations

import asyncio
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import yaml

from harness.resources import HOSTEDAI_CONTRACT
from harness.suites.base import CheckResult, RunOptions
from harness.target import Target

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

PHASES = "examples,coverage,fuzzing,stateful"


def write_config(workdir: Path, target: Target) -> Path:
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


LINK_BODY = "x-request-body"


def with_link_bodies(contract: Path, workdir: Path) -> Path:
    """The contract as schemathesis should read it: each link's `x-request-body` as its `requestBody`.

    The contract keeps a link's body template (allocation_id taken from the allocate answer) in an
    extension because openapi-generator accepts only a string as `requestBody`; schemathesis follows
    the object form, which is what chains allocate → inference in the stateful phase."""
    spec = yaml.safe_load(contract.read_text("utf-8"))
    for item in spec.get("paths", {}).values():
        for operation in item.values():
            for response in (operation.get("responses", {}) if isinstance(operation, dict) else {}).values():
                for link in response.get("links", {}).values():
                    if LINK_BODY in link:
                        link["requestBody"] = link.pop(LINK_BODY)
    path = workdir / contract.name
    path.write_text(yaml.safe_dump(spec, sort_keys=False), "utf-8")
    return path


def command(url: str, config: Path, junit: Path, options: RunOptions, contract: Path = HOSTEDAI_CONTRACT) -> list[str]:
    return [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        str(contract),
        "--url",
        url,
        "--checks",
        "all",
        # Released allocations stay readable by contract; use_after_free assumes DELETE destroys.
        "--exclude-checks",
        "use_after_free",
        "--mode",
        "all",
        "--phases",
        PHASES,
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
        # The harness masks the keys itself; schemathesis's own sanitizer also masks fields such as
        # max_tokens, which turns reproductions into requests that no longer reproduce anything.
        "--output-sanitize",
        "false",
        "--report",
        "junit",
        "--report-junit-path",
        str(junit),
        "--no-color",
    ]


async def run(argv: list[str], workdir: Path, timeout_s: float) -> tuple[int, str]:
    """schemathesis's exit code (-1: killed at the timeout) and its output."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=workdir
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        return -1, f"schemathesis did not finish within {timeout_s:g} s"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return process.returncode or 0, output.decode(errors="replace")


class Masking:
    """Turns what schemathesis printed for the proxy and the real keys into what a user can run."""

    def __init__(self, proxy_url: str, target: Target) -> None:
        self._proxy = proxy_url
        self._target = target
        self._keys = [(target.api_key, target.api_key_env)]
        if target.second_api_key:
            self._keys.append((target.second_api_key, "SECOND_API_KEY"))

    def __call__(self, text: str) -> str:
        text = text.replace(self._proxy, self._target.url)
        for key, variable in self._keys:
            # -H 'Authorization: Bearer KEY' -> -H "Authorization: Bearer $VAR" (the variable must expand).
            text = re.sub(r"'([A-Za-z-]+: Bearer )" + re.escape(key) + "'", rf'"\g<1>${variable}"', text)
            text = text.replace(key, f"${variable}")
        return text


def operation_ids(contract: Path = HOSTEDAI_CONTRACT) -> dict[str, str]:
    """`METHOD /path` (schemathesis's test-case names) -> operationId."""
    spec = yaml.safe_load(contract.read_text("utf-8"))
    return {
        f"{method.upper()} {path}": op["operationId"]
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "operationId" in op
    }


def checks_from_junit(
    path: Path,
    mask: Masking,
    statuses: dict[str, Counter[int]],
    names: dict[str, str],
    without_request_id: Counter[str] | None = None,
) -> list[CheckResult]:
    """One check per operation. An operation mostly answered 429 is reported as untested, not passed;
    a failure that only an intermediary's answer caused is reported as what it is (`_intermediary`)."""
    if not path.exists():
        return []
    checks: list[CheckResult] = []
    for case in ET.parse(path).getroot().iter("testcase"):
        label = case.get("name") or "?"
        name = f"contract: {label}"
        duration = float(case.get("time") or 0)
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        counts = statuses.get(names.get(label, ""), Counter())
        total = sum(counts.values())
        if problem is not None:
            text = mask(problem.text or problem.get("message") or "")
            curls = [line.strip() for line in text.splitlines() if line.strip().startswith("curl ")]
            if (why := _intermediary(text, without_request_id or Counter())) is not None:
                checks.append(CheckResult(name, "passed", duration, why))
            else:
                checks.append(CheckResult(name, "failed", duration, text.strip(), curls))
        elif (skipped := case.find("skipped")) is not None:
            checks.append(CheckResult(name, "skipped", duration, mask(skipped.get("message", ""))))
        elif total and counts[429] / total > 0.5:
            message = f"untested: {counts[429]} of {total} answers were 429 rate_limited"
            checks.append(CheckResult(name, "skipped", duration, message))
        else:
            checks.append(CheckResult(name, "passed", duration, f"{total} request(s)" if total else ""))
    return checks


def _intermediary(text: str, without_request_id: Counter[str]) -> str | None:
    """Why a failure is not the API's, or None. Proxies and gateways (nginx among them) answer TRACE
    themselves with a bare 405; the contract gives every answer of the API an X-Request-Id, so a TRACE
    answered without one never reached it. Only a failure made of such probes alone is set aside."""
    codes = re.findall(r"^- (ST\d{3}) ", text, flags=re.MULTILINE)
    if not codes or set(codes) != {"ST204"} or not without_request_id["TRACE"]:
        return None
    methods = set(re.findall(r"^\s*(?:Unsupported method )?([A-Z]+) returned", text, flags=re.MULTILINE))
    if methods != {"TRACE"}:
        return None
    return (
        "passed, with one probe set aside: TRACE was answered by an intermediary in front of the API (a 405 "
        "without the contract's X-Request-Id), so the API's own answer to it was never seen"
    )
