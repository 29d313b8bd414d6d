"""The cells a fan-out reaches: a name and a base URL each, from `NAME=URL` (or `URL`) arguments."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

# The mock's own rule for a cell's name (mock_server.config.CELL_NAME), so a fan-out names its cells as
# they name themselves.
from mock_server.config import CELL_NAME

_NAME = re.compile(CELL_NAME)


@dataclass(frozen=True, slots=True)
class Cell:
    name: str
    url: str
    """Base URL, without a trailing slash: `http://mock-a:8000`."""


def parse_cell(spec: str) -> Cell:
    """`NAME=URL`, or a bare `URL` (then the cell is named after its host and port, as in a log line).
    Raises ValueError with one line naming what is wrong."""
    name, sep, url = spec.partition("=")
    if not sep:
        name, url = "", spec
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"cell {spec!r}: the URL must be http(s)://HOST[:PORT]")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError(f"cell {spec!r}: give the mock's base URL, without a path")
    if not name:
        name = re.sub(r"[^a-z0-9]+", "-", parts.netloc.lower()).strip("-")[:32].strip("-")
    if not _NAME.match(name):
        raise ValueError(f"cell {spec!r}: a name is 1-32 lowercase letters, digits and inner hyphens")
    return Cell(name, url.rstrip("/"))


def parse_cells(specs: list[str]) -> list[Cell]:
    if not specs:
        raise ValueError("name at least one cell (--cell NAME=URL)")
    cells = [parse_cell(spec) for spec in specs]
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise ValueError(f"two cells share a name: {', '.join(sorted(n for n in set(names) if names.count(n) > 1))}")
    return cells
