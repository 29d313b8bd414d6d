"""The `/v2/process` request rules of contracts/harpoon.v2.yaml, compiled once into validators.

The contract file is the single source of truth: the service does not restate its limits (text length,
the deployment enum, the tenant id pattern) in code, it compiles the contract's own schemas with
jsonschema-rs and asks them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml

from harness.resources import HARPOON_CONTRACT

PROCESS_PATH = "/v2/process"
TENANT_HEADER = "X-Tenant-Id"


@dataclass(frozen=True, slots=True)
class Violation:
    path: str
    """A JSON pointer naming where: `/body/text`, `/header/X-Tenant-Id`."""
    message: str


class _Schema:
    """One schema of the contract, compiled, with the contract's components in reach of its `$ref`s."""

    def __init__(self, schema: dict[str, Any], components: dict[str, Any]) -> None:
        self._validator = jsonschema_rs.Draft202012Validator({**schema, "components": components})

    def violations(self, instance: Any, prefix: str) -> list[Violation]:
        try:
            if self._validator.is_valid(instance):
                return []
        except UnicodeEncodeError:
            # A lone surrogate (a header's undecodable bytes) cannot even be handed to the validator.
            return [Violation(prefix, "is not valid Unicode text")]
        return [
            Violation(prefix + "".join(f"/{part}" for part in error.instance_path), error.message)
            for error in self._validator.iter_errors(instance)
        ]


class ProcessContract:
    """The validators of `POST /v2/process`: its body, and its tenant header."""

    def __init__(self, spec: dict[str, Any]) -> None:
        operation = spec["paths"][PROCESS_PATH]["post"]
        components = spec.get("components", {})
        self._body = _Schema(operation["requestBody"]["content"]["application/json"]["schema"], components)
        tenant = next(p for p in operation.get("parameters", []) if p["in"] == "header" and p["name"] == TENANT_HEADER)
        self._tenant = _Schema(tenant["schema"], components)

    @classmethod
    def load(cls, path: Path = HARPOON_CONTRACT) -> ProcessContract:
        """Parsed and compiled once per process and path (the contract is read-only)."""
        return _load_cached(path.resolve())

    def body_violations(self, body: Any) -> list[Violation]:
        return self._body.violations(body, "/body")

    def tenant_violations(self, tenant: str) -> list[Violation]:
        return self._tenant.violations(tenant, f"/header/{TENANT_HEADER}")


@functools.cache
def _load_cached(path: Path) -> ProcessContract:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return ProcessContract(yaml.load(path.read_text("utf-8"), Loader=loader))
