"""A cell names itself and issues ids no other cell issues, even with the same config and seed."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from mock_server import MockHostedAI
from mock_server.cli import CELL_ENV, build_parser, main, resolve_config
from mock_server.config import MockConfig, default_config
from mock_server.sim.clock import ManualClock
from mock_server.sim.simulator import AllocationSpec, Simulator
from tests.conftest import ALLOCATE_GEMMA, config_with

GEMMA = AllocationSpec(pool_id="gpu-pool-2", tflops=5, vram_mb=2048, model="gemma-270m")


def _cell(name: str | None) -> MockConfig:
    return config_with(simulation=lambda s: {**s, "cell": name, "seed": 7})


def _allocation_ids(config: MockConfig, n: int) -> list[str]:
    sim = Simulator(config, ManualClock())
    ids = []
    for i in range(n):
        ids.append(sim.allocate("dev", GEMMA, request_id=f"r{i}").allocation.allocation_id)
        sim.release("dev", ids[-1])  # so the pool never fills, however many ids a test draws
    return ids


def test_two_cells_with_the_same_config_and_seed_never_issue_the_same_allocation_id() -> None:
    a, b = _allocation_ids(_cell("a"), 50), _allocation_ids(_cell("b"), 50)
    assert not set(a) & set(b)
    assert all(i.startswith("alloc_a_") for i in a)
    assert all(i.startswith("alloc_b_") for i in b)
    # The random part differs too (the name enters the seed), so request ids differ between cells.
    assert {i.removeprefix("alloc_a_") for i in a}.isdisjoint(i.removeprefix("alloc_b_") for i in b)


def test_a_cell_replays_its_own_ids_and_a_lone_mock_keeps_the_documented_format() -> None:
    assert _allocation_ids(_cell("a"), 5) == _allocation_ids(_cell("a"), 5)
    alone = _allocation_ids(_cell(None), 3)
    assert all(len(i) == len("alloc_") + 16 for i in alone)


def test_the_cell_comes_from_the_flag_or_else_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CELL_ENV, "eu-west")
    assert resolve_config(build_parser().parse_args([])).simulation.cell == "eu-west"
    assert resolve_config(build_parser().parse_args(["--cell", "us-east-1"])).simulation.cell == "us-east-1"
    monkeypatch.delenv(CELL_ENV)
    assert resolve_config(build_parser().parse_args([])).simulation.cell is None


@pytest.mark.parametrize("name", ["EU", "a_b", "-a", "a-", "x" * 33, "a b"])
def test_a_bad_cell_name_is_one_line_and_exit_2(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([f"--cell={name}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hostedai-mock: error: config key simulation.cell")
    assert len(err.splitlines()) == 1


async def test_health_and_state_say_which_cell_answered_and_strict_mode_accepts_its_ids() -> None:
    # Strict: every answer, the cell's ids and /health's `cell` included, is checked against the contract.
    async with MockHostedAI(_cell("eu-west"), strict=True) as mock, aiohttp.ClientSession(base_url=mock.url) as http:
        async with http.get("/health") as resp:
            assert (await resp.json())["cell"] == "eu-west"
        key = {"Authorization": f"Bearer {mock.api_key}"}
        async with http.post("/v1/allocate", json=ALLOCATE_GEMMA, headers=key) as resp:
            assert resp.status == 201, await resp.text()
            assert (await resp.json())["allocation_id"].startswith("alloc_eu-west_")
        async with http.get("/_admin/state", headers={"X-Admin-Token": mock.admin_token}) as resp:
            assert (await resp.json())["cell"] == "eu-west"


async def test_a_lone_mock_says_no_cell() -> None:
    async with MockHostedAI(default_config(), strict=True) as mock, aiohttp.ClientSession(base_url=mock.url) as http:
        async with http.get("/health") as resp:
            assert "cell" not in await resp.json()
        async with http.get("/_admin/state", headers={"X-Admin-Token": mock.admin_token}) as resp:
            assert (await resp.json())["cell"] is None


def test_the_cells_config_is_the_default_with_more_tenants() -> None:
    from mock_server.config import load_config

    cells = load_config(str(Path(__file__).resolve().parents[2] / "configs" / "cells.yaml"))
    default = default_config()
    assert cells.pools == default.pools
    assert cells.models == default.models
    assert cells.simulation == default.simulation
    assert cells.server == default.server
    assert {k: v for k, v in cells.tenants.items() if k in default.tenants} == default.tenants
    assert len(cells.tenants) == 16
