"""The connector's parts on their own: breaker, retry policy, error mapping, config, payload models."""

from __future__ import annotations

import random
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from harness.connector import (
    CapacityExhausted,
    CircuitBreaker,
    CircuitOpen,
    CircuitState,
    ConnectorConfigError,
    NotFound,
    RateLimited,
    RetryPolicy,
    ServerError,
    TransportError,
    Unavailable,
    ValidationFailed,
    load_connector_config,
    models,
    parse_connector_config,
)
from harness.connector.errors import BadGateway, NotImplementedByServer, error_for

ROOT = Path(__file__).resolve().parents[2]
GUIDE_CONFIG = """\
hosted_ai:
  base_url: "https://api.hosted.ai"
  api_key: "${HOSTED_AI_API_KEY}"
  pool: "gpu-pool-1"
  overcommit: true
  timeout_secs: 30
  max_retries: 3
  circuit_breaker:
    failure_threshold: 5
    recovery_timeout: 60
"""


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_a_success_resets_the_count() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("u", failure_threshold=3, recovery_timeout_s=10, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitOpen) as raised:
        breaker.before_call()
    assert raised.value.retry_in_s == 10


def test_breaker_half_opens_for_one_probe_which_closes_or_reopens_it() -> None:
    clock = FakeClock()
    changes: list[CircuitState] = []
    breaker = CircuitBreaker("u", failure_threshold=1, recovery_timeout_s=10, clock=clock, on_change=changes.append)
    breaker.record_failure()
    clock.now = 9.9
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    clock.now = 10.0
    breaker.before_call()  # the probe
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # only one at a time
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    clock.now = 20.0
    breaker.before_call()
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED
    assert changes == [
        CircuitState.OPEN,
        CircuitState.HALF_OPEN,
        CircuitState.OPEN,
        CircuitState.HALF_OPEN,
        CircuitState.CLOSED,
    ]


def test_backoff_is_100_200_400_800_ms_then_capped() -> None:
    policy = RetryPolicy(max_retries=6, jitter=0)
    rng = random.Random(0)
    error = ServerError(500, "internal_error", "x")
    assert [policy.delay_s(error, n, rng) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 0.8, 0.8]


def test_jitter_stays_within_its_band_and_is_seeded() -> None:
    policy = RetryPolicy(jitter=0.2)
    error = TransportError("x")
    first = [policy.delay_s(error, 1, random.Random(7)) for _ in range(3)]
    assert len(set(first)) == 1  # same seed, same delay
    delays = [policy.delay_s(error, 1, rng) for rng in [random.Random(i) for i in range(200)]]
    assert min(delays) >= 0.16
    assert max(delays) <= 0.24
    assert max(delays) - min(delays) > 0.05


def test_retry_after_replaces_backoff_up_to_the_cap() -> None:
    policy = RetryPolicy(retry_after_cap_s=30)
    rng = random.Random(0)
    assert policy.delay_s(RateLimited(429, "rate_limited", "x", retry_after=3), 0, rng) == 3
    assert policy.delay_s(Unavailable(503, "unavailable", "x", retry_after=3600), 0, rng) == 30


@pytest.mark.parametrize(
    ("error", "retryable", "trips_breaker"),
    [
        (ServerError(500, "internal_error", "x"), True, True),
        (NotImplementedByServer(501, "http_501", "x"), False, False),
        (BadGateway(502, "bad_gateway", "x"), True, True),
        (Unavailable(503, "unavailable", "x"), True, True),
        (CapacityExhausted(503, "capacity_exhausted", "x"), True, False),
        (RateLimited(429, "rate_limited", "x"), True, False),
        (NotFound(404, "not_found", "x"), False, False),
        (ValidationFailed(422, "validation_failed", "x"), False, False),
        (TransportError("reset"), True, True),
    ],
)
def test_which_errors_are_retried_and_which_trip_the_breaker(error: Any, retryable: bool, trips_breaker: bool) -> None:
    policy = RetryPolicy(max_retries=3)
    assert policy.should_retry(error, 0) is retryable
    assert policy.should_retry(error, 3) is False
    assert error.counts_as_failure is trips_breaker


