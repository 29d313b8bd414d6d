"""The `hostedai-mock` command: starts, serves, stops on SIGTERM; bad input is one line and exit 2."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from mock_server.cli import ADMIN_TOKEN_ENV, BUILT_IN_ADMIN_TOKEN, banner, build_parser, main, resolve_config


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


def test_the_admin_token_comes_from_the_flag_else_the_environment_else_the_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    assert resolve_config(build_parser().parse_args([])).server.admin_token == BUILT_IN_ADMIN_TOKEN
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "from-env")
    assert resolve_config(build_parser().parse_args([])).server.admin_token == "from-env"
    flagged = build_parser().parse_args(["--admin-token", "from-flag"])
    assert resolve_config(flagged).server.admin_token == "from-flag"


def test_the_built_in_token_is_refused_off_loopback_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    # Refused before anything listens: nothing is bound to 0.0.0.0 here.
    assert main(["--host", "0.0.0.0", "--port", "1"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "built-in admin token" in line
    assert ADMIN_TOKEN_ENV in line
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "a-real-token")
    assert resolve_config(build_parser().parse_args(["--host", "0.0.0.0"])).server.host == "0.0.0.0"


def test_the_banner_names_tenants_never_their_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SECRET_KEY", "sk-from-the-environment")
    config = tmp_path / "mock.yaml"
    config.write_text(
        "pools: [{id: p, gpu_type: G, gpus: 1, tflops_per_gpu: 10, vram_mb_per_gpu: 100}]\n"
        "models: {m: {vram_mb: 10, tflops: 1, max_tokens: 8, context_tokens: 64, pools: [p],"
        " latency: {G: {prefill_overhead_ms: 1, prefill_per_token_us: 1, tpot_ms: 1}}}}\n"
        "tenants: {acme: {api_keys: ['${SECRET_KEY}', plain-key]}}\n"
    )
    line = banner(resolve_config(build_parser().parse_args(["--config", str(config)])), "http://127.0.0.1:1")
    assert "acme" in line
    assert "sk-from-the-environment" not in line
    assert "plain-key" not in line
