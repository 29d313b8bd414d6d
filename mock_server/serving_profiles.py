"""Serving profiles: how fast one model runs on one GPU type, as data with its sources.

A profile says what a model server of that model on that GPU is made of — weights, KV bytes per token,
runtime overhead, engine limits — and what a step costs: the decode step time over a grid of batch
sizes, the KV read per token, the prefill cost per prompt token and its attention term, and the
frontend's overhead per request. `mock_server/serving_profiles.yaml` ships the defaults, each citing the
anchors of `shared/research/fidelity.md` it was fitted to; a config adds or overrides profiles
(`serving_profiles:`), and a model names the profile it runs on each GPU type (`serving:`).

Lifecycle (provisioning, model load) and failure behaviour on the wire are per pool, also here.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mock_server.resources import SERVING_PROFILES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DecodeCost(_Strict):
    batch: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]
    """Batch sizes of the grid, ascending, starting at 1."""
    step_ms: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)]
    """Decode step time at each batch size, short context."""

    @model_validator(mode="after")
    def _grid(self) -> DecodeCost:
        if self.batch[0] != 1 or self.batch != sorted(set(self.batch)):
            raise ValueError("batch is ascending and starts at 1")
        if len(self.batch) != len(self.step_ms):
            raise ValueError("one step_ms per batch size")
        return self


class ServingProfile(_Strict):
    source: str
    """Where the figures come from (anchors of fidelity.md, a calibration, an estimate)."""
    weights_mb: Annotated[float, Field(gt=0)]
    overhead_mb: Annotated[float, Field(ge=0)] = 1024
    """Runtime memory besides weights and KV: CUDA graphs, activations."""
    kv_kb_per_token: Annotated[float, Field(gt=0)]
    max_num_seqs: Annotated[int, Field(ge=1)] = 256
    max_num_batched_tokens: Annotated[int, Field(ge=16)] = 8192
    decode: DecodeCost
    kv_ns_per_token: Annotated[float, Field(ge=0)] = 0.0
    """Added to a decode step per KV token the batch reads."""
    prefill_us_per_token: Annotated[float, Field(ge=0)]
    prefill_step_ms: Annotated[float, Field(gt=0)] | None = None
    """The fixed part of a step that only prefills; default: a decode step at batch 1."""
    attention_ns_per_token_ctx: Annotated[float, Field(ge=0)] = 0.0
    """Added per prompt token per token of context it attends to (long prompts' n² term)."""
    request_overhead_ms: Annotated[float, Field(ge=0)] = 0.0
    """The frontend's time per request before the engine sees it (HTTP, tokenizing)."""
    noise_sigma: Annotated[float, Field(ge=0, le=1)] = 0.05
    """One-sided step-time noise: a run is never faster than the profile."""


class Distribution(_Strict):
    """A duration in simulated seconds: fixed, uniform, or lognormal (clamped)."""

    kind: Literal["fixed", "uniform", "lognormal"] = "fixed"
    s: Annotated[float, Field(ge=0)] = 0.0
    min_s: Annotated[float, Field(ge=0)] = 0.0
    max_s: Annotated[float, Field(ge=0)] = 0.0
    median_s: Annotated[float, Field(ge=0)] = 0.0
    sigma: Annotated[float, Field(ge=0)] = 0.0

    def sample(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            return self.s
        if self.kind == "uniform":
            low, high = sorted((self.min_s, self.max_s))
            return rng.uniform(low, high)
        value = self.median_s * math.exp(rng.gauss(0.0, self.sigma))
        return min(max(value, self.min_s), self.max_s) if self.max_s else max(value, self.min_s)

    @property
    def zero(self) -> bool:
        return self.kind == "fixed" and self.s == 0


INSTANT = Distribution()


class Lifecycle(_Strict):
    """How long an allocation takes to become ready: the provider's subscribe, then the model load.

    The defaults are realistic (fidelity.md D1–D4): a HostedAI subscribe often takes over 15 s, and a
    vLLM server is ready 60–280 s after it starts. Tests set both to zero explicitly."""

    provision_s: Distribution = Distribution(kind="uniform", min_s=15, max_s=60)
    load_s: Distribution = Distribution(kind="lognormal", median_s=60, sigma=0.6, min_s=20, max_s=300)
    release_s: Distribution = INSTANT
    """How long after a release its capacity is free again (unsubscribe is asynchronous on HostedAI)."""


class OnEnd(_Strict):
    """What a client with a request in flight meets when its allocation ends under it."""

    grace_s: Annotated[float, Field(ge=0)] = 0.0
    """Preemption only: the victim keeps serving this long, then ends."""
    wire: Literal["event", "cut", "truncate", "error_5xx"] = "cut"
    """`cut`: the connection is reset; `truncate`: a stream stops without `done` (a plain answer is cut
    short); `error_5xx`: a 502 before anything was sent (a stream already started is truncated);
    `event`: the typed 409 `allocation_not_active` (an SSE `error` event), as a gateway would send."""


class ProfileLibrary(_Strict):
    version: Literal[1]
    profiles: dict[str, ServingProfile]


def load_library(path: Path = SERVING_PROFILES) -> dict[str, ServingProfile]:
    """The packaged profiles (or another library file), validated."""
    try:
        data: Any = yaml.safe_load(path.read_text("utf-8"))
        return ProfileLibrary.model_validate(data).profiles
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"{path}: not a valid serving profile library ({exc})") from None


def legacy_profile(
    prefill_overhead_ms: float,
    prefill_per_token_us: float,
    tpot_ms: float,
    batch_factor: float,
    context_factor: float,
    max_concurrency: int,
    vram_mb: int,
) -> ServingProfile:
    """A profile from a model's old `latency` entry (batch-1 figures and linear factors), so configs
    written before profiles existed still load. The KV cache is made roomy: those configs never said."""
    top = max(2, max_concurrency)
    return ServingProfile(
        source="converted from the model's `latency` entry (no profile given)",
        weights_mb=vram_mb * 0.25,
        overhead_mb=0,
        kv_kb_per_token=max(1.0, vram_mb * 0.75 * 1024 / 262_144),
        max_num_seqs=max_concurrency,
        decode=DecodeCost(batch=[1, top], step_ms=[tpot_ms, tpot_ms * (1 + batch_factor * (top - 1))]),
        kv_ns_per_token=tpot_ms * 1e6 * context_factor / 1000,
        prefill_us_per_token=prefill_per_token_us,
        request_overhead_ms=prefill_overhead_ms,
        noise_sigma=0.0,
    )
