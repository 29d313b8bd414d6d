"""Rendering suite results: the terminal summary, and the CI reports (JUnit XML with one test case per
check, a JSON summary, and a Markdown report whose failures carry their reproductions).

A suite *passes* when at least one of its checks passed and none failed; a suite with no check decided
(all skipped, or skipped as a whole) is *skipped*, never a pass. The run's verdict follows: `failed` if
any suite failed, `passed` if at least one passed, else `undecided`.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from harness.suites.base import SuiteResult
from harness.target import Target, TargetError

Verdict = Literal["passed", "failed", "undecided"]


def report_dir(value: str | None) -> Path | None:
    """The report directory, absolute (relative to where the command was run), created and writable."""
    if value is None:
        return None
    path = Path(value).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".hostedai-harness-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise TargetError(f"--report-dir {value}: cannot write there ({exc.strerror or exc})") from None
    return path


def suite_verdict(result: SuiteResult) -> Literal["PASS", "FAIL", "SKIPPED"]:
    if result.count("failed"):
        return "FAIL"
    if result.skipped_reason or not result.count("passed"):
        return "SKIPPED"
    return "PASS"


def verdict(results: list[SuiteResult]) -> Verdict:
    verdicts = [suite_verdict(r) for r in results]
    if "FAIL" in verdicts:
        return "failed"
    return "passed" if "PASS" in verdicts else "undecided"


def summary_table(results: list[SuiteResult]) -> str:
    rows = [("suite", "checks", "passed", "failed", "skipped", "duration", "result")]
    for r in results:
        rows.append(
            (
                r.suite,
                str(len(r.checks)),
                str(r.count("passed")),
                str(r.count("failed")),
                str(r.count("skipped")),
                f"{r.duration_s:.1f} s",
                suite_verdict(r),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary_line(results: list[SuiteResult], seed: int, examples: int) -> str:
    """The last line of a run: the verdict, the counts, and every skipped suite with its reason."""
    passed = sum(r.count("passed") for r in results)
    failed = sum(r.count("failed") for r in results)
    skipped = sum(r.count("skipped") for r in results)
    head = {"passed": "PASSED", "failed": "FAILED", "undecided": "UNDECIDED"}[verdict(results)]
    line = f"{head}: {passed} checks passed, {failed} failed, {skipped} skipped (seed {seed}, examples {examples})"
    whole = [
        f"{r.suite} skipped: {r.skipped_reason or 'no check was decided'}"
        for r in results
        if suite_verdict(r) == "SKIPPED"
    ]
    return "; ".join([line, *whole])


def failures_text(results: list[SuiteResult]) -> str:
    """What a person reads after a run: each failed check with how to reproduce it, what was skipped and
    why, and the command that replays a failed suite."""
    out: list[str] = []
    for r in results:
        if r.skipped_reason:
            out.append(f"{r.suite}: skipped — {r.skipped_reason}")
        for note in r.notes:
            out.append(f"{r.suite}: {note}")
        skipped = [c for c in r.checks if c.outcome == "skipped"]
        if skipped and not r.skipped_reason:
            reasons: dict[str, int] = {}
            for check in skipped:
                reasons[check.message or "no reason given"] = reasons.get(check.message or "no reason given", 0) + 1
            for reason, count in reasons.items():
                out.append(f"{r.suite}: {count} check(s) skipped — {reason}")
        for check in r.checks:
            if check.outcome != "failed":
                continue
            out.append(f"\nFAILED {check.name}\n{_indent(check.message)}")
            for line in check.reproduce:
                out.append(_indent(line))
        if not r.ok:
            out.append(f"\nreplay: {r.replay}")
    return "\n".join(out).strip()


def write_reports(results: list[SuiteResult], report_dir: Path, target: Target) -> list[Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = [report_dir / "junit.xml", report_dir / "summary.json", report_dir / "report.md"]
    junit(results).write(paths[0], encoding="utf-8", xml_declaration=True)
    paths[1].write_text(json.dumps(_summary(results, target), indent=2) + "\n")
    paths[2].write_text(_markdown(results, target))
    return paths


def junit(results: list[SuiteResult]) -> ET.ElementTree:
    """JUnit XML as Jenkins' xUnit schema wants it: every `testsuite` counts tests, failures, errors
    and skipped; a failure's message says what was expected and what came back."""
    root = ET.Element(
        "testsuites",
        name="hostedai-harness",
        tests=str(sum(len(r.checks) + (1 if r.skipped_reason else 0) for r in results)),
        failures=str(sum(r.count("failed") for r in results)),
        errors="0",
        # No `skipped` here: the schema allows it on each testsuite only.
        time=f"{sum(r.duration_s for r in results):.3f}",
    )
    for r in results:
        suite = ET.SubElement(
            root,
            "testsuite",
            name=r.suite,
            tests=str(len(r.checks) + (1 if r.skipped_reason else 0)),
            failures=str(r.count("failed")),
            errors="0",
            skipped=str(r.count("skipped") + (1 if r.skipped_reason else 0)),
            time=f"{r.duration_s:.3f}",
            timestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        )
        if r.skipped_reason:
            case = ET.SubElement(suite, "testcase", classname=r.suite, name=f"{r.suite}: suite", time="0.000")
            ET.SubElement(case, "skipped", message=r.skipped_reason)
        for check in r.checks:
            case = ET.SubElement(suite, "testcase", classname=r.suite, name=check.name, time=f"{check.duration_s:.3f}")
            if check.outcome == "failed":
                first = check.message.splitlines()[0] if check.message else "failed"
                failure = ET.SubElement(case, "failure", message=first[:1000], type="AssertionError")
                failure.text = "\n".join([check.message, *check.reproduce, f"replay: {r.replay}"])
            elif check.outcome == "skipped":
                ET.SubElement(case, "skipped", message=check.message)
    ET.indent(root)
    return ET.ElementTree(root)


