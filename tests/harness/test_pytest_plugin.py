"""The pytest plugin, as a team's own suite uses it (run in an inner pytest session)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TEAM_TESTS = """
from harness.connector import InferenceRequest, Requirements


async def test_allocate_and_infer(hostedai_connector):
    async with hostedai_connector.allocation(Requirements(model="gemma-270m", tflops=5, vram_mb=2048)) as a:
        answer = await hostedai_connector.inference(a.allocation_id, InferenceRequest(prompt="hi", max_tokens=4))
    assert answer.usage.completion_tokens <= 4


async def test_the_mock_is_reset_between_tests(hostedai_mock, hostedai_connector):
    assert await hostedai_connector.list_allocations(state=["active"]) == []
    await hostedai_connector.request_allocation(Requirements(model="gemma-270m", tflops=5, vram_mb=2048))


async def test_and_reset_again(hostedai_mock, hostedai_connector):
    assert await hostedai_connector.list_allocations(state=["active"]) == []
"""


def test_fixtures_give_a_reset_mock_and_a_connector(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_team=TEAM_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_a_live_target_skips_the_mock_only_tests(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_team="def test_needs_mock(hostedai_mock):\n    pass\n")
    monkeypatch.setenv("SOME_KEY", "k")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--hostedai-target", "http://127.0.0.1:9", "--hostedai-api-key-env", "SOME_KEY"
    )
    result.assert_outcomes(skipped=1)


def test_the_documented_example_runs(pytester: pytest.Pytester) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "harness.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", doc, re.S)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_doc_example=example)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
