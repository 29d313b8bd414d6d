"""`HostedAiUser` run by locust itself, headless, against the mock: it makes the requests it documents,
its SLO gate passes and fails as the SLO file says, its shapes end the run by themselves, and however
the run stops, nothing stays allocated."""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import time
from pathlib import Path

from harness.target import Target

from .conftest import LAX_SLO, LOADTESTS, LOCUSTFILE, admin, journal, leaks, locust_argv, run_locust

SHAPES = LOADTESTS / "shapes.py"
ROWS = {
    ("POST", "/v1/allocate"),
    ("POST", "/v1/inference"),
    ("POST", "/v1/inference [stream]"),
    ("DELETE", "/v1/allocate/[id]"),
    ("SIM", "ttft_ms"),
    ("SIM", "queue_ms"),
}


def _stats(prefix: Path) -> dict[tuple[str, str], dict[str, str]]:
    with Path(f"{prefix}_stats.csv").open(newline="") as f:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}


def test_a_run_makes_every_request_passes_a_lax_slo_and_leaks_nothing(hostedai_mock: Target, tmp_path: Path) -> None:
    report = tmp_path / "slo.json"
    run = run_locust(
        tmp_path,
        *("-f", str(LOCUSTFILE), "-u", "6", "-r", "6", "-t", "4s", "--host", hostedai_mock.url),
        *("--slo-file", str(LAX_SLO), "--slo-report", str(report), "--csv", str(tmp_path / "run")),
    )
    assert run.returncode == 0, run.stdout
    verdict = json.loads(report.read_text())
    assert verdict["ok"] is True
    assert verdict["requests"]["count"] > 20
    assert verdict["requests"]["failures"] == 0
    assert {g["passed"] for g in verdict["gates"]} == {True}
    assert run.stdout.rstrip().endswith(f"SLO PASSED ({len(verdict['gates'])} gates)")  # after locust's summary

    stats = _stats(tmp_path / "run")
    assert set(stats) >= ROWS
    assert all(int(stats[row]["Request Count"]) > 0 for row in ROWS)
    # Every session released what it allocated, each allocate with a key of its own. (A user stopped while
    # its release was in flight releases again from on_stop: a release is idempotent, so count ids, not calls.)
    allocates = journal(hostedai_mock, "allocate")
    released = {e["allocation_id"] for e in journal(hostedai_mock, "release")}
    assert allocates
    assert {e["allocation_id"] for e in allocates} == released
    keys = [e["idempotency_key"] for e in allocates]
    assert all(keys)
    assert len(set(keys)) == len(keys)
    assert leaks(hostedai_mock) == []


def test_an_impossible_slo_fails_the_run_with_exit_code_1(hostedai_mock: Target, tmp_path: Path) -> None:
    impossible = tmp_path / "impossible.yaml"
    impossible.write_text(
        "users:\n  HostedAiUser:\n    SIM ttft_ms: {p50_ms: 100000}\ntotal: {p99_ms: 0.001, max_error_rate: 0.5}\n"
    )
    run = run_locust(
        tmp_path,
        *("-f", str(LOCUSTFILE), "-u", "3", "-r", "3", "-t", "2s", "--host", hostedai_mock.url),
        *("--slo-file", str(impossible), "--only-summary"),
    )
    assert run.returncode == 1, run.stdout
    rows = {
        tuple(line.split()[:2]): line.split()[-1] for line in run.stdout.splitlines() if line.endswith(("PASS", "FAIL"))
    }
    assert rows == {("SIM", "ttft_ms"): "PASS", ("total", "p99_ms"): "FAIL", ("total", "max_error_rate"): "PASS"}
    assert "SLO FAILED (1 of 3 gates)" in run.stdout
    assert leaks(hostedai_mock) == []


