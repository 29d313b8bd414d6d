"""The fan-out's HTTP-free parts: naming cells, judging their answers, fault ids, merged journal pages."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mock_server import cli, fanout
from mock_server.cells import merge
from mock_server.cells.rules import RuleIds
from mock_server.cells.topology import Cell, parse_cell, parse_cells
from mock_server.cells.verdict import Agreed, Answer, Broken, Relay, Unreachable, judge

A, B = Cell("a", "http://127.0.0.1:1"), Cell("b", "http://127.0.0.1:2")


def _answer(cell: Cell, status: int, body: Any = None) -> Answer:
    return Answer(cell, status, body, b"", "application/json")


def test_a_cell_is_named_by_its_argument_or_after_its_address() -> None:
    assert parse_cell("eu-west=http://mock-a:8000/") == Cell("eu-west", "http://mock-a:8000")
    assert parse_cell("http://127.0.0.1:8001").name == "127-0-0-1-8001"


@pytest.mark.parametrize(
    "specs",
    [[], ["a=ftp://x"], ["a=http://x/path"], ["A=http://x"], ["a=http://x", "a=http://y"], ["a="]],
)
def test_bad_cells_are_refused_with_one_line(specs: list[str]) -> None:
    with pytest.raises(ValueError, match="cell") as error:
        parse_cells(specs)
    assert "\n" not in str(error.value)


def test_cells_that_all_answer_2xx_agree() -> None:
    assert isinstance(judge([_answer(A, 201), _answer(B, 201)]), Agreed)


def test_a_refusal_every_cell_gives_alike_is_relayed() -> None:
    verdict = judge([_answer(A, 422), _answer(B, 422)])
    assert isinstance(verdict, Relay)
    assert verdict.answer.cell == A


def test_a_dead_cell_is_named_in_a_502_not_hidden() -> None:
    verdict = judge([_answer(A, 201), Unreachable(B, "connection refused")])
    assert isinstance(verdict, Broken)
    assert verdict.cells == ["b"]
    assert "cell b (http://127.0.0.1:2): connection refused" in verdict.detail


def test_a_failing_cell_and_cells_that_disagree_are_502s_naming_the_odd_one() -> None:
    failed = judge([_answer(A, 200), _answer(B, 500)])
    assert isinstance(failed, Broken)
    assert failed.cells == ["b"]
    split = judge([_answer(A, 204), _answer(B, 404)])
    assert isinstance(split, Broken)
    assert split.cells == ["b"]
    assert "a 204, b 404" in split.detail


def _rule(rule_id: str, matched: int = 0, fired: int = 0) -> dict[str, Any]:
    return {"id": rule_id, "action": {"type": "quota"}, "matched": matched, "fired": fired}


def test_a_rule_gets_one_id_whatever_each_cell_calls_it_and_its_counters_add_up() -> None:
    ids = RuleIds()
    rule_id = ids.add({"a": "fault_3", "b": "fault_1"})
    merged = ids.merge({"a": [_rule("fault_3", 2, 1)], "b": [_rule("fault_1", 5, 4)]})
    assert merged == [{**_rule(rule_id, 7, 5)}]
    assert ids.lookup(rule_id) == {"a": "fault_3", "b": "fault_1"}


def test_rules_the_fan_out_did_not_add_are_adopted_once_and_forgotten_when_gone() -> None:
    ids = RuleIds()
    first = ids.merge({"a": [_rule("fault_1")], "b": [_rule("fault_1")]})
    assert [r["id"] for r in first] == ["fault_1"]
    assert ids.merge({"a": [_rule("fault_1")], "b": [_rule("fault_1")]}) == first
    assert ids.merge({"a": [], "b": []}) == []
    assert ids.lookup("fault_1") is None


def test_a_cleared_id_is_never_handed_out_again() -> None:
    ids = RuleIds()
    old = ids.add({"a": "fault_1"})
    ids.clear()
    assert ids.add({"a": "fault_1"}) != old


def _journal(seqs: list[int], at: float = 0.0) -> list[dict[str, Any]]:
    return [{"seq": s, "at": at + s} for s in seqs]


def _cell_page(entries: list[dict[str, Any]], since: int, limit: int) -> dict[str, Any]:
    """A cell's journal page, as mock_server/api/journal.py answers it."""
    after = [e for e in entries if e["seq"] > since]
    page = after[:limit]
    return {"entries": page, "next_since_seq": page[-1]["seq"] if len(after) > limit else None}


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 12), min_size=1, max_size=4),
    limit=st.integers(1, 7),
    mark=st.integers(0, 40),
)
def test_following_merged_pages_reads_every_entry_after_a_mark_once(sizes: list[int], limit: int, mark: int) -> None:
    cells = [_journal(list(range(1, n + 1)), at=i * 0.5) for i, n in enumerate(sizes)]
    count = len(cells)
    expected = sorted(merge.merged_seq(e["seq"], i, count) for i, c in enumerate(cells) for e in c)
    expected = [s for s in expected if s > mark]
    seen: list[int] = []
    since: int | None = mark
    while since is not None:
        pages = [_cell_page(c, merge.cell_since(since, i, count), limit) for i, c in enumerate(cells)]
        page = merge.journal_page(pages, limit)
        assert len(page["entries"]) <= limit
        assert [e["at"] for e in page["entries"]] == sorted(e["at"] for e in page["entries"])
        seen.extend(e["seq"] for e in page["entries"])
        since = page["next_since_seq"]
    assert sorted(seen) == expected


def test_leaks_are_merged_oldest_first_each_naming_its_cell() -> None:
    reports = [
        (A, {"leaks": [{"allocation_id": "x", "age_s": 5}]}),
        (B, {"leaks": [{"allocation_id": "y", "age_s": 9}]}),
    ]
    assert merge.leaks(reports) == {
        "leaks": [{"allocation_id": "y", "age_s": 9, "cell": "b"}, {"allocation_id": "x", "age_s": 5, "cell": "a"}]
    }


@pytest.mark.parametrize(
    "argv", [["fanout"], ["fanout", "--cell", "A=http://x"], ["fanout", "--cell", "a=http://x", "--timeout", "0"]]
)
def test_a_fan_out_without_good_cells_is_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOSTEDAI_CELLS", raising=False)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hostedai-mock fanout: error: ")
    assert len(err.splitlines()) == 1


def test_the_fan_out_takes_its_cells_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTEDAI_CELLS", "a=http://mock-a:8000, b=http://mock-b:8000")
    args = fanout.build_parser().parse_args([])
    assert fanout.resolve_cells(args) == [Cell("a", "http://mock-a:8000"), Cell("b", "http://mock-b:8000")]
