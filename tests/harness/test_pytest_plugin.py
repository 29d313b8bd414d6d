"""The pytest plugin as a team's own project uses it: each test here runs an inner pytest session in a
directory of its own (pytester, in a subprocess), with pytest-asyncio in strict mode, in auto mode, or
disabled. `tests/deploy/test_fresh_install.py` runs the docs' examples once more in a new virtualenv
where pytest-asyncio was never installed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "harness.md"
SYNC_EXAMPLE, ASYNC_EXAMPLE = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
NO_ASYNCIO = ("-p", "no:asyncio", "-p", "no:aiohttp")  # pytest-aiohttp builds on pytest-asyncio

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


def _run(pytester: pytest.Pytester, mode: str, *args: str) -> pytest.RunResult:
    if mode == "none":
        pytester.makeini("[pytest]\n")
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *NO_ASYNCIO, *args)
    pytester.makeini(f"[pytest]\nasyncio_mode = {mode}\nasyncio_default_fixture_loop_scope = function\n")
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


MARKED_TESTS = """
import pytest

from harness.control_plane import ControlPlaneError


@pytest.mark.hostedai(scenario=["region-outage", "rate-limited"], seed=11)
def test_scenarios_and_seed(hostedai_admin):
    state = hostedai_admin.state()
    assert state["seed"] == 11
    assert {rule["source"] for rule in state["rules"]} == {"scenario:region-outage", "scenario:rate-limited"}


def test_unmarked_tests_get_a_clean_mock_on_the_manual_clock(hostedai_admin):
    state = hostedai_admin.state()
    assert (state["seed"], state["rules"], state["clock"]["kind"]) == (0, [], "manual")


@pytest.mark.hostedai(clock="real", time_scale=0.5)
def test_a_real_clock(hostedai_mock, hostedai_admin, hostedai_target):
    assert hostedai_mock.url != hostedai_target.url  # a second process, with its own clock
    assert hostedai_admin.state()["clock"]["time_scale"] == 0.5
    with pytest.raises(ControlPlaneError) as refused:
        hostedai_admin.advance(1)
    assert refused.value.code == "clock_not_manual"


@pytest.mark.asyncio
@pytest.mark.hostedai(faults={"match": {"operation": "pools"}, "action": {"type": "quota"}})
async def test_the_connector_of_a_marked_test_meets_the_prepared_mock(hostedai_connector):
    from harness.connector import QuotaExceeded

    with pytest.raises(QuotaExceeded):
        await hostedai_connector.list_pools()
"""

BAD_MARKERS = {
    "hostedai(sed=1)": "@pytest.mark.hostedai: unknown argument 'sed'",
    "hostedai(clock='wall')": "@pytest.mark.hostedai: clock must be 'manual' or 'real', not 'wall'",
    "hostedai(time_scale=0.1)": "@pytest.mark.hostedai: time_scale needs clock='real'",
    "hostedai(scenario='no-such')": "@pytest.mark.hostedai: the mock refused it: POST /_admin/scenarios/no-such *404*",
}


def test_strict_mode_runs_the_documented_examples_and_the_marker(pytester: pytest.Pytester) -> None:
    bad = "import pytest\n" + "".join(
        f"\n\n@pytest.mark.{marker}\ndef test_bad_{i}(hostedai_mock):\n    pass\n"
        for i, marker in enumerate(BAD_MARKERS)
    )
    pytester.makepyfile(
        test_sync_example=SYNC_EXAMPLE, test_async_example=ASYNC_EXAMPLE, test_marked=MARKED_TESTS, test_bad=bad
    )
    result = _run(pytester, "strict")
    result.assert_outcomes(passed=3 + 2 + 4, errors=len(BAD_MARKERS))
    # A marker the plugin cannot follow fails its test with one line, not a traceback.
    result.stdout.fnmatch_lines_random([f"{message}*" for message in BAD_MARKERS.values()])
    assert "Traceback" not in result.stdout.str()


def test_auto_mode_runs_the_documented_examples_and_the_existing_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sync_example=SYNC_EXAMPLE, test_async_example=ASYNC_EXAMPLE, test_team=TEAM_TESTS)
    _run(pytester, "auto").assert_outcomes(passed=3 + 2 + 3)


def test_the_sync_example_passes_without_any_asyncio_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sync_example=SYNC_EXAMPLE)
    result = _run(pytester, "none")
    result.assert_outcomes(passed=3)
    (plugins,) = [line for line in result.stdout.lines if line.startswith("plugins: ")]
    assert "asyncio" not in plugins
    assert "hostedai-testkit" in plugins


def test_fixtures_and_marker_are_documented_in_pytest_itself(pytester: pytest.Pytester) -> None:
    shown = _run(pytester, "none", "--fixtures").stdout.str()
    for name, words in {
        "hostedai_target": "Where HostedAI is",
        "hostedai_mock": "reset before the test",
        "hostedai_admin": "SyncControlPlane",
        "hostedai_connector": "HostedAiConnector",
    }.items():
        assert re.search(rf"^{name}( \[session scope\])? -- .*\n\s+.*{words}", shown, re.M), name
    markers = pytester.runpytest_subprocess("-p", "no:cacheprovider", *NO_ASYNCIO, "--markers").stdout.str()
    assert "@pytest.mark.hostedai(scenario=None, seed=None, clock='manual'" in markers


def test_a_live_target_skips_the_mock_only_tests(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(
        test_team="""
import pytest

def test_needs_mock(hostedai_mock):
    pass

@pytest.mark.hostedai(seed=1)
def test_marked(hostedai_target):
    pass

def test_live(hostedai_target):
    assert (hostedai_target.url, hostedai_target.api_key) == ("http://127.0.0.1:9", "k")
"""
    )
    monkeypatch.setenv("SOME_KEY", "k")
    result = _run(pytester, "none", "--hostedai-target", "http://127.0.0.1:9", "--hostedai-api-key-env", "SOME_KEY")
    result.assert_outcomes(skipped=2, passed=1)
