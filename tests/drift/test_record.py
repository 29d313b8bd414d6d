"""`hostedai-harness record` against a mock standing in for HostedAI: bounded, leaves nothing held (also
when interrupted), writes a trace that says nothing secret."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from harness.cli import main
from harness.connector import ConnectorMetrics, HostedAiConfig, HostedAiConnector
from harness.control_plane import SyncControlPlane
from harness.drift.probe import ProbePlan, run_probe
from harness.drift.recorder import Recorder
from harness.drift.trace import read_trace
from mock_server import MockHostedAI


def _held(mock: MockHostedAI) -> int:
    return sum(stats.allocations_active for pool in ("gpu-pool-1", "gpu-pool-2") for stats in mock.sim.pool_stats(pool))


def test_record_keeps_to_its_allocation_budget_and_releases_every_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "trace.jsonl"
    with MockHostedAI(clock="manual", seed=4) as mock:
        monkeypatch.setenv("HOSTED_AI_API_KEY", mock.api_key)
        argv = ["record", "--target", mock.url, "--out", str(out), "--max-allocations", "3", "--cycles", "10"]
        assert main(argv) == 0
        allocates = SyncControlPlane(mock.url, mock.admin_token).journal(operation="allocate", status=201)
        assert len(allocates) == 3  # two cycles and the error steps' one, whatever --cycles asked
        assert _held(mock) == 0
        assert SyncControlPlane(mock.url, mock.admin_token).leaks(grace_s=0) == []
    assert "3 allocation(s), every one released" in capsys.readouterr().out
    trace = read_trace(out)
    steps = {(r["step"], r["operation"], r["status"], r["error_code"]) for r in trace.records}
    assert ("error:unknown-pool", "createAllocation", 404, "not_found") in steps
    assert ("error:unknown-allocation", "getAllocation", 404, "not_found") in steps
    assert ("error:max-tokens-over-limit", "createInference", 422, "validation_failed") in steps
    assert ("error:inference-after-release", "createInference", 409, "allocation_not_active") in steps
    assert [r["status"] for r in trace.records if r["step"] == "error:release-twice"] == [204, 204]
    streamed = [r for r in trace.records if r["step"] == "inference-stream"]
    assert streamed
    assert all(r["timings"]["itl_ms"] and "ttft_ms" in r["timings"]["reported"] for r in streamed)
    allocate = next(r for r in trace.records if r["step"] == "allocate")
    assert allocate["headers"]["location"]
    assert allocate["headers"]["request_id"]
    assert (allocate["pool_id"], allocate["gpu_type"]) in {("gpu-pool-1", "H100-80GB"), ("gpu-pool-2", "L4-24GB")}


def test_a_trace_holds_no_key_prompt_output_or_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "trace.jsonl"
    with MockHostedAI(clock="manual", seed=4) as mock:
        monkeypatch.setenv("HOSTED_AI_API_KEY", mock.api_key)
        assert main(["record", "--target", mock.url, "--out", str(out), "--cycles", "2"]) == 0
        ids = [entry["allocation_id"] for entry in SyncControlPlane(mock.url, mock.admin_token).journal()]
    text = out.read_text()
    assert mock.api_key not in text
    assert "Bearer" not in text
    assert "explain" not in text.lower()
    assert "prefill" not in text
    assert not [i for i in ids if i and i in text]
    assert all(json.loads(line)["kind"] in ("header", "request") for line in text.splitlines())


def test_record_refuses_a_rejected_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with MockHostedAI(clock="manual") as mock:
        monkeypatch.setenv("HOSTED_AI_API_KEY", "wrong-key")
        assert main(["record", "--target", mock.url, "--out", str(tmp_path / "t.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "rejected the API key in HOSTED_AI_API_KEY" in err
    assert err.count("\n") == 1


async def test_an_interrupted_probe_releases_what_it_held() -> None:
    async with MockHostedAI(clock="manual", seed=2) as mock:
        recorder = Recorder()
        task: asyncio.Task[Any] | None = None

        async def interrupt_on_inference(_: Any, __: SimpleNamespace, params: Any) -> None:
            # Cancelled while an allocation is held, in the middle of the first inference.
            if params.url.path == "/v1/inference" and task is not None:
                task.cancel()

        hooks = aiohttp.TraceConfig()
        hooks.on_request_start.append(interrupt_on_inference)
        async with aiohttp.ClientSession(trace_configs=[recorder.trace_config(), hooks]) as session:
            connector = HostedAiConnector(
                HostedAiConfig(base_url=mock.url, api_key=mock.api_key),
                session=session,
                metrics=ConnectorMetrics(CollectorRegistry()),
            )
            task = asyncio.ensure_future(run_probe(connector, recorder, ProbePlan(cycles=3), seed=0))
            with pytest.raises(asyncio.CancelledError):
                await task
            await connector.close()
        assert _held(mock) == 0
        released = [r for r in recorder.records if r["operation"] == "releaseAllocation"]
        assert [r["status"] for r in released] == [204]
