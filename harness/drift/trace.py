"""The trace format: JSON lines, a header then one record per request, each checked against the
packaged JSON Schema (`contracts/drift-trace.v1.schema.json`) when written and when read.

A trace is what `hostedai-harness record` leaves and `drift` and `hostedai-mock calibrate` read, possibly
on another machine, months later, with another version of the kit: so it says its format version, and a
trace of another version, or one that is not a trace, is refused in one line (`TraceError`) rather than
half understood. Nothing secret goes in: the target is its host only, bodies are reduced to their shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from harness.drift import trace_lines
from harness.drift.trace_lines import FORMAT, VERSION, BadTrace, encode, read_lines
from harness.resources import TRACE_SCHEMA


class TraceError(Exception):
    """A trace that cannot be used (one line, for the CLI's exit 2)."""


@dataclass(frozen=True, slots=True)
class Trace:
    header: dict[str, Any]
    records: list[dict[str, Any]]


def tool_version() -> str:
    try:
        return f"hostedai-testkit {metadata.version('hostedai-testkit')}"
    except metadata.PackageNotFoundError:
        return "hostedai-testkit (not installed)"


def target_host(url: str) -> str:
    """The host (and port) of a URL: what a trace may say about where it was recorded."""
    parts = urlsplit(url)
    host = parts.hostname or "unknown"
    return f"{host}:{parts.port}" if parts.port else host


def make_header(*, target_url: str, seed: int, probe: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "kind": "header",
        "format": FORMAT,
        "version": VERSION,
        "tool": tool_version(),
        "target": target_host(target_url),
        "seed": seed,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "probe": dict(probe),
    }


class TraceWriter:
    """Writes a header, then records, each validated first: a record the schema refuses is a bug of the
    recorder, raised at once rather than written for `drift` to trip over later."""

    def __init__(self, stream: IO[str], header: Mapping[str, Any]) -> None:
        self._stream = stream
        self._write(dict(header))

    def _write(self, line: dict[str, Any]) -> None:
        self._stream.write(encode(line, TRACE_SCHEMA))

    def write(self, record: Mapping[str, Any]) -> None:
        self._write(dict(record))

    def write_all(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            self.write(record)


def problem(line: Any) -> str | None:
    """Why a parsed line is not a valid header or record, or None when it is."""
    return trace_lines.problem(line, TRACE_SCHEMA)


def read_trace(path: str | Path) -> Trace:
    """A whole trace, checked line by line; `TraceError` (one line) for anything else."""
    name = str(path)

    def replayable(header: dict[str, Any]) -> None:
        if header["probe"] is None:
            raise TraceError(
                f"--trace {name}: recorded by the fault proxy, so there is no probe script to replay; "
                "record one with hostedai-harness record (a proxy's trace is for hostedai-mock calibrate)"
            )

    try:
        lines = read_lines(path, TRACE_SCHEMA, on_header=replayable)
    except BadTrace as exc:
        hint = " (record it again with this version: hostedai-harness record)" if exc.other_version else ""
        raise TraceError(f"--trace {name}: {exc}{hint}") from None
    return Trace(header=lines[0], records=lines[1:])
