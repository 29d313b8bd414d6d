"""A sample of the self-test catalogue in CI: broken servers served by URL, each flagged in live mode by
the check named for it (the whole catalogue, and plain schemathesis beside it, is
`python -m benchmarks.selftest`; its table is in docs/harness.md)."""

from __future__ import annotations

import pytest

from benchmarks.selftest.defects import CATALOGUE
from benchmarks.selftest.servers import served_mock
from harness.suites.base import RunOptions
from harness.suites.contract import ContractSuite
from harness.target import Target

SAMPLE = (
    "allocate-200",
    "problem-as-json",
    "idempotency-ignored",
    "capacity-never-given-back",
    "pages-skip",
    "stream-token-lost",
    "usage-totals-under",
    "integer-floats-crash",
)
OPTIONS = RunOptions(seed=1, examples=1, max_allocations=10)


def _live(url: str) -> Target:
    return Target(url=url, api_key="dev-key", second_api_key="team-b-key", label=url)


def test_every_defect_in_the_catalogue_names_a_check_and_the_sample_is_in_it() -> None:
    names = [d.name for d in CATALOGUE]
    assert len(names) == len(set(names)) >= 25
    assert set(SAMPLE) <= set(names)
    assert all(d.check.startswith(("contract: ", "stateful: ")) for d in CATALOGUE)


@pytest.mark.parametrize("name", SAMPLE)
async def test_the_check_named_for_a_defect_flags_it(name: str) -> None:
    defect = next(d for d in CATALOGUE if d.name == name)
    async with served_mock(defect, seed=1) as url:
        result = await ContractSuite().run(_live(url), OPTIONS)
    failed = {c.name: c.message for c in result.checks if c.outcome == "failed"}
    assert defect.check in failed, sorted(failed)


async def test_the_clean_server_is_never_flagged() -> None:
    async with served_mock(None, seed=1) as url:
        result = await ContractSuite().run(_live(url), OPTIONS)
    assert [c.name for c in result.checks if c.outcome == "failed"] == []
    assert result.count("passed") > 20
