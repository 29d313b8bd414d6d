"""The drift trace's lines against their contract (`contracts/drift-trace.v1.schema.json`): what
`observations` reads and what the fault proxy's `--record` writes.

`hostedai-harness record` writes the same format (the packages share the schema, not code: see
ARCHITECTURE.md); `shape.py` here is a byte-for-byte twin of `harness/drift/shape.py`, pinned by a test.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import urlsplit

import jsonschema_rs

from mock_server.resources import TRACE_SCHEMA
from mock_server.version import __version__

FORMAT = "hostedai-drift-trace"
VERSION = 1


@functools.cache
def _validators() -> dict[str, Any]:
    """One validator per line kind, so an error names what is wrong rather than that a line matched
    neither a header nor a record."""
    schema = json.loads(TRACE_SCHEMA.read_text("utf-8"))
    return {
        kind: jsonschema_rs.validator_for({"$ref": f"#/$defs/{name}", "$defs": schema["$defs"]})
        for kind, name in (("header", "header"), ("request", "record"))
    }


def problem(line: Any) -> str | None:
    """Why a parsed line is not a valid header or record, or None when it is."""
    if not isinstance(line, dict) or line.get("kind") not in ("header", "request"):
        return "not a trace line (no `kind` of header or request)"
    error = next(iter(_validators()[line["kind"]].iter_errors(line)), None)
    if error is None:
        return None
    where = "/".join(str(part) for part in error.instance_path) or "the line"
    return f"{where}: {error.message[:200]}"


def proxy_header(upstream: str) -> dict[str, Any]:
    """A trace of traffic through the fault proxy: no probe script (drift cannot replay it)."""
    parts = urlsplit(upstream)
    host = parts.hostname or "unknown"
    return {
        "kind": "header",
        "format": FORMAT,
        "version": VERSION,
        "tool": f"hostedai-testkit {__version__} (hostedai-mock proxy)",
        "target": f"{host}:{parts.port}" if parts.port else host,
        "seed": 0,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "probe": None,
    }


def write_line(stream: IO[str], line: dict[str, Any]) -> None:
    """One line, validated first: an invalid record is the writer's bug, raised rather than written."""
    why = problem(line)
    if why is not None:
        raise ValueError(f"refusing to write an invalid trace line: {why}")
    stream.write(json.dumps(line, separators=(",", ":"), sort_keys=True) + "\n")
    stream.flush()
