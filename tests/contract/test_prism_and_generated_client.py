"""Two tools nobody here wrote, on real traffic: Prism's validating proxy (`--errors`) sits between the
harness and the mock and finds no violation in either direction, streams included; and a client that
openapi-python-client generates from the contract does allocate → infer → release against the mock."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from harness.control_plane import ControlPlane
from mock_server import MockHostedAI
from mock_server.resources import HOSTEDAI_CONTRACT
from tests.contract.openapi_tools import environment, npm_tool, python_tool

_LISTENING = re.compile(r"Prism is listening on (http://\S+)")
_PROBLEM = re.compile(r"✖|VIOLATIONS|UNPROCESSABLE|Violation", re.I)


def _text(log: Path) -> str:
    return log.read_text(errors="replace")


@asynccontextmanager
async def _prism_proxy(upstream: str, log: Path) -> AsyncIterator[str]:
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            str(npm_tool("prism")),
            "proxy",
            str(HOSTEDAI_CONTRACT),
            upstream,
            "--errors",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            env=environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        for _ in range(600):  # up to 60 s for node to start
            found = _LISTENING.search(_text(log))
            if found or process.returncode is not None:
                break
            await asyncio.sleep(0.1)
        assert found, f"prism did not start: {_text(log)[-2000:]}"
        yield found.group(1).rstrip("/")
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def test_prism_validating_proxy_finds_no_violation_in_the_harness_traffic(tmp_path: Path) -> None:
    log = tmp_path / "prism.log"
    async with MockHostedAI(clock="manual", seed=5) as mock, _prism_proxy(mock.url, log) as proxy:
        # The stateful suite drives the real connector: allocate, infer, stream, release, double
        # release, use after release, another tenant's allocation, idempotent replays.
        harness = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "harness",
            "stateful",
            "--target",
            proxy,
            "--second-api-key-env",
            "TEAM_B_KEY",
            "--examples",
            "5",
            env={**os.environ, "HOSTED_AI_API_KEY": mock.api_key, "TEAM_B_KEY": mock.api_key_for("team-b")},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(harness.communicate(), 300)
        async with ControlPlane(mock.url, mock.admin_token or "") as admin:
            journal = await admin.journal()
    text = _text(log)
    assert harness.returncode == 0, output.decode()
    operations = {entry["operation"] for entry in journal}
    assert {"allocate", "inference", "release", "status"} <= operations  # the proxy carried them all
    assert [line for line in text.splitlines() if _PROBLEM.search(line)] == []
    assert text.count("Request received") >= len(journal)


def test_a_generated_python_client_allocates_infers_and_releases(tmp_path: Path) -> None:
    generated = subprocess.run(
        [
            python_tool("openapi-python-client"),
            "generate",
            "--path",
            str(HOSTEDAI_CONTRACT),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / "hostedai_client"),
        ],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    round_trip = textwrap.dedent(
        """
        from hostedai_client import AuthenticatedClient
        from hostedai_client.api.allocations import create_allocation, get_allocation, release_allocation
        from hostedai_client.api.inference import create_inference
        from hostedai_client.models import (
            Allocation, AllocationRequest, AllocationState, InferenceRequest, InferenceResponse, Requirements,
        )
        from mock_server import MockHostedAI

        with MockHostedAI(clock="manual", seed=2) as mock:
            client = AuthenticatedClient(base_url=mock.url, token=mock.api_key, raise_on_unexpected_status=True)
            requirements = Requirements(tflops=5, vram_mb=2048, model="gemma-270m")
            allocation = create_allocation.sync(
                client=client, body=AllocationRequest(pool_id="gpu-pool-2", requirements=requirements)
            )
            assert isinstance(allocation, Allocation), allocation
            assert allocation.state == AllocationState.ACTIVE
            answer = create_inference.sync(
                client=client,
                body=InferenceRequest(allocation_id=allocation.allocation_id, prompt="Hello", max_tokens=4),
            )
            assert isinstance(answer, InferenceResponse), answer
            assert 1 <= answer.usage.completion_tokens <= 4
            released = release_allocation.sync_detailed(client=client, allocation_id=allocation.allocation_id)
            assert released.status_code == 204, released
            after = get_allocation.sync(client=client, allocation_id=allocation.allocation_id)
            assert after.state == AllocationState.RELEASED, after
            assert mock.sim.pool_stats("gpu-pool-2")[0].allocations_active == 0
        print("round trip ok")
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", round_trip],
        env={**environment(), "PYTHONPATH": f"{tmp_path}:{os.environ.get('PYTHONPATH', '')}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "round trip ok" in run.stdout
