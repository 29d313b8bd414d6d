"""One fault id for a rule that lives in every cell.

Each cell numbers its own rules (`fault_<n>`), so the same rule may carry different ids in different
cells (a rule added to one cell directly shifts its counter). The fan-out hands out ids of its own and
keeps, for each, the rule's id in every cell that holds it: `DELETE /_admin/faults/{id}` then removes
the right rule everywhere. Rules it did not add (the config's, `--scenario` flags') are adopted the
first time they are listed, grouped by their id in the cells (identical configs number them alike).
"""

from __future__ import annotations

from typing import Any

CellRules = dict[str, list[dict[str, Any]]]
"""Each cell's rules, as its `/_admin/faults` lists them, by cell name."""


class RuleIds:
    def __init__(self) -> None:
        self._next = 0
        self._cells: dict[str, dict[str, str]] = {}
        """fan-out id -> {cell name: that cell's rule id}, in the order the ids were handed out."""

    def add(self, per_cell: dict[str, str]) -> str:
        self._next += 1
        rule_id = f"fault_{self._next}"
        self._cells[rule_id] = dict(per_cell)
        return rule_id

    def lookup(self, rule_id: str) -> dict[str, str] | None:
        found = self._cells.get(rule_id)
        return None if found is None else dict(found)

    def forget(self, rule_id: str) -> None:
        self._cells.pop(rule_id, None)

    def clear(self) -> None:
        """After a reset or a clear: the cells' rules are gone or renumbered. Ids keep counting, so an
        old id never names a new rule."""
        self._cells.clear()

    def merge(self, rules: CellRules) -> list[dict[str, Any]]:
        """The cells' rules as one list with fan-out ids, the rule as the first cell holding it describes
        it and `matched` / `fired` summed over the cells. Adopts the rules it did not know; forgets the
        ids whose rule no cell holds any more."""
        by_id = {cell: {r["id"]: r for r in listed} for cell, listed in rules.items()}
        mapped = {(cell, cell_id) for ids in self._cells.values() for cell, cell_id in ids.items()}
        adopt: dict[str, dict[str, str]] = {}
        for cell, listed in rules.items():
            for rule in listed:
                if (cell, rule["id"]) not in mapped:
                    adopt.setdefault(rule["id"], {})[cell] = rule["id"]
        for ids in adopt.values():
            self.add(ids)
        # Listed in the order the cells match them (a rule's place in the first cell that holds it).
        place = {(cell, r["id"]): index for cell, listed in rules.items() for index, r in enumerate(listed)}
        merged: list[tuple[int, dict[str, Any]]] = []
        for rule_id, ids in list(self._cells.items()):
            held = [(cell, cell_id) for cell, cell_id in ids.items() if cell_id in by_id.get(cell, {})]
            if not held:
                self.forget(rule_id)
                continue
            merged.append((place[held[0]], combine(rule_id, [by_id[cell][cell_id] for cell, cell_id in held])))
        return [rule for _, rule in sorted(merged, key=lambda item: item[0])]


def combine(rule_id: str, members: list[dict[str, Any]]) -> dict[str, Any]:
    """One rule from its copies in several cells: counters add up, the rest is the first copy's."""
    return {
        **members[0],
        "id": rule_id,
        "matched": sum(int(m.get("matched", 0)) for m in members),
        "fired": sum(int(m.get("fired", 0)) for m in members),
    }
