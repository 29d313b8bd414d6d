"""`HarpoonUser` run by locust against `harpoon-service` in front of the mock: both request classes are
served (no fallback), HostedAI's timings and the service's batching show as SIM rows, and the service
leaves nothing allocated."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from harness.target import Target

from .conftest import LAX_SLO, LOADTESTS, leaks, run_locust


def test_harpoon_user_is_served_by_the_service(harpoon_service: str, hostedai_mock: Target, tmp_path: Path) -> None:
    report = tmp_path / "slo.json"
    run = run_locust(
        tmp_path,
        *("-f", str(LOADTESTS / "harpoon_locustfile.py"), "-u", "4", "-r", "4", "-t", "4s", "--host", harpoon_service),
        *("--slo-file", str(LAX_SLO), "--slo-report", str(report), "--csv", str(tmp_path / "run"), "--only-summary"),
        api_key="not-needed-by-the-client",
    )
    assert run.returncode == 0, run.stdout
    assert json.loads(report.read_text())["ok"] is True
    with (tmp_path / "run_stats.csv").open(newline="") as f:
        counts = {(r["Type"], r["Name"]): (int(r["Request Count"]), int(r["Failure Count"])) for r in csv.DictReader(f)}
    assert counts[("POST", "/v2/process (simple)")][0] > 0
    assert ("POST", "/v1/allocate") not in counts
    assert counts[("SIM", "ttft_ms")][0] > 0
    # Request batching, reported: one allocation share per served request, summed up at the end.
    assert counts[("SIM", "allocations_per_request")][0] == sum(
        n for (kind, name), (n, _) in counts.items() if kind == "POST" and name.startswith("/v2/process")
    )
    assert "Harpoon batching: " in run.stdout
    assert " allocations per request (" in run.stdout
    assert all(failures == 0 for _, failures in counts.values())
    assert leaks(hostedai_mock) == []
