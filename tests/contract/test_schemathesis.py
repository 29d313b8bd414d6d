"""The contract, run by schemathesis against the running mock: every operation, positive and negative
data, all checks, the stateful phase over the OpenAPI links, two tenants probing each other's objects.

Two settings, both deliberate and written into the config below:
- positive data may also be answered 422: the contract documents 422 for schema-valid requests no GPU
  could ever satisfy (`unsatisfiable`) and for `max_tokens` above a model's limit, which no static
  schema can express;
- use_after_free is off: the contract keeps a released allocation readable, with `state: released`,
  for a retention window (a client reads how its allocation ended), where the check expects a 404;
- everything else is schemathesis's default.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from harness.suites.contract.schemathesis_run import with_link_bodies
from mock_server import MockHostedAI
from mock_server.api import render
from mock_server.api.contract import Contract
from mock_server.resources import ADMIN_CONTRACT, HOSTEDAI_CONTRACT

SCHEMATHESIS_CONFIG = """\
# Each run stands alone: no crash cache replayed from an earlier run.
[cache]
enabled = false

[auth.wfc]
path = "{wfc}"
peers = ["dev", "team-b"]

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
"""

WFC_AUTH = """\
auth:
  - name: dev
    fixedHeaders: [{{name: Authorization, value: "Bearer {dev}"}}]
  - name: team-b
    fixedHeaders: [{{name: Authorization, value: "Bearer {team_b}"}}]
"""


ADMIN_CONFIG = """\
[cache]
enabled = false

[auth.openapi.adminToken]
api_key = "{token}"
"""


async def _run_schemathesis(
    mock: MockHostedAI, tmp_path: Path, *extra: str, contract: Path = HOSTEDAI_CONTRACT
) -> tuple[int, str]:
    config = tmp_path / "schemathesis.toml"
    if contract == HOSTEDAI_CONTRACT:
        wfc = tmp_path / "wfc-auth.yaml"
        wfc.write_text(WFC_AUTH.format(dev=mock.api_key, team_b=mock.api_key_for("team-b")))
        config.write_text(SCHEMATHESIS_CONFIG.format(wfc=wfc))
    else:
        config.write_text(ADMIN_CONFIG.format(token=mock.admin_token))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        # The links' body templates as schemathesis reads them (the harness's contract suite does the same).
        str(with_link_bodies(contract, tmp_path)),
        "--url",
        mock.url,
        "--checks",
        "all",
        "--exclude-checks",
        "use_after_free",
        "--mode",
        "all",
        "--seed",
        "20261127",
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--no-color",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), timeout=600)
    assert proc.returncode is not None
    return proc.returncode, output.decode(errors="replace")


async def test_schemathesis_finds_no_contract_violation(tmp_path: Path) -> None:
    async with MockHostedAI(clock="manual", seed=11) as mock:
        returncode, report = await _run_schemathesis(
            mock, tmp_path, "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", "25"
        )
    assert returncode == 0, report
    assert "13 selected / 13 total" in report
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in report or f"✅  {phase}" in report, report


async def test_schemathesis_finds_no_violation_of_the_admin_contract(tmp_path: Path) -> None:
    async with MockHostedAI(clock="manual", seed=11) as mock:
        returncode, report = await _run_schemathesis(
            mock,
            tmp_path,
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            "15",
            # An endless event stream, which a request-response tool can only time out on; its events
            # are checked against `Dashboard` in tests/dashboard/test_endpoints.py.
            "--exclude-operation-id",
            "adminStreamDashboard",
            contract=ADMIN_CONTRACT,
        )
    assert returncode == 0, report
    operations = len(Contract.load(ADMIN_CONTRACT).operations)
    assert f"{operations - 1} selected / {operations} total" in report


async def test_schemathesis_run_fails_on_a_response_that_breaks_the_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run above can fail: with strict mode off and a pool rendered with a wrong type, it does."""
    real_pool = render.pool
    monkeypatch.setattr(render, "pool", lambda stats: {**real_pool(stats), "gpus": "eight"})
    async with MockHostedAI(clock="manual", strict=False) as mock:
        returncode, report = await _run_schemathesis(
            mock, tmp_path, "--include-operation-id", "getPool", "--phases", "examples,fuzzing", "--max-examples", "5"
        )
    assert returncode == 1, report
    assert "Response violates schema" in report
    assert "'eight' is not of type 'integer'" in report or '"eight" is not of type "integer"' in report, report
