"""`hostedai-mock calibrate`: a second mock, its gemma-on-L4 profile changed, stands in for the live
service; the profile fitted to its trace must reproduce its held-out p50 and p99 TTFT and time per output
token within 10 %, and a drift replay with that profile must find no timing drift where the packaged
profile does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli import main as harness
from mock_server import MockHostedAI
from mock_server.cli import build_parser, resolve_config
from mock_server.cli import main as mock
from mock_server.config import default_config, parse_config
from mock_server.serving_profiles import load_library

CELL = "gemma-3-270m@L4-24GB"


def _changed() -> dict[str, Any]:
    profile = load_library()[CELL].model_dump()
    profile["decode"]["step_ms"] = [round(ms * 1.4, 4) for ms in profile["decode"]["step_ms"]]
    profile["prefill_us_per_token"] *= 0.6
    profile["request_overhead_ms"] *= 1.5
    return profile


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = default_config().model_dump()
    data["serving_profiles"] = {CELL: _changed()}
    out = tmp_path_factory.mktemp("calibrate") / "trace.jsonl"
    with (
        MockHostedAI(parse_config(data), clock="real", time_scale=0.01, seed=77) as live,
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv("HOSTED_AI_API_KEY", live.api_key)
        argv = ["record", "--target", live.url, "--out", str(out), "--pools", "gpu-pool-2", "--cycles", "12"]
        assert harness([*argv, "--seed", "9"]) == 0
    return out


@pytest.fixture(scope="module")
def fitted(trace: Path) -> Path:
    out = trace.with_name("profile.yaml")
    assert mock(["calibrate", str(trace), "-o", str(out)]) == 0
    return out


def test_calibrate_recovers_the_other_mocks_profile_on_held_out_traffic(
    fitted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profiles = yaml.safe_load(fitted.read_text())["profiles"]
    assert set(profiles) == {CELL, "qwen3-30b-a3b-4bit@L4-24GB"}
    source = profiles[CELL]["source"]
    errors = {
        key: float(value.rstrip("%"))
        for key, value in (part.rsplit(" ", 1) for part in source.split("errors there: ")[1].split(")")[0].split(", "))
    }
    assert set(errors) == {"ttft_ms p50", "ttft_ms p99", "tpot_ms p50", "tpot_ms p99"}
    assert all(abs(error) <= 10 for error in errors.values()), errors
    # The figures one user's traffic can tell: the decode step (scaled 1.4) and what makes up TTFT.
    truth = _changed()
    assert profiles[CELL]["decode"]["step_ms"][0] == pytest.approx(truth["decode"]["step_ms"][0], rel=0.10)


def test_drift_with_the_calibrated_profile_finds_no_timing_drift(trace: Path, fitted: Path, tmp_path: Path) -> None:
    def timing_failures(*extra: str) -> list[str]:
        report = tmp_path / ("with" if extra else "without")
        harness(["drift", "--trace", str(trace), "--report-dir", str(report), *extra])
        checks = json.loads((report / "summary.json").read_text())["suites"][0]["checks"]
        return [c["name"] for c in checks if c["outcome"] == "failed"]

    assert any("gemma-270m" in name for name in timing_failures())  # the packaged profile drifts
    assert timing_failures("--profile", str(fitted)) == []


def test_the_mock_serves_a_calibrated_profile(fitted: Path) -> None:
    config = resolve_config(build_parser().parse_args(["--profile", str(fitted)]))
    written = yaml.safe_load(fitted.read_text())["profiles"][CELL]
    assert config.serving_profiles[CELL].decode.step_ms == written["decode"]["step_ms"]
    assert config.serving_profiles[CELL].source.startswith("Calibrated by `hostedai-mock calibrate`")


def test_the_mock_refuses_a_profile_file_that_is_not_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("version: 1\nprofiles: {x: {source: s}}\n")
    assert mock(["--profile", str(bad), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--profile" in err


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("not json\n", "line 1 is not JSON"),
        ('{"kind": "header", "format": "hostedai-drift-trace", "version": 7}\n', "format version 7"),
        ('{"hello": 1}\n', "not a hostedai-drift-trace file"),
    ],
)
def test_calibrate_refuses_a_bad_trace_in_one_line(
    tmp_path: Path, content: str, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(content)
    assert mock(["calibrate", str(path), "-o", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert fragment in err
    assert not (tmp_path / "p.yaml").exists()


def test_calibrate_refuses_cells_with_too_few_samples(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert mock(["calibrate", str(trace), "-o", str(tmp_path / "p.yaml"), "--min-samples", "1000"]) == 2
    captured = capsys.readouterr()
    assert "refused: 36 inferences, fewer than 1000" in captured.out
    assert "no cell of the trace could be calibrated" in captured.err
