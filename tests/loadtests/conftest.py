"""What the load-test tests share: locust run as the program users run, and the mock's control plane.

Every run is headless, loopback only, a few users for a few seconds, with a hard timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.suites.base import Target
from harness.target import start_mock_process

ROOT = Path(__file__).resolve().parents[2]
LOADTESTS = ROOT / "loadtests"
LOCUSTFILE = LOADTESTS / "locustfile.py"
LAX_SLO = LOADTESTS / "slo-lax.yaml"
HARD_TIMEOUT_S = 60


def locust_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "locust", "--headless", *args]


def run_locust(cwd: Path, *args: str, api_key: str = "dev-key") -> subprocess.CompletedProcess[str]:
    """`python -m locust --headless ARGS` in `cwd` (no stray locust.conf), its output merged."""
    return subprocess.run(
        locust_argv(*args),
        cwd=cwd,
        env={**os.environ, "HOSTED_AI_API_KEY": api_key},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=HARD_TIMEOUT_S,
    )


def admin(target: Target, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"{target.url}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"X-Admin-Token": target.admin_token or "", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        text = resp.read()
    return json.loads(text) if text else None


def leaks(target: Target, *, advance_s: float | None = 1.0) -> list[dict[str, Any]]:
    """The mock's leak report, a simulated second later on the manual clock (nothing may be active)."""
    if advance_s is not None:
        admin(target, "POST", "/_admin/clock/advance", {"seconds": advance_s})
    return list(admin(target, "GET", "/_admin/leaks")["leaks"])


def journal(target: Target, operation: str) -> list[dict[str, Any]]:
    return list(admin(target, "GET", f"/_admin/journal?operation={operation}&limit=1000")["entries"])


@pytest.fixture
def real_clock_mock() -> Iterator[Target]:
    """A mock whose simulated time really passes (scale 1), so faults' delays are slept. Killed at the
    end: a graceful stop would wait for the requests still sleeping in those delays."""
    process, target = start_mock_process(seed=3, extra_args=["--clock", "real", "--time-scale", "1"])
    try:
        yield target
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def harpoon_service(hostedai_mock: Target, tmp_path: Path) -> Iterator[str]:
    """`harpoon-service` on a free loopback port in front of the mock; its URL."""
    config = yaml.safe_load((ROOT / "configs" / "harpoon.yaml").read_text())
    config["hosted_ai"]["base_url"] = hostedai_mock.url
    config["models"] = str(ROOT / "configs" / "models.yaml")
    path = tmp_path / "harpoon.yaml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.service.cli", "--config", str(path), "--port", "0", "--log-level", "WARNING"],
        env={**os.environ, "HOSTED_AI_API_KEY": hostedai_mock.api_key},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("harpoon-service listening on "), line + process.stdout.read()
        yield line.split()[3]
    finally:
        process.terminate()
        process.wait(timeout=10)
