"""What the fault proxy's `--record` writes: its trace header, and lines checked against the contract
(`contracts/drift-trace.v1.schema.json`) by `trace_lines`.

`hostedai-harness record` writes the same format. The packages may not import each other (see
ARCHITECTURE.md), so `trace_lines.py` and `shape.py` here are byte-for-byte twins of those in
`harness/drift/`, pinned by a test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import urlsplit

from mock_server.calibrate.trace_lines import FORMAT, VERSION, encode
from mock_server.resources import TRACE_SCHEMA
from mock_server.version import __version__


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
    stream.write(encode(line, TRACE_SCHEMA))
    stream.flush()
