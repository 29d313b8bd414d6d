"""Rendering suite results: the terminal summary table, and the CI reports (JUnit XML with one test
case per check, a JSON summary, and a Markdown report whose failures carry their curl reproductions)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from harness.suites.base import SuiteResult, Target


def summary_table(results: list[SuiteResult]) -> str:
    rows = [("suite", "checks", "passed", "failed", "skipped", "duration", "result")]
    for r in results:
        verdict = "SKIPPED" if r.skipped_reason else ("PASS" if r.ok else "FAIL")
        rows.append(
            (
                r.suite,
                str(len(r.checks)),
                str(r.count("passed")),
                str(r.count("failed")),
                str(r.count("skipped")),
                f"{r.duration_s:.1f} s",
                verdict,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def failures_text(results: list[SuiteResult], command: str) -> str:
    """What a person reads after a failed run: each failed check, how to reproduce it, the replay."""
    out: list[str] = []
    for r in results:
        if r.skipped_reason:
            out.append(f"{r.suite}: skipped — {r.skipped_reason}")
        for check in r.checks:
            if check.outcome != "failed":
                continue
            out.append(f"\nFAILED {check.name}\n{_indent(check.message)}")
            for line in check.reproduce:
                out.append(_indent(line))
        if not r.ok:
            out.append(f"\nreplay: {command} {r.suite} {r.replay}".rstrip())
    return "\n".join(out).strip()


def write_reports(results: list[SuiteResult], report_dir: Path, target: Target, command: str) -> list[Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = [report_dir / "junit.xml", report_dir / "summary.json", report_dir / "report.md"]
    _junit(results).write(paths[0], encoding="utf-8", xml_declaration=True)
    paths[1].write_text(json.dumps(_summary(results, target, command), indent=2) + "\n")
    paths[2].write_text(_markdown(results, target, command))
    return paths


def _junit(results: list[SuiteResult]) -> ET.ElementTree:
    root = ET.Element("testsuites")
    for r in results:
        suite = ET.SubElement(
            root,
            "testsuite",
            name=r.suite,
            tests=str(len(r.checks)),
            failures=str(r.count("failed")),
            skipped=str(r.count("skipped") + (1 if r.skipped_reason else 0)),
            time=f"{r.duration_s:.3f}",
        )
        if r.skipped_reason:
            case = ET.SubElement(suite, "testcase", classname=r.suite, name=f"{r.suite}: suite")
            ET.SubElement(case, "skipped", message=r.skipped_reason)
        for check in r.checks:
            case = ET.SubElement(suite, "testcase", classname=r.suite, name=check.name, time=f"{check.duration_s:.3f}")
            if check.outcome == "failed":
                failure = ET.SubElement(case, "failure", message=check.message.splitlines()[0] if check.message else "")
                failure.text = "\n".join([check.message, *check.reproduce])
            elif check.outcome == "skipped":
                ET.SubElement(case, "skipped", message=check.message)
    ET.indent(root)
    return ET.ElementTree(root)


def _summary(results: list[SuiteResult], target: Target, command: str) -> dict[str, object]:
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": target.label,
        "ok": all(r.ok for r in results),
        "suites": [
            {
                "suite": r.suite,
                "ok": r.ok,
                "skipped_reason": r.skipped_reason,
                "duration_s": round(r.duration_s, 3),
                "passed": r.count("passed"),
                "failed": r.count("failed"),
                "skipped": r.count("skipped"),
                "replay": f"{command} {r.suite} {r.replay}".rstrip(),
                "checks": [asdict(c) for c in r.checks],
            }
            for r in results
        ],
    }


def _markdown(results: list[SuiteResult], target: Target, command: str) -> str:
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
        lines.append("All checks passed." if all(r.ok for r in results) else "")
    for r, check in failed:
        lines += [f"## FAILED {check.name}", "", "```", check.message, "```", ""]
        if check.reproduce:
            lines += ["Reproduce:", "", "```sh" if check.reproduce[0].startswith("curl") else "```python"]
            lines += check.reproduce
            lines += ["```", ""]
        lines += [f"Replay the suite: `{command} {r.suite} {r.replay}`", ""]
    skipped = [r for r in results if r.skipped_reason]
    if skipped:
        lines += ["## Skipped suites", ""] + [f"- {r.suite}: {r.skipped_reason}" for r in skipped] + [""]
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
