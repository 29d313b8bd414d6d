"""Harpoon's `/v2/process` service over HostedAI (contracts/harpoon.v2.yaml); run it with `harpoon-service`."""

from harness.service.app import create_service_app
from harness.service.config import (
    HarpoonConfig,
    ServiceConfigError,
    ServiceSettings,
    load_service_config,
    parse_service_config,
)

__all__ = [
    "HarpoonConfig",
    "ServiceConfigError",
    "ServiceSettings",
    "create_service_app",
    "load_service_config",
    "parse_service_config",
]
