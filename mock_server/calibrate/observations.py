"""A drift trace read for calibration: the server-reported timings of every inference that succeeded,
by GPU type and model, in the order they were sent.

The trace's format is a contract (`contracts/drift-trace.v1.schema.json`, written by `hostedai-harness
record`): every line is checked against it, and a file that is not a trace of version 1 is refused in
one line (`TraceError`), never half read.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mock_server.calibrate.tracefile import FORMAT, VERSION, problem


class TraceError(Exception):
    """A trace that cannot be used (one line, for the CLI's exit 2)."""


@dataclass(frozen=True, slots=True)
class Observation:
    t: float
    """Seconds since the recording started: held-out traffic is the latest."""
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float
    tpot_ms: float


@dataclass(frozen=True, slots=True)
class Trace:
    header: dict[str, Any]
    cells: dict[tuple[str, str], list[Observation]]
    """(GPU type, model) → observations, oldest first."""


def observation(record: dict[str, Any]) -> Observation | None:
    """An inference's timings as the server reported them; None for anything else, or an inference
    too short to have a time per output token."""
    timings = record["timings"]
    reported = timings.get("reported") or {}
    tokens = timings.get("completion_tokens")
    if record["operation"] != "createInference" or record["status"] != 200 or not record["gpu_type"]:
        return None
    if "ttft_ms" not in reported or not tokens or tokens < 2 or timings.get("prompt_tokens") is None:
        return None
    tpot = reported.get("tpot_ms")
    if tpot is None and "total_ms" in reported:
        tpot = (reported["total_ms"] - reported["ttft_ms"]) / (tokens - 1)
    if tpot is None:
        return None
    return Observation(record["t"], timings["prompt_tokens"], tokens, reported["ttft_ms"], tpot)


def read(path: str | Path) -> Trace:
    name = str(path)
    try:
        lines = [line for line in Path(path).read_text("utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise TraceError(f"{name}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise TraceError(f"{name}: not a trace (not UTF-8 text)") from None
    parsed: list[Any] = []
    for number, line in enumerate(lines, 1):
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise TraceError(f"{name}: line {number} is not JSON") from None
    header = parsed[0] if parsed else None
    if not isinstance(header, dict) or header.get("kind") != "header" or header.get("format") != FORMAT:
        raise TraceError(f"{name}: not a {FORMAT} file (its first line is not a trace header)")
    if header.get("version") != VERSION:
        raise TraceError(f"{name}: format version {header.get('version')!r}, this tool reads version {VERSION}")
    cells: dict[tuple[str, str], list[Observation]] = defaultdict(list)
    for number, line in enumerate(parsed, 1):
        why = problem(line)
        if why is None and number > 1 and line["kind"] != "request":
            why = "a second header"
        if why is not None:
            raise TraceError(f"{name}: line {number}: {why}")
        seen = observation(line) if number > 1 else None
        if seen is not None:
            cells[(line["gpu_type"], line["model"])].append(seen)
    return Trace(header, {cell: sorted(found, key=lambda o: o.t) for cell, found in cells.items()})
