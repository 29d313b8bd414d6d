"""The OpenAPI contract, compiled once into validators.

Everything the HTTP layer knows about paths, parameters, bodies, statuses and response shapes comes from
the OpenAPI file: routes are built from its operations (by `operationId`), requests are validated
against its schemas, and in strict mode so is every response. Schemas are compiled once, at start-up,
into jsonschema-rs validators; a request costs one compiled validation, not an interpretation of the spec.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml

from mock_server.resources import HOSTEDAI_CONTRACT

_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@dataclass(frozen=True, slots=True)
class Violation:
    path: str
    """A JSON pointer naming where: `/body/requirements/tflops`, `/query/limit`, `/header/Idempotency-Key`."""
    message: str


class CompiledSchema:
    """One schema of the contract, compiled, with the contract's components in reach of its `$ref`s."""

    def __init__(self, schema: dict[str, Any], components: dict[str, Any]) -> None:
        self._validator = jsonschema_rs.Draft202012Validator(
            {**schema, "components": components}, validate_formats=True
        )

    def violations(self, instance: Any, prefix: str) -> list[Violation]:
        try:
            if self._validator.is_valid(instance):
                return []
        except UnicodeEncodeError:
            # Lone surrogates: from `\ud800` escapes in JSON, or non-UTF-8 bytes in a header.
            return [Violation(prefix, "is not valid Unicode text (it contains a lone surrogate)")]
        return [
            Violation(prefix + "".join(f"/{part}" for part in error.instance_path), error.message)
            for error in self._validator.iter_errors(instance)
        ]


class ParameterParseError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    location: str
    required: bool
    kind: str
    """The JSON type the raw string is parsed into before validation."""
    schema: CompiledSchema
    is_array: bool = False
    default: Any = None

    def parse(self, raw: str) -> Any:
        kind = self.kind
        try:
            if kind == "integer":
                return int(raw)
            if kind == "number":
                number = float(raw)
                if not math.isfinite(number):
                    raise ValueError(raw)
                return number
        except ValueError:
            raise ParameterParseError(f"{raw!r} is not a valid {kind}") from None
        if kind == "boolean":
            if raw in ("true", "false"):
                return raw == "true"
            raise ParameterParseError(f"{raw!r} is not true or false")
        return raw


@dataclass(frozen=True, slots=True)
class ResponseSpec:
    media_types: dict[str, CompiledSchema | None]
    required_headers: tuple[str, ...]


@dataclass(slots=True)
class Operation:
    operation_id: str
    method: str
    path: str
    security_scheme: str | None
    """The name of the security scheme the operation needs, or None when it is open."""
    parameters: list[Parameter]
    body: CompiledSchema | None
    body_required: bool
    responses: dict[str, ResponseSpec] = field(default_factory=dict)

    def response_for(self, status: int) -> ResponseSpec | None:
        return (
            self.responses.get(str(status)) or self.responses.get(f"{status // 100}XX") or self.responses.get("default")
        )


class Contract:
    def __init__(self, spec: dict[str, Any], text: str) -> None:
        self.spec = spec
        self.yaml_text = text
        self.json_text = json.dumps(spec, indent=2)
        self._components = spec.get("components", {})
        self._named: dict[str, CompiledSchema] = {}
        self.operations: dict[str, Operation] = {}
        default_security = spec.get("security", [])
        for path, item in spec["paths"].items():
            shared = [self._deref(p) for p in item.get("parameters", [])]
            for method in _METHODS:
                op = item.get(method)
                if op is None:
                    continue
                params = {(p["name"], p["in"]): p for p in shared}
                params.update({(p["name"], p["in"]): p for p in map(self._deref, op.get("parameters", []))})
                body = self._deref(op["requestBody"]) if "requestBody" in op else None
                body_schema = body["content"]["application/json"]["schema"] if body else None
                self.operations[op["operationId"]] = Operation(
                    operation_id=op["operationId"],
                    method=method.upper(),
                    path=path,
                    security_scheme=next(
                        (name for requirement in op.get("security", default_security) for name in requirement), None
                    ),
                    parameters=[self._parameter(p) for p in params.values()],
                    body=self.compile(body_schema) if body_schema is not None else None,
                    body_required=bool(body and body.get("required")),
                    responses={str(status): self._response(self._deref(r)) for status, r in op["responses"].items()},
                )

    @classmethod
    def load(cls, path: Path = HOSTEDAI_CONTRACT) -> Contract:
        """The contract at `path`, parsed and compiled once per process (it is read-only)."""
        return _load_cached(path.resolve())

    def compile(self, schema: dict[str, Any]) -> CompiledSchema:
        return CompiledSchema(schema, self._components)

    def schema(self, name: str) -> CompiledSchema:
        """A named schema of `components/schemas`, compiled once."""
        if name not in self._named:
            self._named[name] = self.compile({"$ref": f"#/components/schemas/{name}"})
        return self._named[name]

    def _deref(self, obj: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in obj:
            node: Any = self.spec
            for part in obj["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            obj = node
        return obj

    def _parameter(self, p: dict[str, Any]) -> Parameter:
        schema = p.get("schema", {})
        kind = schema.get("type", "string")
        is_array = kind == "array"
        if is_array:
            kind = schema.get("items", {}).get("type", "string")
        return Parameter(
            name=p["name"],
            location=p["in"],
            required=bool(p.get("required")),
            kind=kind if isinstance(kind, str) else "string",
            schema=self.compile(schema),
            is_array=is_array,
            default=schema.get("default"),
        )

    def _response(self, r: dict[str, Any]) -> ResponseSpec:
        media = {
            media_type: (self.compile(content["schema"]) if "schema" in content else None)
            for media_type, content in r.get("content", {}).items()
        }
        required = tuple(name for name, header in r.get("headers", {}).items() if self._deref(header).get("required"))
        return ResponseSpec(media_types=media, required_headers=required)


@functools.cache
def _load_cached(path: Path) -> Contract:
    text = path.read_text("utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return Contract(yaml.load(text, Loader=loader), text)