def test_wire_errors_map_to_types_by_code_then_by_status() -> None:
    problem = {"code": "capacity_exhausted", "detail": "full", "retry_after": 5}
    error = error_for(503, problem, "req_1", None)
    assert isinstance(error, CapacityExhausted)
    assert (error.status, error.code, error.request_id, error.retry_after) == (503, "capacity_exhausted", "req_1", 5)
    assert isinstance(error_for(502, None, None, None), BadGateway)  # a proxy's bare 502
    assert isinstance(error_for(501, None, None, None), NotImplementedByServer)
    assert isinstance(error_for(529, {"code": "overloaded"}, None, 2.0), ServerError)
    assert isinstance(error_for(503, {"code": "not_found"}, None, None), Unavailable)  # a 5xx is never a 4xx type
    with_state = error_for(409, {"code": "allocation_not_active", "state": "preempted"}, None, None)
    assert with_state.state == "preempted"  # type: ignore[attr-defined]


def test_the_guides_yaml_loads_with_the_key_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTED_AI_API_KEY", "secret")
    path = tmp_path / "hosted_ai.yaml"
    path.write_text(GUIDE_CONFIG)
    config = load_connector_config(path)
    assert (config.base_url, config.pool, config.overcommit, config.timeout_secs, config.max_retries) == (
        "https://api.hosted.ai",
        "gpu-pool-1",
        True,
        30,
        3,
    )
    assert (config.circuit_breaker.failure_threshold, config.circuit_breaker.recovery_timeout) == (5, 60)
    assert (config.allocation_timeout_secs, config.inference_timeout_secs) == (30, 300)
    assert config.api_key == "${HOSTED_AI_API_KEY}"  # the template is kept, for rotation
    assert config.resolve_api_key() == "secret"
    assert config.ssl_context() is True


def test_a_missing_variable_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSTED_AI_API_KEY", raising=False)
    with pytest.raises(
        ConnectorConfigError, match=r"hosted_ai\.api_key: environment variable HOSTED_AI_API_KEY is not set"
    ):
        parse_connector_config(yaml.safe_load(GUIDE_CONFIG))


def test_bad_config_values_are_one_line_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTED_AI_API_KEY", "k")
    data = yaml.safe_load(GUIDE_CONFIG)
    data["hosted_ai"]["circuit_breaker"]["failure_threshold"] = 0
    with pytest.raises(ConnectorConfigError, match=r"^config: hosted_ai\.circuit_breaker\.failure_threshold: "):
        parse_connector_config(data)
    data = yaml.safe_load(GUIDE_CONFIG)
    data["hosted_ai"]["base_url"] = "api.hosted.ai"
    with pytest.raises(ConnectorConfigError, match=r"hosted_ai\.base_url: Value error, must start with http"):
        parse_connector_config(data)


def test_tls_is_verified_by_default_and_a_ca_bundle_can_be_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTED_AI_API_KEY", "k")
    bundle = ssl.get_default_verify_paths().cafile or ssl.get_default_verify_paths().openssl_cafile
    data = yaml.safe_load(GUIDE_CONFIG)
    data["hosted_ai"]["ca_bundle"] = bundle
    context = parse_connector_config(data).ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    data["hosted_ai"]["verify_tls"] = False
    assert parse_connector_config(data).ssl_context() is False


def _schemas() -> dict[str, Any]:
    spec = yaml.safe_load((ROOT / "contracts" / "hostedai.v1.yaml").read_text())
    return dict(spec["components"]["schemas"])


# payload model -> the contract schema it must match
MODEL_SCHEMAS: list[tuple[type[BaseModel], str, bool]] = [
    (models.Allocation, "Allocation", True),
    (models.InferenceResponse, "InferenceResponse", True),
    (models.TokenUsage, "TokenUsage", True),
    (models.Timings, "Timings", True),
    (models.StreamToken, "InferenceTokenEvent", True),
    (models.StreamDone, "InferenceDoneEvent", True),
    (models.Pool, "Pool", True),
    (models.Model, "Model", True),
    (models.UsageRecord, "UsageRecord", True),
    (models.UsageTotals, "UsageTotals", True),
    (models.UsageReport, "UsageReport", True),
    (models.Requirements, "Requirements", False),
]


@pytest.mark.parametrize(("model", "schema_name", "is_response"), MODEL_SCHEMAS)
def test_payload_models_match_the_contract(model: type[BaseModel], schema_name: str, is_response: bool) -> None:
    schema = _schemas()[schema_name]
    fields = set(model.model_fields)
    assert fields == set(schema["properties"]), f"{model.__name__} and {schema_name} differ"
    if is_response:
        required_by_model = {name for name, f in model.model_fields.items() if f.is_required()}
        assert required_by_model <= set(schema.get("required", [])), "the model requires what the server may omit"


def test_the_inference_request_sends_only_fields_the_contract_knows() -> None:
    schema = _schemas()["InferenceRequest"]
    assert set(models.InferenceRequest.model_fields) <= set(schema["properties"])
