"""A response body reduced to its shape: the sorted JSON key paths with their JSON types.

What drift compares of a body, and all a trace keeps of one: field names and types say whether the
target answers in the shape the mock does, and carry no prompt, output, id or key. Array items are
merged under `[]` (a list of three pools has the shape of a list of one); the keys of a `labels` map are
the client's own, so they are left out.
"""

from __future__ import annotations

from typing import Any

_FREE_FORM = frozenset({"labels"})
"""Objects whose keys are data, not schema."""


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        # 2.0 and 2 are one number in JSON; a server that writes 2.0 is not drifting from one writing 2.
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def shape(body: Any) -> list[str]:
    """`["a:object", "a.b:integer", "items:array", "items[].id:string", ...]`, sorted, each path once."""
    found: set[str] = set()
    _walk(body, "", found)
    return sorted(found)


def _walk(value: Any, path: str, found: set[str]) -> None:
    kind = json_type(value)
    if kind == "integer":
        kind = "number"  # see json_type: 2 and 2.0 are the same JSON number
    if path:
        found.add(f"{path}:{kind}")
    if isinstance(value, dict):
        if path.rsplit(".", 1)[-1] in _FREE_FORM:
            return
        for key, item in value.items():
            _walk(item, f"{path}.{key}" if path else str(key), found)
    elif isinstance(value, list):
        for item in value:
            _walk(item, f"{path}[]", found)
