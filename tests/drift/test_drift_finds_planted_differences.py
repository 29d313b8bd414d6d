"""The proof that drift works: a second mock stands in for the live HostedAI, configured differently in one
way at a time, is recorded through `hostedai-harness record`; `hostedai-harness drift` replays the probe
against a mock process of the packaged config and must flag that difference, and nothing else. A second
mock configured like the first (another seed: other noise, other ids) must show no drift at all.

All traffic is on 127.0.0.1; the probe is small (one pool, six cycles, four inferences of each kind per
cycle: twelve timing samples per model and step) so that each run takes a couple of seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import mock_server.embedded
from harness.cli import main
from mock_server import MockHostedAI
from mock_server.config import default_config, parse_config

PROBE = ["--pools", "gpu-pool-2", "--cycles", "6", "--inferences", "4", "--max-tokens", "24"]


def _config(change: Callable[[dict[str, Any]], None] | None = None) -> Any:
    data = default_config().model_dump()
    if change is not None:
        change(data)
    return parse_config(data)


def _record(mock: MockHostedAI, out: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTED_AI_API_KEY", mock.api_key)
    assert main(["record", "--target", mock.url, "--out", str(out), "--seed", str(seed), *PROBE]) == 0


def _drift(source: list[str], report_dir: Path) -> tuple[int, dict[str, str]]:
    """drift's exit code, and the outcome of every check by name."""
    code = main(["drift", *source, "--report-dir", str(report_dir)])
    summary = json.loads((report_dir / "summary.json").read_text())
    return code, {c["name"]: c["outcome"] for c in summary["suites"][0]["checks"]}


def _failed(outcomes: dict[str, str]) -> list[str]:
    return sorted(name for name, outcome in outcomes.items() if outcome == "failed")


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, dict[str, str]]]:
    """Record a second mock (its config changed by `change`) as if it were live, then drift against it."""

    def run(
        change: Callable[[dict[str, Any]], None] | None = None,
        *,
        seed: int = 100,
        probe_seed: int = 0,
        one_go: bool = False,
    ) -> Any:
        trace = tmp_path / f"trace-{seed}.jsonl"
        report = tmp_path / f"report-{seed}"
        # A real clock, a hundred times fast, as drift's replay runs: a live service's time passes.
        with MockHostedAI(_config(change), strict=False, clock="real", time_scale=0.01, seed=seed) as mock:
            if not one_go:
                _record(mock, trace, probe_seed, monkeypatch)
                return _drift(["--trace", str(trace)], report)
            # `drift --target`: record and drift in one go, the trace kept with --out.
            monkeypatch.setenv("HOSTED_AI_API_KEY", mock.api_key)
            found = _drift(["--target", mock.url, "--seed", str(probe_seed), "--out", str(trace), *PROBE], report)
            assert trace.is_file()
            return found

    return run


@pytest.mark.parametrize(("seed", "one_go"), [(101, False), (202, False), (303, True)])
def test_drift_finds_nothing_between_two_mocks_of_one_config(live: Any, seed: int, one_go: bool) -> None:
    code, outcomes = live(seed=seed, probe_seed=seed % 7, one_go=one_go)
    assert _failed(outcomes) == []
    # Timing was judged, not skipped: the probe gives enough samples.
    assert any(name.startswith("timing:") and outcome == "passed" for name, outcome in outcomes.items())
    assert code == 0


def test_drift_finds_a_slower_serving_profile(live: Any) -> None:
    def slower_gemma_on_l4(data: dict[str, Any]) -> None:
        from mock_server.serving_profiles import load_library

        profile = load_library()["gemma-3-270m@L4-24GB"].model_dump()
        profile["decode"]["step_ms"] = [ms * 1.6 for ms in profile["decode"]["step_ms"]]
        profile["prefill_us_per_token"] *= 1.6
        profile["request_overhead_ms"] *= 1.6
        data["serving_profiles"] = {"gemma-3-270m@L4-24GB": profile}

    code, outcomes = live(slower_gemma_on_l4)
    failed = _failed(outcomes)
    assert failed, outcomes
    assert all(name.startswith("timing:") and "L4-24GB × gemma-270m" in name for name in failed), failed
    assert {name.split()[2] for name in failed} == {"ttft_ms", "tpot_ms"}
    assert code == 1


def test_drift_finds_a_changed_error_code(live: Any) -> None:
    def unknown_pool_code(data: dict[str, Any]) -> None:
        data["faults"] = [
            {
                "match": {"operation": "allocate", "pool_id": "hostedai-drift-no-such-pool"},
                "action": {"type": "error", "status": 404, "code": "pool_unknown"},
            }
        ]

    code, outcomes = live(unknown_pool_code)
    assert _failed(outcomes) == ["status: error:unknown-pool createAllocation"]
    assert code == 1


def test_drift_finds_a_missing_header(live: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    made = mock_server.embedded.create_app

    def without_location(config: Any) -> web.Application:
        app = made(config)

        async def strip(_: web.Request, response: web.StreamResponse) -> None:
            response.headers.popall("Location", None)

        app.on_response_prepare.append(strip)
        return app

    monkeypatch.setattr(mock_server.embedded, "create_app", without_location)
    code, outcomes = live()
    assert _failed(outcomes) == ["headers: createAllocation 201"]
    assert code == 1


def test_drift_finds_another_gpu_type(live: Any) -> None:
    def renamed_l4(data: dict[str, Any]) -> None:
        # Another GPU type name with the same serving profiles: only the type differs, not the speed.
        data["pools"][1]["gpu_type"] = "L4-24GB-PCIe"
        for model in data["models"].values():
            model["serving"]["L4-24GB-PCIe"] = model["serving"]["L4-24GB"]

    code, outcomes = live(renamed_l4)
    failed = _failed(outcomes)
    assert "GPU type of each pool" in failed
    assert "shape: listPools 200" not in failed
    # The timing samples are keyed by GPU type: live's are on a type the mock never reported, so those
    # comparisons have no partner (skipped), and none of them is called drift.
    assert failed == ["GPU type of each pool"]
    assert code == 1
