"""Fixtures for the pure-domain simulator tests: a manual clock and simulators built on it.

Every simulator here runs on a `ManualClock`, so time moves only when a test calls `clock.advance()`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from mock_server.config import MockConfig, default_config, parse_config
from mock_server.sim.clock import ManualClock
from mock_server.sim.simulator import Simulator

# The defaults a custom pool starts from: one GPU of 100 TFLOPS and 1000 MB, compute overcommit 2.
POOL_DEFAULTS: dict[str, Any] = {
    "id": "p",
    "gpu_type": "G",
    "gpus": 1,
    "tflops_per_gpu": 100.0,
    "vram_mb_per_gpu": 1000,
    "overcommit_ratio": 2.0,
    # Allocations serve at once and end at once: these tests are about placement, leases and accounting.
    "lifecycle": {"provision_s": {"s": 0}, "load_s": {"s": 0}},
    "on_preemption": {"grace_s": 0, "wire": "event"},
}

# The default model "m" of a custom config: served in every pool, small, latency with no jitter.
MODEL_DEFAULTS: dict[str, Any] = {
    "vram_mb": 100,
    "tflops": 10.0,
    "max_tokens": 512,
    "context_tokens": 4096,
    "batch_factor": 0.05,
    "context_factor": 0.01,
    "max_concurrency": 32,
}
LATENCY_DEFAULTS: dict[str, float] = {"prefill_overhead_ms": 20.0, "prefill_per_token_us": 100.0, "tpot_ms": 5.0}

TENANT_DEFAULTS: dict[str, Any] = {
    "dev": {"api_keys": ["dev-key"]},
    "team-b": {"api_keys": ["team-b-key"]},
    "team-c": {"api_keys": ["team-c-key"]},
}

SimFactory = Callable[..., Simulator]


def build_config(
    pools: list[dict[str, Any]] | None = None,
    *,
    model: dict[str, Any] | None = None,
    models: dict[str, dict[str, Any]] | None = None,
    tenants: dict[str, Any] | None = None,
    simulation: dict[str, Any] | None = None,
    serving_profiles: dict[str, Any] | None = None,
) -> MockConfig:
    """A small config: `pools` are merged over POOL_DEFAULTS; model "m" (MODEL_DEFAULTS with `model`
    merged over it) is served in every pool unless `models` replaces the whole model table."""
    pool_list = [POOL_DEFAULTS | p for p in (pools if pools is not None else [{}])]
    if models is None:
        m = MODEL_DEFAULTS | {
            "pools": [p["id"] for p in pool_list],
            "latency": {p["gpu_type"]: dict(LATENCY_DEFAULTS) for p in pool_list},
        }
        models = {"m": m | (model or {})}
    return parse_config(
        {
            "simulation": {"seed": 0, "clock": "manual"} | (simulation or {}),
            "pools": pool_list,
            "models": copy.deepcopy(models),
            "tenants": copy.deepcopy(tenants if tenants is not None else TENANT_DEFAULTS),
            "serving_profiles": copy.deepcopy(serving_profiles or {}),
        }
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sim(clock: ManualClock) -> Simulator:
    """A simulator on the packaged default config (gpu-pool-1: 8 × H100, gpu-pool-2: 4 × L4)."""
    return Simulator(default_config(), clock)


@pytest.fixture
def make_sim(clock: ManualClock) -> SimFactory:
    """`make_sim(pools, model=..., models=..., tenants=..., simulation=..., seed=..., clock_override=...)`:
    a simulator on `build_config(...)`, on the test's manual clock unless another clock is given."""

    def factory(
        pools: list[dict[str, Any]] | None = None,
        *,
        seed: int | None = None,
        clock_override: ManualClock | None = None,
        **config: Any,
    ) -> Simulator:
        return Simulator(build_config(pools, **config), clock_override or clock, seed=seed)

    return factory
