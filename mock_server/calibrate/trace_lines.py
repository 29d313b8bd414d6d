"""The drift trace's lines: JSON objects, a header then one record per request, each checked against
the packaged JSON Schema (`contracts/drift-trace.v1.schema.json`) when written and when read.

TWIN FILE: `harness/drift/trace_lines.py` and `mock_server/calibrate/trace_lines.py` are the same file
byte for byte (`tests/server/test_fault_proxy.py` pins it): `hostedai-harness record`/`drift` and the
mock's fault proxy and `calibrate` read and write one format, and the two packages may not import each
other. Each passes its own packaged copy of the schema.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema_rs

FORMAT = "hostedai-drift-trace"
VERSION = 1


class BadTrace(ValueError):
    """A file that is not a usable trace; the message says why, without naming the file."""

    def __init__(self, message: str, *, other_version: bool = False) -> None:
        super().__init__(message)
        self.other_version = other_version
        """The file is a trace, of a format version this code does not read."""


@functools.cache
def _validators(schema_path: Path) -> dict[str, Any]:
    """One validator per line kind, so an error names what is wrong with a header or a record rather
    than that a line matched neither."""
    schema = json.loads(schema_path.read_text("utf-8"))
    return {
        kind: jsonschema_rs.validator_for({"$ref": f"#/$defs/{name}", "$defs": schema["$defs"]})
        for kind, name in (("header", "header"), ("request", "record"))
    }


def problem(line: Any, schema_path: Path) -> str | None:
    """Why a parsed line is not a valid header or record, or None when it is."""
    if not isinstance(line, dict) or line.get("kind") not in ("header", "request"):
        return "not a trace line (no `kind` of header or request)"
    error = next(iter(_validators(schema_path)[line["kind"]].iter_errors(line)), None)
    if error is None:
        return None
    where = "/".join(str(part) for part in error.instance_path) or "the line"
    return f"{where}: {error.message[:200]}"


def encode(line: dict[str, Any], schema_path: Path) -> str:
    """One line of a trace, validated first: an invalid line is the writer's bug, raised (ValueError)
    rather than written for a reader to trip over later."""
    why = problem(line, schema_path)
    if why is not None:
        raise ValueError(f"refusing to write an invalid trace line: {why}")
    return json.dumps(line, separators=(",", ":"), sort_keys=True) + "\n"


def read_lines(
    path: str | Path, schema_path: Path, on_header: Callable[[dict[str, Any]], None] | None = None
) -> list[dict[str, Any]]:
    """Every line of a trace file, each checked; `BadTrace` for anything else. `on_header` sees the valid
    header before the records are checked (a reader may refuse a kind of trace there)."""
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise BadTrace(f"cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise BadTrace("not a trace (not UTF-8 text)") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise BadTrace("empty, not a trace")
    parsed: list[Any] = []
    for number, line in enumerate(lines, 1):
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise BadTrace(f"line {number} is not JSON") from None
    header = parsed[0]
    if not isinstance(header, dict) or header.get("kind") != "header" or header.get("format") != FORMAT:
        raise BadTrace(f"not a {FORMAT} file (its first line is not a trace header)")
    if header.get("version") != VERSION:
        raise BadTrace(
            f"format version {header.get('version')!r}, this tool reads version {VERSION}", other_version=True
        )
    for number, line in enumerate(parsed, 1):
        why = problem(line, schema_path)
        if why is None and number == 1 and on_header is not None:
            on_header(line)
        if why is None and number > 1 and line["kind"] != "request":
            why = "a second header"
        if why is not None:
            raise BadTrace(f"line {number}: {why}")
    return parsed
