"""What the load-test tests share: locust run as the program users run, and the mock's control plane.

Every run is headless, loopback only, a few users for a few seconds, with a hard timeout."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harness.control_plane import JournalEntry, Leak, SyncControlPlane
from harness.target import MockProcess, Target

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


def admin(target: Target) -> SyncControlPlane:
    return SyncControlPlane(target.url, target.admin_token or "")


def leaks(target: Target) -> list[Leak]:
    """The mock's leak report at grace 0: nothing may still be held."""
    return admin(target).leaks()


def journal(target: Target, operation: str) -> list[JournalEntry]:
    return admin(target).journal(operation=operation)


@pytest.fixture
def real_clock_mock() -> Iterator[Target]:
    """A mock whose simulated time really passes (scale 1), so faults' delays are slept. Killed at the
    end: a graceful stop would wait for the requests still sleeping in those delays."""
    with MockProcess(seed=3, extra_args=["--clock", "real", "--time-scale", "1"]).running() as target:
        yield target


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
