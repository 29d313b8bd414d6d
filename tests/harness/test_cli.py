"""`hostedai-harness` on the command line: exit codes, one-line errors, reports, and `verify`."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["contract", "--examples", "0"], "--examples"),
        (["contract", "--target", "ftp://x"], "--target must be `mock` or an http(s) URL"),
        (["contract", "--target", "http://127.0.0.1:9", "--api-key-env", "NOPE_NOT_SET"], "NOPE_NOT_SET"),
        (["verify", "--target", "http://127.0.0.1:9"], "verify runs against the embedded mock"),
        (["dance"], "invalid choice"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("hostedai-harness")
    assert "error: " in err
    assert message in err


def _exit_code(argv: list[str]) -> int | str | None:
    try:
        return main(argv)
    except SystemExit as exited:  # argparse exits itself on usage errors
        return exited.code


def test_a_suite_needing_the_control_plane_is_skipped_against_a_live_target(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIVE_KEY", "k")
    assert main(["chaos", "--target", "http://127.0.0.1:9", "--api-key-env", "LIVE_KEY"]) == 0
    out = capsys.readouterr().out
    assert "SKIPPED" in out
    assert "needs the mock's control plane" in out


def test_verify_passes_on_the_real_mock_and_writes_reports(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "harness", "verify", "--examples", "3", "--seed", "5", "--report-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED (seed 5, examples 3)" in result.stdout
    for suite in ("contract", "stateful", "chaos", "load"):
        assert any(line.startswith(suite) and line.rstrip().endswith("PASS") for line in result.stdout.splitlines())
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ok"] is True
    assert [s["suite"] for s in summary["suites"]] == ["contract", "stateful", "chaos", "load"]
    junit = ET.parse(tmp_path / "junit.xml").getroot()
    assert len(list(junit.iter("testcase"))) > 20
    assert (tmp_path / "report.md").read_text().startswith("# HostedAI harness report")
