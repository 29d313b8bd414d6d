"""What N cells answered to one call, judged: all agreed, all refused alike, or one broke.

A cell that cannot be reached, answers a 5xx, or answers otherwise than the others is named in a 502,
never hidden: a fault that reached one cell out of two is a test run that would mislead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mock_server.cells.topology import Cell


@dataclass(frozen=True, slots=True)
class Answer:
    """A cell's answer: its status, its JSON body (None when it sent none) and the headers worth relaying."""

    cell: Cell
    status: int
    body: Any
    raw: bytes
    content_type: str
    retry_after: str | None = None


@dataclass(frozen=True, slots=True)
class Unreachable:
    """No answer: the connection failed, timed out, or the body was not JSON."""

    cell: Cell
    reason: str


@dataclass(frozen=True, slots=True)
class Agreed:
    """Every cell answered 2xx."""

    answers: list[Answer]


@dataclass(frozen=True, slots=True)
class Relay:
    """Every cell refused alike (same 4xx): the first one's answer is the fan-out's (a bad request, a
    wrong token, an unknown scenario are the caller's mistake, not a cell's)."""

    answer: Answer


@dataclass(frozen=True, slots=True)
class Broken:
    """A 502: the cells named did not answer, failed, or disagreed with the others."""

    detail: str
    cells: list[str]


Verdict = Agreed | Relay | Broken


def _named(cell: Cell) -> str:
    return f"cell {cell.name} ({cell.url})"


def judge(answers: list[Answer | Unreachable]) -> Verdict:
    gone = [a for a in answers if isinstance(a, Unreachable)]
    if gone:
        return Broken("; ".join(f"{_named(a.cell)}: {a.reason}" for a in gone), [a.cell.name for a in gone])
    replies = [a for a in answers if isinstance(a, Answer)]
    failed = [a for a in replies if a.status >= 500]
    if failed:
        return Broken(
            "; ".join(f"{_named(a.cell)} answered {a.status}" for a in failed),
            [a.cell.name for a in failed],
        )
    if all(200 <= a.status < 300 for a in replies):
        return Agreed(replies)
    if len({a.status for a in replies}) == 1:
        return Relay(replies[0])
    statuses = ", ".join(f"{a.cell.name} {a.status}" for a in replies)
    odd = [a.cell.name for a in replies if a.status != replies[0].status]
    return Broken(f"the cells disagree ({statuses}): one was changed behind the fan-out's back", odd)
