"""The harness's self-test: does it catch real defects, and does it never flag a correct server?

    python -m benchmarks.selftest                       # everything; rewrites the table in docs/harness.md
    python -m benchmarks.selftest --part catalogue --defects allocate-200,pages-skip
    python -m benchmarks.selftest --part false-alarms --seeds 20 --examples 25

- catalogue: every broken server of `defects.py` served on loopback, `hostedai-harness contract` and
  `stateful` run against its URL in live mode (as a user runs them, a subprocess each, with a second
  tenant's key), and plain `schemathesis run --checks all` against the same URL. A defect is caught by
  the harness when the check named for it failed; by schemathesis when it reported any failure other
  than the two contract choices the harness documents (ST202 on a 422, ST301 use-after-free).
- false-alarms: the correct mock, by URL and behind nginx, for seeds 1..N: every live suite (contract,
  stateful, load) must exit 0.

All traffic stays on 127.0.0.1; every run is bounded (the suites' own limits, and a timeout each).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.selftest.defects import CATALOGUE, Defect
from benchmarks.selftest.servers import nginx_proxy, served_mock

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "harness.md"
BEGIN, END = "<!-- selftest:begin -->", "<!-- selftest:end -->"
CONTRACT = ROOT / "contracts" / "hostedai.v1.yaml"
RUN_TIMEOUT_S = 900
# What plain schemathesis flags on a correct mock, by the contract's own choices (docs/harness.md):
# positive data answered 422 (`unsatisfiable`) and released allocations that stay readable.
DOCUMENTED = re.compile(r"^(ST301|ST202@422)$")


@dataclass(slots=True)
class HarnessRun:
    exit_code: int
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(slots=True)
class Row:
    defect: Defect
    harness: dict[str, HarnessRun]
    plain: list[str]
    """schemathesis's failure codes (`ST101`, `ST202@400`...) outside the documented ones."""

    @property
    def failed(self) -> list[str]:
        return [name for run in self.harness.values() for name in run.failed]

    @property
    def caught(self) -> bool:
        return self.defect.check in self.failed


async def _harness(suite: str, url: str, seed: int, examples: int, workdir: Path, *, owned: bool = False) -> HarnessRun:
    """One suite as a user runs it; `owned`: given the mock's admin token too (the run owns the target)."""
    reports = workdir / f"{suite}-{seed}"
    argv = [
        sys.executable, "-m", "harness", suite, "--target", url, "--second-api-key-env", "SELFTEST_SECOND_KEY",
        "--seed", str(seed), "--examples", str(examples), "--report-dir", str(reports),
    ]  # fmt: skip
    if owned:
        argv += ["--admin-token-env", "SELFTEST_ADMIN_TOKEN"]
    env = {
        **os.environ,
        "HOSTED_AI_API_KEY": "dev-key",
        "SELFTEST_SECOND_KEY": "team-b-key",
        "SELFTEST_ADMIN_TOKEN": "dev-admin",  # the default config's, on loopback
    }
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    seconds = time.monotonic() - started
    summary = reports / "summary.json"
    if not summary.exists():
        return HarnessRun(process.returncode or 0, [f"(no report: {output.decode(errors='replace')[-300:]})"], seconds)
    data = json.loads(summary.read_text())
    failed = [c["name"] for s in data["suites"] for c in s["checks"] if c["outcome"] == "failed"]
    return HarnessRun(process.returncode or 0, failed, seconds)


async def _plain_schemathesis(url: str, seed: int, workdir: Path) -> list[str]:
    junit = workdir / f"plain-{seed}.xml"
    argv = [
        sys.executable, "-m", "schemathesis.cli", "run", str(CONTRACT), "--url", url, "--checks", "all",
        "-H", "Authorization: Bearer dev-key", "--seed", str(seed), "--workers", "1",
        "--generation-database", "none", "--report", "junit", "--report-junit-path", str(junit), "--no-color",
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=workdir, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    await asyncio.wait_for(process.wait(), RUN_TIMEOUT_S)
    return undocumented_failures(junit)


def undocumented_failures(junit: Path) -> list[str]:
    """schemathesis's failure codes in a JUnit report, each with the status it saw (`ST202@400`),
    minus those a correct mock also gets for the contract's documented choices."""
    if not junit.exists():
        return ["(no report)"]
    found: set[str] = set()
    for case in ET.parse(junit).getroot().iter("testcase"):
        for problem in [*case.findall("failure"), *case.findall("error")]:
            text = problem.text or ""
            for block in re.split(r"\n(?=- ST\d{3} )", text):
                code = re.search(r"- (ST\d{3}) ", block)
                if code is None:
                    continue
                status = re.search(r"\n\[(\d{3})\]", block)
                label = f"{code.group(1)}@{status.group(1)}" if status and code.group(1) == "ST202" else code.group(1)
                if not DOCUMENTED.match(label):
                    found.add(f"{case.get('name')}: {label}")
    return sorted(found)


async def catalogue(defects: list[Defect], seed: int, examples: int) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="selftest-") as tmp:
        workdir = Path(tmp)
        for defect in [None, *defects]:
            async with served_mock(defect, seed=seed) as url:
                owned = defect is not None and defect.owned
                runs = {
                    s: await _harness(
                        s, url, seed, examples, workdir / (defect.name if defect else "clean"), owned=owned
                    )
                    for s in ("contract", "stateful")
                }
                (workdir / "plain").mkdir(exist_ok=True)
                plain = await _plain_schemathesis(url, seed, workdir / "plain")
            if defect is None:
                clean = Row(Defect("clean", "the correct mock", ""), runs, plain)
                print(
                    f"clean mock: harness failed {clean.failed or 'nothing'}; schemathesis {plain or 'nothing'}",
                    flush=True,
                )
                rows.append(clean)
                continue
            row = Row(defect, runs, plain)
            print(
                f"{defect.name}: harness {'CAUGHT' if row.caught else 'MISSED'} ({', '.join(row.failed) or '-'}); "
                f"schemathesis {'caught' if plain else 'missed'} ({', '.join(plain) or '-'})",
                flush=True,
            )
            rows.append(row)
    return rows