def test_a_run_stopped_mid_session_leaks_nothing(real_clock_mock: Target, tmp_path: Path) -> None:
    """Allocations are held when `-t` runs out: the first two allocates are answered only after 20 s (the
    allocation exists, the user never learns its id) and every inference takes 20 s."""
    for rule in (
        {"match": {"operation": "allocate"}, "phase": "after", "times": 2, "action": _delay(20_000)},
        {"match": {"operation": "inference"}, "action": _delay(20_000)},
    ):
        admin(real_clock_mock).add_fault(rule)
    allocate_only = tmp_path / "allocate-only.yaml"
    allocate_only.write_text("users:\n  HostedAiUser:\n    POST /v1/allocate: {max_error_rate: 0}\n")
    started = time.monotonic()
    run = run_locust(
        tmp_path,
        *("-f", str(LOCUSTFILE), "-u", "5", "-r", "10", "-t", "2s", "--host", real_clock_mock.url),
        *("--slo-file", str(allocate_only), "--only-summary"),
    )
    assert run.returncode == 0, run.stdout
    assert time.monotonic() - started < 15  # stopped at -t, not when the delays ended
    # Three users were stopped mid-inference and released in `finally`; the two allocations whose
    # answers never came were found by this run's label and released by the clean-up.
    assert len(re.findall(r"run stopped mid-session: releasing alloc_", run.stdout)) == 3, run.stdout
    assert "clean-up: released 2 allocation(s)" in run.stdout
    assert leaks(real_clock_mock) == []
    assert [e["status"] for e in journal(real_clock_mock, "release")] == [204] * 5


def test_a_run_ended_by_sigterm_stops_its_users_first_and_leaks_nothing(
    real_clock_mock: Target, tmp_path: Path
) -> None:
    admin(real_clock_mock).add_fault({"match": {"operation": "inference"}, "action": _delay(20_000)})
    slo = tmp_path / "allocate-only.yaml"
    slo.write_text("users:\n  HostedAiUser:\n    POST /v1/allocate: {max_error_rate: 0}\n")
    process = subprocess.Popen(
        locust_argv(
            *("-f", str(LOCUSTFILE), "-u", "3", "-r", "10", "-t", "60s", "--host", real_clock_mock.url),
            *("--slo-file", str(slo), "--only-summary"),
        ),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while len(journal(real_clock_mock, "allocate")) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)  # the answers reach the users, who then wait on their 20 s inferences
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, output
    assert len(re.findall(r"run stopped mid-session: releasing alloc_", output)) == 3, output
    assert "DELETE   /v1/allocate/[id]" in output  # the releases are in the stats the verdict judged
    assert leaks(real_clock_mock) == []


def test_a_shape_drives_the_users_and_ends_the_run_by_itself(hostedai_mock: Target, tmp_path: Path) -> None:
    started = time.monotonic()
    run = run_locust(
        tmp_path,
        *("-f", f"{LOCUSTFILE},{SHAPES}", "--shape", "step", "-u", "4", "-t", "4s", "--host", hostedai_mock.url),
        *("--slo-file", str(LAX_SLO), "--only-summary"),
    )
    assert run.returncode == 0, run.stdout
    assert time.monotonic() - started < 20
    levels = [int(n) for n in re.findall(r"Shape test updating to (\d+) users", run.stdout)]
    assert levels == sorted(levels)
    assert levels[0] == 1
    assert levels[-1] == 4
    assert "Shape test stopping" in run.stdout
    assert leaks(hostedai_mock) == []


def test_bad_options_are_one_line_and_exit_2(hostedai_mock: Target, tmp_path: Path) -> None:
    base = ("--host", hostedai_mock.url, "-t", "1s")
    shape_alone = run_locust(tmp_path, "-f", str(LOCUSTFILE), "--shape", "ramp", *base)
    assert shape_alone.returncode == 2, shape_alone.stdout
    assert "error: --shape needs the shapes: -f loadtests/locustfile.py,loadtests/shapes.py" in shape_alone.stdout
    (tmp_path / "bad.yaml").write_text("total: {p95: 1}\n")
    bad_slo = run_locust(tmp_path, "-f", str(LOCUSTFILE), "--slo-file", str(tmp_path / "bad.yaml"), *base)
    assert bad_slo.returncode == 2, bad_slo.stdout
    assert "total.p95: unknown gate" in bad_slo.stdout
    assert journal(hostedai_mock, "allocate") == []  # refused before any load


def _delay(ms: int) -> dict[str, object]:
    return {"type": "delay", "distribution": "fixed", "ms": ms}
