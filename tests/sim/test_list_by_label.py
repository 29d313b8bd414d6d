"""Listing by label (the connector's reclaim path) is served from an index, never a scan of every
allocation kept: it answers the same with the tenant's full table out of reach."""

from __future__ import annotations

from typing import Any

import pytest

from mock_server.sim.simulator import AllocationSpec
from tests.sim.conftest import SimFactory


class _NoScan(dict[str, Any]):
    def values(self) -> Any:
        raise AssertionError("listing by label scanned every allocation")

    def __iter__(self) -> Any:
        raise AssertionError("listing by label scanned every allocation")


def test_a_label_finds_its_allocations_without_a_scan(make_sim: SimFactory) -> None:
    sim = make_sim([{"gpus": 10}])
    made = [
        sim.allocate(
            "dev", AllocationSpec("p", "m", 1.0, 100, labels={"client_request": f"k{n}", "team": "a"}), request_id="r"
        )
        for n in range(60)
    ]
    sim.release("dev", made[7].allocation.allocation_id)
    sim._by_tenant["dev"] = _NoScan(sim._by_tenant["dev"])
    page, _ = sim.list_allocations("dev", labels={"client_request": "k7"})
    assert [a.allocation_id for a in page] == [made[7].allocation.allocation_id]
    active, _ = sim.list_allocations("dev", states=["active"], labels={"client_request": "k7"})
    assert active == []
    team, cursor = sim.list_allocations("dev", labels={"team": "a"}, limit=50)
    assert len(team) == 50
    rest, end = sim.list_allocations("dev", labels={"team": "a"}, limit=50, after_seq=int(cursor or 0))
    assert (len(rest), end) == (10, None)


def test_without_a_label_the_listing_still_sees_everything_kept(make_sim: SimFactory) -> None:
    sim = make_sim([{"gpus": 10}])
    for n in range(3):
        sim.allocate("dev", AllocationSpec("p", "m", 1.0, 100, labels={"n": str(n)}), request_id="r")
    page, _ = sim.list_allocations("dev")
    assert len(page) == 3
    sim._by_tenant["dev"] = _NoScan(sim._by_tenant["dev"])
    with pytest.raises(AssertionError):
        sim.list_allocations("dev")  # the unfiltered listing does walk the table: the guard works