async def false_alarms(seeds: int, examples: int) -> dict[str, list[tuple[int, str, int]]]:
    """(seed, suite, exit code) of every run that did not exit 0, by route (direct / behind nginx)."""
    alarms: dict[str, list[tuple[int, str, int]]] = {"direct": [], "nginx": []}
    with tempfile.TemporaryDirectory(prefix="selftest-fa-") as tmp:
        for seed in range(1, seeds + 1):
            async with served_mock(None, seed=seed) as url:
                with nginx_proxy(url) as proxied:
                    for route, target in (("direct", url), ("nginx", proxied)):
                        for suite in ("contract", "stateful", "load"):
                            run = await _harness(suite, target, seed, examples, Path(tmp) / route)
                            if run.exit_code != 0:
                                alarms[route].append((seed, suite, run.exit_code))
                                print(
                                    f"FALSE ALARM seed {seed} {route} {suite}: exit {run.exit_code} {run.failed}",
                                    flush=True,
                                )
            print(f"seed {seed}: done", flush=True)
    return alarms


def table(rows: list[Row]) -> str:
    lines = [
        "| defect | what is broken | check that must flag it | harness | plain `schemathesis run --checks all` |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        if row.defect.name == "clean":
            continue
        harness = ("**caught**" if row.caught else "MISSED") + (" (owned target)" if row.defect.owned else "")
        plain = ("caught: " + ", ".join(sorted({p.split(": ")[1] for p in row.plain}))) if row.plain else "missed"
        lines.append(f"| `{row.defect.name}` | {row.defect.description} | {row.defect.check} | {harness} | {plain} |")
    return "\n".join(lines)


def write_doc(rows: list[Row], alarms: dict[str, list[tuple[int, str, int]]] | None, command: str, seeds: int) -> None:
    defects = [r for r in rows if r.defect.name != "clean"]
    clean = next((r for r in rows if r.defect.name == "clean"), None)
    caught = sum(r.caught for r in defects)
    plain = sum(bool(r.plain) for r in defects)
    parts = [
        BEGIN,
        f"Produced by `{command}` on {time.strftime('%Y-%m-%d')} ({len(defects)} broken servers, live mode: "
        "each served by URL, the harness given only the public API and two tenants' keys; a defect marked "
        "*owned target* is one no run can tell from a correct live service, so there the harness is given the "
        "mock's admin token too, as `make verify` is).",
        "",
        f"**Harness: {caught} of {len(defects)} caught** by the check named for each; plain schemathesis flagged "
        f"{plain} of {len(defects)}. Clean server: harness flagged "
        f"{', '.join(clean.failed) if clean and clean.failed else 'nothing'}; plain schemathesis flagged "
        f"{', '.join(clean.plain) if clean and clean.plain else 'nothing beyond the documented choices'}.",
        "",
        table(rows),
    ]
    if alarms is not None:
        total = sum(len(v) for v in alarms.values())
        parts += [
            "",
            f"False alarms on the correct mock, seeds 1–{seeds}, contract + stateful + load, by URL and behind "
            f"nginx: **{total}**" + (f" ({alarms})" if total else "") + ".",
        ]
    parts.append(END)
    text = DOC.read_text()
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + "\n".join(parts) + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + "\n".join(parts) + "\n"
    DOC.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.selftest")
    parser.add_argument("--part", choices=["all", "catalogue", "false-alarms"], default="all")
    parser.add_argument("--defects", help="comma-separated names (default: the whole catalogue)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--examples", type=int, default=25)
    args = parser.parse_args()
    chosen = [d for d in CATALOGUE if not args.defects or d.name in args.defects.split(",")]
    rows = asyncio.run(catalogue(chosen, args.seed, args.examples)) if args.part != "false-alarms" else []
    alarms = asyncio.run(false_alarms(args.seeds, args.examples)) if args.part != "catalogue" else None
    if args.part == "all" and not args.defects:
        write_doc(rows, alarms, " ".join(["python -m benchmarks.selftest", *sys.argv[1:]]), args.seeds)
    missed = [r.defect.name for r in rows if r.defect.name != "clean" and not r.caught]
    clean_failed = [r.failed for r in rows if r.defect.name == "clean" and r.failed]
    print(
        f"\nmissed: {missed or 'none'}; clean server flagged: {clean_failed or 'nothing'}; "
        f"false alarms: {sum(len(v) for v in alarms.values()) if alarms else 'not run'}"
    )
    return 1 if missed or clean_failed or (alarms and any(alarms.values())) else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
