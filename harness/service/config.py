"""harpoon-service's configuration: one YAML file with three keys.

    hosted_ai: {...}          the integration guide's section (harness.connector.parse_connector_config)
    service: {host, port}     where to listen (default 127.0.0.1:8080)
    models: models.yaml       the request classes (harness.orchestrator.requirements), relative to this file;
                              optional: without it, the integration guide's table shipped in the package
    batching: {...}           optional: small requests share allocations (harness.orchestrator.BatchPolicy)

Every error is a `ServiceConfigError` of one line naming the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.connector import ConnectorConfigError, HostedAiConfig, parse_connector_config
from harness.orchestrator import BatchPolicy, ModelClasses, ModelsConfigError, load_model_classes
from harness.resources import MODELS_FILE
from harness.yamlfile import first_problem, read_yaml

_KEYS = ("hosted_ai", "service", "models", "batching")


class ServiceConfigError(Exception):
    """A configuration that cannot be used; the message is one line naming the key."""


class ServiceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    """0 picks a free port."""
    health_timeout_secs: Annotated[float, Field(gt=0)] = 2.0
    """How long `/health` waits for HostedAI's health check: a probe must answer fast even when
    HostedAI does not."""
    # Connection hygiene (harness/service/serving.py): an idle keep-alive connection closes after
    # idle_timeout_secs; a request's headers are due header_timeout_secs after its first byte (or the
    # connection's opening), its body body_timeout_secs after its headers; at max_connections a new
    # connection closes the oldest idle one; SIGTERM lets requests in flight run shutdown_timeout_secs more.
    idle_timeout_secs: Annotated[float, Field(gt=0)] = 75.0
    header_timeout_secs: Annotated[float, Field(gt=0)] = 10.0
    body_timeout_secs: Annotated[float, Field(gt=0)] = 30.0
    max_connections: Annotated[int, Field(ge=1)] = 4096
    shutdown_timeout_secs: Annotated[float, Field(ge=0)] = 10.0


class HarpoonConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hosted_ai: HostedAiConfig
    service: ServiceSettings = ServiceSettings()
    classes: ModelClasses
    batching: BatchPolicy = BatchPolicy()

    def with_upstream(self, base_url: str | None) -> HarpoonConfig:
        """The same config in front of another HostedAI (the CLI's --hostedai-url); None keeps the config's."""
        if base_url is None:
            return self
        try:
            hosted_ai = HostedAiConfig.model_validate({**self.hosted_ai.model_dump(), "base_url": base_url})
        except ValidationError as exc:
            raise ServiceConfigError(f"--hostedai-url: {first_problem(exc, 'hosted_ai')}") from None
        return self.model_copy(update={"hosted_ai": hosted_ai})

    def with_listen(self, host: str | None, port: int | None) -> HarpoonConfig:
        """The same config listening elsewhere (the CLI's --host and --port); None keeps the value."""
        changes = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
        service = _validated_service({**self.service.model_dump(), **changes}, "command line")
        return self.model_copy(update={"service": service})


def _validated_service(data: Any, source: str) -> ServiceSettings:
    try:
        return ServiceSettings.model_validate(data)
    except ValidationError as exc:
        raise ServiceConfigError(f"{source}: {first_problem(exc, 'service')}") from None


def parse_service_config(data: Any, source: str = "config", base_dir: Path | None = None) -> HarpoonConfig:
    """A parsed config mapping, validated. `base_dir` anchors a relative `models` path (default: cwd)."""
    if not isinstance(data, dict):
        raise ServiceConfigError(f"{source}: expected a mapping with {', '.join(_KEYS)}")
    unknown = sorted(str(key) for key in data if key not in _KEYS)
    if unknown:
        raise ServiceConfigError(f"{source}: unknown key {unknown[0]} (expected {', '.join(_KEYS)})")
    try:
        hosted_ai = parse_connector_config(data, source)
    except ConnectorConfigError as exc:
        raise ServiceConfigError(str(exc)) from None
    service = _validated_service(data.get("service") or {}, source)
    models = data.get("models", str(MODELS_FILE))
    if not isinstance(models, str) or not models:
        raise ServiceConfigError(f"{source}: models: expected the path of the models file")
    path = Path(models)
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    try:
        classes = load_model_classes(path)
    except ModelsConfigError as exc:
        raise ServiceConfigError(str(exc)) from None
    try:
        batching = BatchPolicy.model_validate(data.get("batching") or {})
    except ValidationError as exc:
        raise ServiceConfigError(f"{source}: {first_problem(exc, 'batching')}") from None
    return HarpoonConfig(hosted_ai=hosted_ai, service=service, classes=classes, batching=batching)


def load_service_config(path: str | Path) -> HarpoonConfig:
    path = Path(path)
    return parse_service_config(read_yaml(path, ServiceConfigError), str(path), base_dir=path.parent)
