"""What the mock would report for given requests under a candidate profile: the simulator's own serving
model run on one GPU of the cell's type, one request at a time, each on a fresh allocation (as the probe
sends them: one user, no queue), prompts and outputs of exactly the observed lengths.

The same code path that answers `POST /v1/inference` on a manual clock (`Simulator.project_inference`),
so a fitted profile predicts what the mock will then serve, noise included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mock_server.calibrate.observations import Observation
from mock_server.config import MockConfig, parse_config
from mock_server.sim.clock import ManualClock
from mock_server.sim.simulator import AllocationSpec, InferenceSpec, Simulator

_TENANT = "calibrate"
_CHARS_PER_TOKEN = 4.0


@dataclass(frozen=True, slots=True)
class Cell:
    """One GPU type × model of a mock config, and the profile it runs there."""

    gpu_type: str
    model: str
    profile_name: str
    pool: dict[str, Any]
    model_spec: dict[str, Any]


class CellError(Exception):
    """The config cannot simulate this cell (one line)."""


def cell_of(config: MockConfig, gpu_type: str, model: str) -> Cell:
    data = config.model_dump()
    pool = next((p for p in data["pools"] if p["gpu_type"] == gpu_type), None)
    if pool is None:
        raise CellError(f"no pool of GPU type {gpu_type!r} in the mock's config")
    spec = data["models"].get(model)
    if spec is None:
        raise CellError(f"no model {model!r} in the mock's config")
    name = spec["serving"].get(gpu_type)
    if name is None:
        raise CellError(f"{model} has no serving profile for {gpu_type} in the mock's config")
    return Cell(gpu_type, model, name, pool, spec)


def prompt_of(tokens: int) -> str:
    """A prompt of exactly `tokens` tokens at 4 characters per token (the start token included)."""
    return "abcd" * max(0, tokens - 1)


def _config(cell: Cell, profile: dict[str, Any], seed: int) -> MockConfig:
    pool = {
        **cell.pool,
        "id": "p",
        "gpus": 1,
        "tiers": None,
        "lifecycle": {"provision_s": {"s": 0}, "load_s": {"s": 0}},
    }
    model = {
        **cell.model_spec,
        "pools": ["p"],
        "serving": {cell.gpu_type: cell.profile_name},
        # Outputs of exactly max_tokens, prompts of exactly the observed tokens.
        "output_tokens": {"median": 10_000_000, "sigma": 0.0},
        "chars_per_token": _CHARS_PER_TOKEN,
    }
    return parse_config(
        {
            "simulation": {"clock": "manual", "seed": seed},
            "pools": [pool],
            "models": {cell.model: model},
            "tenants": {_TENANT: {"api_keys": ["calibrate-key"]}},
            "serving_profiles": {cell.profile_name: profile},
        }
    )


def predict(cell: Cell, profile: dict[str, Any], requests: Sequence[Observation], seed: int = 0) -> list[Observation]:
    """Each request as the mock would time it under `profile`."""
    sim = Simulator(_config(cell, profile, seed), ManualClock())
    spec = cell.model_spec
    found = []
    for i, request in enumerate(requests):
        allocation = sim.allocate(
            _TENANT, AllocationSpec("p", cell.model, spec["tflops"], spec["vram_mb"], overcommit=True), request_id="c"
        ).allocation
        plan = sim.start_inference(
            _TENANT,
            InferenceSpec(
                allocation.allocation_id,
                prompt_of(request.prompt_tokens),
                max_tokens=request.completion_tokens,
                temperature=0,
                seed=i,
            ),
        )
        sim.submit_inference(plan)
        timeline = sim.project_inference(plan)
        sim.finish_inference(plan, plan.completion_tokens)
        sim.release(_TENANT, allocation.allocation_id)
        found.append(
            Observation(
                request.t,
                plan.prompt_tokens,
                plan.completion_tokens,
                (timeline.ttft_s or 0.0) * 1000,
                (timeline.tpot_s or 0.0) * 1000,
            )
        )
    return found
