"""`hostedai-harness` on the command line: exit codes, one-line errors, reports, replay commands, `verify`.

The rule pinned here: a run that could not decide exits 2 with one line on stderr, never 0; a run
against a correct server exits 0; paths are the caller's, relative to where the command was run."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cli import build_parser, main, replay_command
from harness.target import MockProcess, Target


@pytest.fixture(scope="module")
def served_mock() -> Iterator[Target]:
    """A mock process reached by URL, as `make run` serves it: the harness sees a live target."""
    with MockProcess(seed=2).running() as target:
        yield target


def _exit_code(argv: list[str]) -> int | str | None:
    try:
        return main(argv)
    except SystemExit as exited:  # argparse exits itself on usage errors
        return exited.code


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("hostedai-harness")
    assert "error: " in err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["contract", "--examples", "0"], "--examples"),
        (["contract", "--target", "ftp://x"], "--target must be `mock` or an http(s) URL"),
        (["contract", "--target", "mok"], "not 'mok'"),
        (["contract", "--target", "http://127.0.0.1:9", "--api-key-env", "NOPE_NOT_SET"], "NOPE_NOT_SET"),
        (["verify", "--target", "http://127.0.0.1:9"], "verify takes only --target mock"),
        (["stateful", "--ca-bundle", "no-such-ca.pem"], "--ca-bundle no-such-ca.pem: no such file"),
        (["stateful", "--report-dir", "/proc/not-here"], "--report-dir /proc/not-here: cannot write there"),
        (["dance"], "invalid choice"),
        # Not taken for --api-key-env (a variable's name): the key itself never belongs on a command line.
        (["contract", "--target", "http://127.0.0.1:9", "--api-key", "dev-key"], "unrecognized arguments: --api-key"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code(argv) == 2
    assert message in _one_line_error(capsys)


def test_an_unreachable_target_is_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIVE_KEY", "k")
    assert _exit_code(["contract", "--target", "http://127.0.0.1:9", "--api-key-env", "LIVE_KEY"]) == 2
    assert "cannot reach http://127.0.0.1:9: connection refused" in _one_line_error(capsys)


@pytest.mark.parametrize("suite", ["contract", "stateful", "load"])
def test_a_rejected_key_is_exit_2_before_any_suite_claims_success(
    suite: str, served_mock: Target, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPIRED_KEY", "an-expired-ci-secret")
    assert _exit_code([suite, "--target", served_mock.url, "--api-key-env", "EXPIRED_KEY"]) == 2
    err = _one_line_error(capsys)
    assert "rejected the API key in EXPIRED_KEY" in err
    assert "an-expired-ci-secret" not in err


def test_something_that_is_not_hostedai_is_exit_2(
    served_mock: Target, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIVE_KEY", served_mock.api_key)
    assert _exit_code(["stateful", "--target", f"{served_mock.url}/openapi.json", "--api-key-env", "LIVE_KEY"]) == 2
    assert "is not a HostedAI API" in _one_line_error(capsys)


def test_https_to_a_plain_http_server_says_so(
    served_mock: Target, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIVE_KEY", served_mock.api_key)
    https = served_mock.url.replace("http://", "https://")
    assert _exit_code(["stateful", "--target", https, "--api-key-env", "LIVE_KEY"]) == 2
    err = _one_line_error(capsys)
    assert "does not speak TLS; use http://" in err
    assert "--tls-verify" not in err


def test_a_suite_that_could_not_run_at_all_is_undecided_not_passed(
    served_mock: Target, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIVE_KEY", served_mock.api_key)
    assert _exit_code(["chaos", "--target", served_mock.url, "--api-key-env", "LIVE_KEY"]) == 2
    captured = capsys.readouterr()
    assert "SKIPPED" in captured.out
    assert "UNDECIDED" in captured.out
    assert "PASSED" not in captured.out
    assert "nothing was checked: chaos needs the mock's control plane" in captured.err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["stateful", "--seed", "7", "--examples", "3"], "hostedai-harness stateful --seed 7 --examples 3"),
        (
            ["contract", "--target", "https://api.hosted.ai", "--api-key-env", "K", "--max-allocations", "4"],
            "hostedai-harness contract --target https://api.hosted.ai --api-key-env K --max-allocations 4 "
            "--seed 0 --examples 25",
        ),
        (
            ["stateful", "--target", "http://h", "--no-idempotency-key", "--second-api-key-env", "B"],
            "hostedai-harness stateful --target http://h --second-api-key-env B --no-idempotency-key "
            "--seed 0 --examples 25",
        ),
    ],
)
def test_the_replay_command_parses_as_printed(argv: list[str], expected: str) -> None:
    command = replay_command(argv[0], build_parser().parse_args(argv))
    assert command == expected
    again = build_parser().parse_args(shlex.split(command)[1:])
    assert replay_command(again.command, again) == command


def test_verify_passes_on_the_real_mock_and_writes_reports_to_a_relative_directory(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "harness", "verify", "--examples", "3", "--seed", "5", "--report-dir", "reports"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("PASSED: "), last
    assert last.endswith("(seed 5, examples 3)"), last
    for suite in ("contract", "stateful", "chaos", "load"):
        assert any(line.startswith(suite) and line.rstrip().endswith("PASS") for line in result.stdout.splitlines())
    reports = tmp_path / "reports"
    summary = json.loads((reports / "summary.json").read_text())
    assert summary["ok"] is True
    assert [s["suite"] for s in summary["suites"]] == ["contract", "stateful", "chaos", "load"]
    assert (reports / "load" / "slo-report.json").is_file()  # locust wrote where the user asked
    junit = ET.parse(reports / "junit.xml").getroot()
    assert len(list(junit.iter("testcase"))) > 20
    assert all(suite.get("errors") == "0" for suite in junit.iter("testsuite"))
    assert (reports / "report.md").read_text().startswith("# HostedAI harness report")


def test_a_live_run_against_a_correct_server_passes_and_says_what_it_skipped(
    served_mock: Target, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "harness", "stateful", "--target", served_mock.url, "--examples", "5"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HOSTED_AI_API_KEY": served_mock.api_key},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "shared with other clients" in result.stdout  # capacity accounting skipped, and why
    assert "PASSED: " in result.stdout


@pytest.mark.parametrize(("command", "tool"), [("contract", "schemathesis"), ("verify", "locust")])
def test_a_missing_tool_is_one_line_and_exit_2_before_anything_runs(
    command: str, tool: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == tool else real_find_spec(name))
    assert _exit_code([command]) == 2
    err = _one_line_error(capsys)
    assert f"needs {tool}, which is not installed here" in err


def test_a_mock_process_starts_whatever_its_admin_token_begins_with(monkeypatch: pytest.MonkeyPatch) -> None:
    # secrets.token_urlsafe draws from "-" too: a token "-…" once read as a flag (exit 2, ~1 run in 64).
    import harness.target

    monkeypatch.setattr(harness.target.secrets, "token_urlsafe", lambda _: "-starts-like-a-flag")
    with MockProcess(seed=1).running() as target:
        assert target.admin_token == "-starts-like-a-flag"
        from harness.control_plane import SyncControlPlane

        assert SyncControlPlane(target.url, target.admin_token).state()["seed"] == 1