def _summary(results: list[SuiteResult], target: Target) -> dict[str, object]:
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": target.label,
        "ok": verdict(results) == "passed",
        "verdict": verdict(results),
        "suites": [
            {
                "suite": r.suite,
                "ok": r.ok,
                "verdict": suite_verdict(r),
                "skipped_reason": r.skipped_reason,
                "notes": r.notes,
                "duration_s": round(r.duration_s, 3),
                "passed": r.count("passed"),
                "failed": r.count("failed"),
                "skipped": r.count("skipped"),
                "replay": r.replay,
                "checks": [asdict(c) for c in r.checks],
            }
            for r in results
        ],
    }


def _markdown(results: list[SuiteResult], target: Target) -> str:
    lines = [
        "# HostedAI harness report",
        "",
        f"Target: `{target.label}` · {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        "```",
        summary_table(results),
        "```",
        "",
    ]
    failed = [(r, c) for r in results for c in r.checks if c.outcome == "failed"]
    if not failed:
        lines += ["All checks that ran passed." if verdict(results) == "passed" else "Nothing was checked.", ""]
    for r, check in failed:
        lines += [f"## FAILED {check.name}", "", "```", check.message, "```", ""]
        if check.reproduce:
            lines += ["Reproduce:", "", "```sh" if check.reproduce[0].startswith("curl") else "```python"]
            lines += check.reproduce
            lines += ["```", ""]
        lines += [f"Replay the suite: `{r.replay}`", ""]
    skipped = [(r, c) for r in results for c in r.checks if c.outcome == "skipped"]
    whole = [r for r in results if r.skipped_reason]
    if whole or skipped:
        lines += ["## Skipped, and why", ""]
        lines += [f"- {r.suite} (whole suite): {r.skipped_reason}" for r in whole]
        lines += [f"- {c.name}: {c.message}" for _, c in skipped]
        lines.append("")
    notes = [(r, n) for r in results for n in r.notes]
    if notes:
        lines += ["## Notes", ""] + [f"- {r.suite}: {n}" for r, n in notes] + [""]
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def tell(
    results: list[SuiteResult], report_dir: Path | None, target: Target | None, last_line: str, undecided: str
) -> int:
    """What every harness command ends with: the table, the failures, the report files (when asked, and
    there is a target to name), the last line; the exit code follows the verdict, and a run that decided
    nothing is exit 2 with `undecided` on stderr."""
    print()
    print(summary_table(results))
    details = failures_text(results)
    if details:
        print()
        print(details)
    if report_dir is not None and target is not None:
        for path in write_reports(results, report_dir, target):
            print(f"report: {path}")
    outcome = verdict(results)
    print(f"\n{last_line}")
    if outcome == "undecided":
        print(f"hostedai-harness: error: {undecided}", file=sys.stderr)
        return 2
    return 0 if outcome == "passed" else 1
