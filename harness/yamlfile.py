"""Reading the harness's YAML files, with the one-line errors every config of the kit gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


def read_yaml(path: str | Path, error: type[Exception], what: str = "config file") -> Any:
    """The parsed file; an unreadable file or bad YAML raises `error` with one line naming the file."""
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise error(f"{path}: not valid YAML") from None


def first_problem(error: ValidationError, prefix: str = "") -> str:
    """`prefix.key.path: message` for the first problem pydantic found."""
    first = error.errors()[0]
    where = ".".join(part for part in (prefix, *(str(p) for p in first["loc"])) if part)
    return f"{where}: {first['msg']}" if where else str(first["msg"])
