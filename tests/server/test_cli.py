"""The `hostedai-mock` command: starts, serves, stops on SIGTERM; bad input is one line and exit 2."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from mock_server.cli import main


def test_bad_flag_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--time-scale", "fast"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--time-scale" in err


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "mock.yaml"
    config.write_text("pools: []\nmodels: {}\ntenants: {}\n")
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hostedai-mock: error: ")
    assert "config key pools" in err
    assert len(err.splitlines()) == 1


def test_unknown_scenario_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--scenario", "meteor-strike"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hostedai-mock: error: config key scenarios: no scenario 'meteor-strike'")
    assert len(err.splitlines()) == 1


def test_bad_override_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", "70000"]) == 2
    assert "config key server.port" in capsys.readouterr().err


def test_the_server_starts_prints_its_url_serves_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mock_server", "--port", "0", "--clock", "manual", "--strict"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("HostedAI mock listening on http://127.0.0.1:")
        url = line.split()[4]
        with urllib.request.urlopen(f"{url}/health", timeout=10) as resp:
            assert json.load(resp)["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
