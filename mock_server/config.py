"""The mock server's configuration: one YAML file, validated by pydantic.

A default configuration ships inside the package (`default_config.yaml`) so that `hostedai-mock` runs
with no arguments. `${VAR}` in any string value is expanded from the environment, for secrets.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mock_server.resources import DEFAULT_CONFIG
from mock_server.serving_profiles import Lifecycle, OnEnd, ServingProfile, legacy_profile, load_library


class ConfigError(Exception):
    """A configuration that cannot be used; the message is one line naming the bad key."""


class _Strict(BaseModel):
    # Unknown keys are errors: a typo in a config file must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    strict: bool = False
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1_048_576
    # The admin API is used by the control plane (faults, clock, journal); None turns it off.
    admin_token: str | None = None
    # HTTPS (mock_server/tls.py): a certificate and its key (PEM files), or `tls_self_signed`, a directory
    # where a CA made at start-up writes its certificate (ca.pem) for clients to trust. `tls_names`:
    # host names the self-signed certificate is also valid for (a container's service name).
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_self_signed: str | None = None
    tls_names: list[str] = []

    @model_validator(mode="after")
    def _one_tls_mode(self) -> ServerConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        if self.tls_self_signed is not None and self.tls_cert is not None:
            raise ValueError("tls_self_signed makes its own certificate: drop tls_cert and tls_key")
        if self.tls_names and self.tls_self_signed is None:
            raise ValueError("tls_names are names for the self-signed certificate: set tls_self_signed too")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None or self.tls_self_signed is not None

    # Connection hygiene (mock_server/serving.py): an idle keep-alive connection closes after
    # idle_timeout_s; a request's headers are due header_timeout_s after its first byte (or the
    # connection's opening), its body body_timeout_s after its headers; at max_connections a new
    # connection closes the oldest idle one; SIGTERM lets requests in flight run shutdown_timeout_s more.
    idle_timeout_s: Annotated[float, Field(gt=0)] = 75.0
    header_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    body_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    max_connections: Annotated[int, Field(ge=1)] = 4096
    shutdown_timeout_s: Annotated[float, Field(ge=0)] = 10.0


# A cell's name: a DNS label of at most 32 characters, so it fits in an id, a URL and a Service name.
CELL_NAME = r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$"


class SimulationConfig(_Strict):
    # None: behaviour is seeded with 0 (outputs and latencies replay), but ids are fresh on every start
    # and reset, so a restarted mock never hands out an id it issued before. A seed makes ids replay too.
    seed: int | None = None
    clock: Literal["real", "manual"] = "real"
    # Real seconds per simulated second: 0.01 makes a 5-minute simulated inference take 3 s.
    time_scale: Annotated[float, Field(gt=0)] = 1.0
    # Unix time of simulated t=0. None: the wall time at start (real clock) or 2026-01-01T00:00:00Z
    # (manual clock), so manual-clock runs render identical timestamps.
    start_time: float | None = None
    # Ended allocations stay readable (with their per-allocation usage detail) this long, and at most
    # this many of them (the oldest-ended go first); after that only the usage aggregates remain.
    retention_seconds: Annotated[float, Field(ge=0)] = 3600.0
    retention_max_allocations: Annotated[int, Field(ge=0)] = 10_000
    # Usage is aggregated exactly per tenant, pool, model and period of this many simulated seconds.
    usage_period_seconds: Annotated[float, Field(gt=0)] = 3600.0
    idempotency: bool = True
    idempotency_ttl_seconds: Annotated[float, Field(gt=0)] = 86400.0
    # Idempotency records kept per tenant at most (the oldest go first): with the TTL, the contract's
    # guarantee, and per tenant so that one tenant's flood of keys never evicts another's.
    idempotency_max_keys: Annotated[int, Field(ge=1)] = 10_000
    # Seconds a client is told to wait (Retry-After) when capacity is exhausted.
    capacity_retry_after_s: Annotated[int, Field(ge=0)] = 5
    # Requests the journal keeps (a ring buffer: the oldest go first).
    journal_size: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    # Leak report: an allocation active longer than this (simulated seconds) counts as leaked.
    leak_grace_s: Annotated[float, Field(ge=0)] = 0.0
    # The cell (a region of the simulated provider) this process is, when several run side by side
    # (docs/cells.md): it prefixes allocation and inference ids and enters every id stream's seed, so
    # two cells started with the same config and seed never issue the same id. None: one mock, ids as
    # HostedAI documents them (`alloc_<16 hex>`).
    cell: Annotated[str, Field(pattern=CELL_NAME)] | None = None


# A customer tier's name (pool segregation: tenants carry one, pools list the ones they serve).
_TIER = r"^[A-Za-z0-9_.\-]{1,64}$"


class PoolConfig(_Strict):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
    gpu_type: str
    gpus: Annotated[int, Field(ge=1, le=1_000_000)]
    tflops_per_gpu: Annotated[float, Field(gt=0)]
    vram_mb_per_gpu: Annotated[int, Field(gt=0)]
    overcommit_ratio: Annotated[float, Field(ge=1, le=10)] = 1.0
    # VRAM is not overcommitted by default (1.0): past physical memory real GPUs page or kill tenants.
    vram_overcommit_ratio: Annotated[float, Field(ge=1, le=2)] = 1.0
    price_per_tflops_hour: Annotated[float, Field(ge=0)] = 0.0
    placement: Literal["best_fit", "first_fit", "spread"] = "best_fit"
    # How allocations on one GPU share it (docs/simulation.md, "Sharing"): spatial (MPS-like), time_sliced,
    # or temporal (hosted·ai: spatial until the GPU's VRAM is oversubscribed, then time quanta).
    contention: Literal["spatial", "time_sliced", "temporal"] = "spatial"
    time_quantum_s: Annotated[float, Field(gt=0, le=120)] = 30.0
    mps_interference: Annotated[float, Field(ge=0, le=2)] = 0.195
    switch_overhead: Annotated[float, Field(ge=0, le=2)] = 0.1
    swap_gb_per_s: Annotated[float, Field(gt=0)] = 25.0
    # Temporal mode: past this much VRAM oversubscription a co-tenant is killed (`oom`).
    vram_failure_ratio: Annotated[float, Field(ge=1, le=4)] = 1.6
    preemption: bool = True
    # The allocate answer itself is delayed this long (a synchronous subscribe); `lifecycle` is the time
    # after the answer until the allocation is ready to serve.
    provision_ms: Annotated[float, Field(ge=0)] = 0.0
    lifecycle: Lifecycle = Lifecycle()
    on_preemption: OnEnd = OnEnd(grace_s=30.0, wire="cut")
    on_gpu_failure: OnEnd = OnEnd(wire="cut")
    # Requests one allocation's model server lets wait; more are refused (503 `unavailable`). None: no limit.
    max_waiting: Annotated[int, Field(ge=0)] | None = None
    # The customer tiers this pool serves (pool segregation); None serves every tier.
    tiers: list[Annotated[str, Field(pattern=_TIER)]] | None = None


class GpuLatency(_Strict):
    """A model's latency on one GPU type, at batch size 1 and with the model's reference TFLOPS."""

    prefill_overhead_ms: Annotated[float, Field(ge=0)]
    prefill_per_token_us: Annotated[float, Field(ge=0)]
    tpot_ms: Annotated[float, Field(ge=0)]


class OutputLengths(_Strict):
    """How many tokens an answer runs to when `max_tokens` does not stop it first: lognormal, long-tailed."""

    median: Annotated[float, Field(gt=0)] = 220
    sigma: Annotated[float, Field(ge=0, le=3)] = 1.0
    min: Annotated[int, Field(ge=1)] = 1


class ModelConfig(_Strict):
    vram_mb: Annotated[int, Field(gt=0)]
    tflops: Annotated[float, Field(gt=0)]
    max_tokens: Annotated[int, Field(gt=0)]
    context_tokens: Annotated[int, Field(gt=0)]
    pools: list[str]
    # The serving profile (mock_server/serving_profiles.yaml, or the config's `serving_profiles`) the
    # model runs on each GPU type; a GPU type without one falls back to `latency` (older configs).
    serving: dict[str, str] = {}
    latency: dict[str, GpuLatency] = {}
    output_tokens: OutputLengths = OutputLengths()
    # Characters per token of the model's tokenizer, for English text (BPE: about 4).
    chars_per_token: Annotated[float, Field(gt=0)] = 4.0
    # Per-sequence decode slows with the number of sequences batched on the GPU: ITL × (1 + a·(n−1)).
    batch_factor: Annotated[float, Field(ge=0)] = 0.046
    # Decode slows as the context grows: ITL × (1 + b·context_tokens/1000).
    context_factor: Annotated[float, Field(ge=0)] = 0.012
    # Sequences one model server runs at once, for a model converted from `latency`.
    max_concurrency: Annotated[int, Field(ge=1)] = 32


class QuotaConfig(_Strict):
    max_active_allocations: Annotated[int, Field(ge=0)] | None = None
    max_tflops: Annotated[float, Field(ge=0)] | None = None


class RateLimitConfig(_Strict):
    rps: Annotated[float, Field(gt=0)]
    burst: Annotated[int, Field(ge=1)]


class TenantConfig(_Strict):
    api_keys: Annotated[list[str], Field(min_length=1)]
    # The customer tier: the tenant may use only the pools that serve it (pools without `tiers` serve all).
    tier: Annotated[str, Field(pattern=_TIER)] = "standard"
    quota: QuotaConfig = QuotaConfig()
    rate_limit: RateLimitConfig | None = None

    @field_validator("api_keys")
    @classmethod
    def _keys_not_blank(cls, keys: list[str]) -> list[str]:
        if any(not k.strip() for k in keys):
            raise ValueError("an API key may not be empty")
        return keys


class MockConfig(_Strict):
    server: ServerConfig = ServerConfig()
    simulation: SimulationConfig = SimulationConfig()
    pools: Annotated[list[PoolConfig], Field(min_length=1)]
    models: Annotated[dict[str, ModelConfig], Field(min_length=1)]
    tenants: Annotated[dict[str, TenantConfig], Field(min_length=1)]
    # Fault rules in the admin contract's FaultRuleInput shape (validated against it at start-up),
    # and named scenarios applied at start-up and on every reset.
    faults: list[dict[str, Any]] = []
    scenarios: list[str] = []
    # Serving profiles besides (or instead of) the packaged ones, by name.
    serving_profiles: dict[str, ServingProfile] = {}

    @model_validator(mode="after")
    def _cross_references(self) -> MockConfig:
        pool_ids = [p.id for p in self.pools]
        if len(set(pool_ids)) != len(pool_ids):
            raise ValueError("pool ids must be unique")
        gpu_types = {p.id: p.gpu_type for p in self.pools}
        for name, model in self.models.items():
            for pool_id in model.pools:
                if pool_id not in gpu_types:
                    raise ValueError(f"models.{name}.pools names unknown pool {pool_id!r}")
                gpu_type = gpu_types[pool_id]
                if gpu_type not in model.serving and gpu_type not in model.latency:
                    raise ValueError(
                        f"models.{name} has no serving profile (serving) nor latency for gpu_type {gpu_type!r} "
                        f"of pool {pool_id!r}"
                    )
                profile = model.serving.get(gpu_type)
                if profile is not None and profile not in self.serving_profiles and profile not in _library():
                    raise ValueError(f"models.{name}.serving.{gpu_type} names unknown profile {profile!r}")
        seen: dict[str, str] = {}
        for tenant, cfg in self.tenants.items():
            for key in cfg.api_keys:
                if key in seen and seen[key] != tenant:
                    raise ValueError(f"API key of tenant {tenant!r} is also a key of tenant {seen[key]!r}")
                seen[key] = tenant
            if not any(p.tiers is None or cfg.tier in p.tiers for p in self.pools):
                raise ValueError(f"tenants.{tenant}.tier {cfg.tier!r} is served by no pool (see pools[].tiers)")
        return self

    def with_overrides(self, **sections: dict[str, Any]) -> MockConfig:
        """A copy with some fields of `server` / `simulation` replaced, validated again."""
        data = self.model_dump()
        for section, values in sections.items():
            data[section].update({k: v for k, v in values.items() if v is not None})
        try:
            return MockConfig.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None


@functools.cache
def _library() -> dict[str, ServingProfile]:
    return load_library()


def serving_profile(config: MockConfig, model: str, gpu_type: str) -> ServingProfile:
    """The profile a model runs on a GPU type: the config's own, the packaged library's, or one made
    from the model's `latency` entry."""
    spec = config.models[model]
    name = spec.serving.get(gpu_type)
    if name is not None:
        return config.serving_profiles.get(name) or _library()[name]
    legacy = spec.latency[gpu_type]
    return legacy_profile(
        legacy.prefill_overhead_ms,
        legacy.prefill_per_token_us,
        legacy.tpot_ms,
        spec.batch_factor,
        spec.context_factor,
        spec.max_concurrency,
        spec.vram_mb,
    )


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value: Any, path: str) -> Any:
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"config key {path}: environment variable {name} is not set")
            return os.environ[name]

        return _ENV_REF.sub(lookup, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = error.error_count() - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"config key {where}: {first['msg']}{suffix}"


def parse_config(data: Any, source: str = "config") -> MockConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    try:
        return MockConfig.model_validate(_expand_env(data, ""))
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None


def load_config(path: str | Path | None = None) -> MockConfig:
    """Load and validate a config file; None loads the packaged default."""
    if path is None:
        text = DEFAULT_CONFIG.read_text("utf-8")
        source = "default config"
    else:
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
        source = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}: not valid YAML{where}") from None
    return parse_config(data, source)


def default_config() -> MockConfig:
    return load_config(None)
