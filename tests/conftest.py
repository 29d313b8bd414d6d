"""Fixtures shared by the API tests: an embedded mock (strict, manual clock, seeded) and clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from mock_server import MockHostedAI
from mock_server.config import MockConfig, default_config, parse_config

ALLOCATE_QWEN: dict[str, Any] = {
    "pool_id": "gpu-pool-1",
    "requirements": {"tflops": 30, "vram_mb": 20480, "model": "qwen-30b"},
    "overcommit": True,
}
ALLOCATE_GEMMA: dict[str, Any] = {
    "pool_id": "gpu-pool-2",
    "requirements": {"tflops": 5, "vram_mb": 2048, "model": "gemma-270m"},
}


def config_with(**changes: Any) -> MockConfig:
    """The default config with some sections changed: `config_with(tenants=..., pools=...)`.
    A callable value receives the section's data and returns the new one."""
    data = default_config().model_dump()
    for section, change in changes.items():
        data[section] = change(data[section]) if callable(change) else change
    return parse_config(data)


# A model server that takes 100 simulated seconds per token: an inference runs long enough for a test to
# end its allocation (or time out) while it is in flight, whatever the machine's speed.
SLOW_PROFILE: dict[str, Any] = {
    "source": "tests: a model server 100 s per token",
    "weights_mb": 100,
    "overhead_mb": 0,
    "kv_kb_per_token": 1,
    "decode": {"batch": [1], "step_ms": [100_000]},
    "prefill_us_per_token": 0,
    "prefill_step_ms": 1,
    "request_overhead_ms": 1,
    "noise_sigma": 0,
}


def slow_config(**changes: Any) -> MockConfig:
    """The default config (with `changes`, as `config_with`) whose models all run on SLOW_PROFILE."""

    def slow(models: dict[str, Any]) -> dict[str, Any]:
        for model in models.values():
            model["serving"] = dict.fromkeys(model["serving"], "slow")
        return models

    models = changes.pop("models", None)
    return config_with(
        **changes,
        models=lambda m: slow(models(m) if callable(models) else (models or m)),
        serving_profiles={"slow": SLOW_PROFILE},
    )


@pytest.fixture
async def mock() -> AsyncIterator[MockHostedAI]:
    async with MockHostedAI(clock="manual", seed=7) as running:
        yield running


def _session(url: str, key: str | None) -> aiohttp.ClientSession:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return aiohttp.ClientSession(base_url=url, headers=headers)


@pytest.fixture
async def client(mock: MockHostedAI) -> AsyncIterator[aiohttp.ClientSession]:
    async with _session(mock.url, mock.api_key) as session:
        yield session


@pytest.fixture
async def team_b(mock: MockHostedAI) -> AsyncIterator[aiohttp.ClientSession]:
    async with _session(mock.url, mock.api_key_for("team-b")) as session:
        yield session


@pytest.fixture
async def anonymous(mock: MockHostedAI) -> AsyncIterator[aiohttp.ClientSession]:
    async with _session(mock.url, None) as session:
        yield session


@pytest.fixture
def session_for() -> Callable[[str, str | None], aiohttp.ClientSession]:
    """A client session factory for tests that start their own mock."""
    return _session
