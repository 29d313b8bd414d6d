"""The trace format: JSON lines, a header then one record per request, each checked against the
packaged JSON Schema (`contracts/drift-trace.v1.schema.json`) when written and when read.

A trace is what `hostedai-harness record` leaves and `drift` and `hostedai-mock calibrate` read, possibly
on another machine, months later, with another version of the kit: so it says its format version, and a
trace of another version, or one that is not a trace, is refused in one line (`TraceError`) rather than
half understood. Nothing secret goes in: the target is its host only, bodies are reduced to their shape.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import jsonschema_rs

from harness.resources import TRACE_SCHEMA

FORMAT = "hostedai-drift-trace"
VERSION = 1


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


@functools.cache
def _validators() -> dict[str, Any]:
    """One validator per line kind, so an error names what is wrong with a header or a record rather
    than that a line matched neither."""
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


class TraceWriter:
    """Writes a header, then records, each validated first: a record the schema refuses is a bug of the
    recorder, raised at once rather than written for `drift` to trip over later."""

    def __init__(self, stream: IO[str], header: Mapping[str, Any]) -> None:
        self._stream = stream
        self._write(dict(header))

    def _write(self, line: dict[str, Any]) -> None:
        why = problem(line)
        if why is not None:
            raise ValueError(f"refusing to write an invalid trace line: {why}")
        self._stream.write(json.dumps(line, separators=(",", ":"), sort_keys=True) + "\n")

    def write(self, record: Mapping[str, Any]) -> None:
        self._write(dict(record))

    def write_all(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            self.write(record)


def read_trace(path: str | Path) -> Trace:
    """A whole trace, checked line by line; `TraceError` (one line) for anything else."""
    name = str(path)
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise TraceError(f"--trace {name}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise TraceError(f"--trace {name}: not a trace (not UTF-8 text)") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise TraceError(f"--trace {name}: empty, not a trace")
    parsed: list[Any] = []
    for number, line in enumerate(lines, 1):
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise TraceError(f"--trace {name}: line {number} is not JSON") from None
    header = parsed[0]
    if not isinstance(header, dict) or header.get("kind") != "header" or header.get("format") != FORMAT:
        raise TraceError(f"--trace {name}: not a {FORMAT} file (its first line is not a trace header)")
    if header.get("version") != VERSION:
        raise TraceError(
            f"--trace {name}: format version {header.get('version')!r}, this tool reads version {VERSION} "
            f"(record it again with this version: hostedai-harness record)"
        )
    for number, line in enumerate(parsed, 1):
        why = problem(line)
        if why is None and number == 1 and line["probe"] is None:
            raise TraceError(
                f"--trace {name}: recorded by the fault proxy, so there is no probe script to replay; "
                "record one with hostedai-harness record (a proxy's trace is for hostedai-mock calibrate)"
            )
        if why is None and number > 1 and line["kind"] != "request":
            why = "a second header"
        if why is not None:
            raise TraceError(f"--trace {name}: line {number}: {why}")
    return Trace(header=header, records=parsed[1:])
