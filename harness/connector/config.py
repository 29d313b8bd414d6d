"""The connector's configuration, in the integration guide's YAML shape:

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

plus `allocation_timeout_secs` (30), `inference_timeout_secs` (300), `retry` (backoff), `verify_tls`
and `ca_bundle`. `${VAR}` is expanded from the environment; the API key's template is kept, so the key
can be re-read (rotated) without a restart.
"""

from __future__ import annotations

import os
import re
import ssl
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.yamlfile import first_problem, read_yaml

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConnectorConfigError(Exception):
    """A configuration that cannot be used; the message is one line naming the key."""


def expand_env(template: str, key: str) -> str:
    """`${VAR}` replaced from the environment; a missing variable is an error naming both."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConnectorConfigError(f"{key}: environment variable {name} is not set")
        return os.environ[name]

    return _ENV_REF.sub(lookup, template)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CircuitBreakerConfig(_Strict):
    failure_threshold: Annotated[int, Field(ge=1)] = 5
    recovery_timeout: Annotated[float, Field(gt=0)] = 60.0
    """Seconds the circuit stays open before one probe may go through."""


class RetryConfig(_Strict):
    base_delay_ms: Annotated[float, Field(ge=0)] = 100.0
    max_delay_ms: Annotated[float, Field(ge=0)] = 800.0
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.2
    """Each delay is multiplied by a uniform factor in [1 − jitter, 1 + jitter]."""
    retry_after_cap_secs: Annotated[float, Field(ge=0)] = 30.0
    """A server's `Retry-After` is honoured up to this many seconds."""


class HostedAiConfig(_Strict):
    base_url: str
    api_key: str
    """The key, or a `${VAR}` template re-read on a 401 (rotation without restart)."""
    pool: str = "gpu-pool-1"
    overcommit: bool = True
    timeout_secs: Annotated[float, Field(gt=0)] = 30.0
    """Timeout of one attempt of a call other than allocate and inference."""
    max_retries: Annotated[int, Field(ge=0, le=10)] = 3
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    allocation_timeout_secs: Annotated[float, Field(gt=0)] = 30.0
    """The whole of `request_allocation`, retries included."""
    inference_timeout_secs: Annotated[float, Field(gt=0)] = 300.0
    """The whole of one inference, retries included."""
    retry: RetryConfig = RetryConfig()
    verify_tls: bool = True
    ca_bundle: str | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url.rstrip("/")

    def resolve_api_key(self) -> str:
        key = expand_env(self.api_key, "hosted_ai.api_key")
        if not key.strip():
            raise ConnectorConfigError("hosted_ai.api_key: the key is empty")
        return key

    def ssl_context(self) -> ssl.SSLContext | bool:
        """Verified TLS by default, against `ca_bundle` when given; False only when verify_tls is off."""
        if not self.verify_tls:
            return False
        if self.ca_bundle is None:
            return True
        return ssl.create_default_context(cafile=self.ca_bundle)


def parse_connector_config(data: Any, source: str = "config") -> HostedAiConfig:
    """The `hosted_ai` section of a config mapping, validated; the API key's variable must be set."""
    if not isinstance(data, dict) or not isinstance(data.get("hosted_ai"), dict):
        raise ConnectorConfigError(f"{source}: expected a `hosted_ai:` section")
    section = {
        k: (expand_env(v, f"hosted_ai.{k}") if isinstance(v, str) and k != "api_key" else v)
        for k, v in data["hosted_ai"].items()
    }
    try:
        config = HostedAiConfig.model_validate(section)
    except ValidationError as exc:
        raise ConnectorConfigError(f"{source}: {first_problem(exc, 'hosted_ai')}") from None
    try:
        config.resolve_api_key()
    except ConnectorConfigError as exc:
        raise ConnectorConfigError(f"{source}: {exc}") from None
    return config


def load_connector_config(path: str | Path) -> HostedAiConfig:
    return parse_connector_config(read_yaml(path, ConnectorConfigError), str(path))
