"""The cells' answers as one: the journal, the leak report and the state of every cell, merged.

Each entry, leak, pool, GPU and allocation names its `cell`. A journal entry's `seq` becomes the cell's
`seq × N + the cell's index` (N cells): unique across cells, and it maps back to a `since_seq` for each
cell, so a mark taken on the merged journal reads only what followed in every cell, as on one mock.
"""

from __future__ import annotations

from typing import Any

from mock_server.cells.topology import Cell

JSON = dict[str, Any]


def cell_since(since_seq: int, index: int, count: int) -> int:
    """The `since_seq` to ask cell `index` of `count` for: its entries whose merged seq is above
    `since_seq` are exactly those whose own seq is above this."""
    return max(0, (since_seq - index) // count)


def merged_seq(seq: int, index: int, count: int) -> int:
    return seq * count + index


def journal_page(pages: list[JSON], limit: int) -> JSON:
    """One page of the merged journal from one page of each cell's (asked with `limit` and its
    `cell_since`; `pages[i]` from cell `i`), in the contract's shape.

    The page is the `limit` entries with the lowest merged seqs. That cut is safe: a cell that had more
    sent `limit` entries, so the cut falls at or before its last one, and what it did not send comes
    after the cut. The entries are then sorted by time (`at`), the cells' clocks being one clock when
    the fan-out moves them together."""
    count = len(pages)
    tagged: list[JSON] = []
    more = False
    for index, page in enumerate(pages):
        more = more or page.get("next_since_seq") is not None
        tagged.extend({**e, "seq": merged_seq(e["seq"], index, count), "_cell_index": index} for e in page["entries"])
    tagged.sort(key=lambda e: e["seq"])
    taken = tagged[:limit]
    more = more or len(tagged) > limit
    next_since = taken[-1]["seq"] if more and taken else None
    taken.sort(key=lambda e: (e["at"], e["_cell_index"], e["seq"]))
    for entry in taken:
        del entry["_cell_index"]
    return {"entries": taken, "next_since_seq": next_since}


def tag(items: list[JSON], cell: Cell) -> list[JSON]:
    return [{**item, "cell": cell.name} for item in items]


def leaks(reports: list[tuple[Cell, JSON]]) -> JSON:
    """Every cell's leaks, oldest first as on one mock (ties keep the cells' order)."""
    merged = [leak for cell, report in reports for leak in tag(report["leaks"], cell)]
    merged.sort(key=lambda leak: -float(leak["age_s"]))
    return {"leaks": merged}


def state(states: list[tuple[Cell, JSON]], rules: list[JSON], *, offset: int, limit: int) -> JSON:
    """The state of every cell as one: pools, GPUs and allocations tagged with their cell (allocations a
    page at a time, `c<offset>` cursors), the merged rules, and per cell its seed, clock and journal
    size. `seed` and `clock` at the top are the first cell's, for a client reading one mock's state."""
    allocations = [a for cell, s in states for a in tag(s["allocations"], cell)]
    page = allocations[offset : offset + limit]
    end = offset + len(page)
    first = states[0][1]
    return {
        "cell": None,
        "seed": first["seed"],
        "clock": first["clock"],
        "pools": [p for cell, s in states for p in tag(s["pools"], cell)],
        "gpus": [g for cell, s in states for g in tag(s["gpus"], cell)],
        "allocations": page,
        "next_cursor": f"c{end}" if end < len(allocations) else None,
        "rules": rules,
        "journal_entries": sum(int(s["journal_entries"]) for _, s in states),
        "cells": [
            {
                "cell": cell.name,
                "url": cell.url,
                "seed": s["seed"],
                "clock": s["clock"],
                "journal_entries": s["journal_entries"],
            }
            for cell, s in states
        ],
    }
