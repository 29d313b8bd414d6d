"""The exception tree drawn in `harness/connector/errors.py`'s docstring is the tree of the classes."""

from __future__ import annotations

import re

from harness.connector import errors

_NODE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z][A-Za-z]+)\b")


def _drawn() -> dict[str, str | None]:
    """class name -> the parent the docstring draws it under (None for the root)."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        match = _NODE.match(line.strip("\n")[4:] if line.startswith("    ") else "")
        if match is None:
            continue
        depth = len(match.group("indent"))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[match.group("name")] = stack[-1][1] if stack else None
        stack.append((depth, match.group("name")))
    return parents


def _actual() -> dict[str, str | None]:
    found: dict[str, str | None] = {errors.HostedAiError.__name__: None}
    pending = [errors.HostedAiError]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub.__module__ == errors.__name__:
                found[sub.__name__] = cls.__name__
                pending.append(sub)
    return found


def test_the_docstring_draws_the_class_tree() -> None:
    assert _drawn() == _actual()
