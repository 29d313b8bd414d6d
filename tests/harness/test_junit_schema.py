"""The harness's junit.xml is valid against Jenkins xUnit's JUnit schema (junit-10.xsd, which `make tools`
takes from pytest's source distribution), for every kind of outcome: passed, failed, skipped checks
and a suite skipped whole."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import xmlschema

from harness.report import junit
from harness.suites.base import CheckResult, SuiteResult

XSD = Path(__file__).resolve().parents[2] / ".tools" / "junit-10.xsd"


@pytest.fixture(scope="module")
def jenkins_schema() -> xmlschema.XMLSchema:
    if not XSD.is_file():
        pytest.fail(f"{XSD} is missing: run `make tools` (make test does)", pytrace=False)
    return xmlschema.XMLSchema(str(XSD))


def _results() -> list[SuiteResult]:
    return [
        SuiteResult(
            "contract",
            [
                CheckResult("contract: GET /v1/pools", "passed", 0.5, "12 request(s)"),
                CheckResult(
                    "contract: POST /v1/allocate",
                    "failed",
                    1.25,
                    'Response violates schema <&> "quoted"',
                    ["curl -X POST http://127.0.0.1:8000/v1/allocate"],
                ),
                CheckResult("contract: GET /v1/usage", "skipped", 0.0, "untested: 9 of 10 answers were 429"),
            ],
            duration_s=3.5,
            replay="hostedai-harness contract --seed 0 --examples 25",
        ),
        SuiteResult("chaos", skipped_reason="needs the mock's control plane"),
    ]


def _xml(results: list[SuiteResult]) -> str:
    buffer = io.BytesIO()
    junit(results).write(buffer, encoding="utf-8", xml_declaration=True)
    return buffer.getvalue().decode()


def test_the_junit_report_is_valid_against_jenkins_xunit_schema(jenkins_schema: xmlschema.XMLSchema) -> None:
    document = _xml(_results())
    jenkins_schema.validate(document)  # raises with the first violation
    assert "<failure" in document
    assert document.count("<skipped") == 2


def test_the_schema_check_would_catch_a_testsuite_without_errors(jenkins_schema: xmlschema.XMLSchema) -> None:
    broken = _xml(_results()).replace(' errors="0"', "", 2)  # the root's and the first testsuite's
    assert not jenkins_schema.is_valid(broken)
