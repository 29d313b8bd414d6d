"""contracts/harpoon.v2.yaml is valid OpenAPI 3.1, and its own examples obey its schemas."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

from tests.service.conftest import CONTRACT, SPEC, contract_validator


def test_the_harpoon_contract_is_valid_openapi() -> None:
    spec, base_uri = read_from_filename(str(CONTRACT))
    validate(spec, base_uri=base_uri)
    assert spec["openapi"].startswith("3.1")


@pytest.mark.parametrize("name", ["Answered", "Fallback"])
def test_the_result_examples_obey_the_schema(name: str) -> None:
    contract_validator("ProcessResult").validate(SPEC["components"]["examples"][name]["value"])


def _problem_examples() -> list[Any]:
    responses = SPEC["components"]["responses"]
    return [
        r["content"]["application/problem+json"]["example"]
        for r in responses.values()
        if "example" in r.get("content", {}).get("application/problem+json", {})
    ]


@pytest.mark.parametrize("example", _problem_examples())
def test_the_problem_examples_obey_the_schema(example: dict[str, Any]) -> None:
    contract_validator("Problem").validate(example)
