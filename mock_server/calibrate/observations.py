"""A drift trace read for calibration: the server-reported timings of every inference that succeeded,
by GPU type and model, in the order they were sent.

The trace's format is a contract (`contracts/drift-trace.v1.schema.json`, written by `hostedai-harness
record`): every line is checked against it, and a file that is not a trace of version 1 is refused in
one line (`TraceError`), never half read.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mock_server.calibrate.trace_lines import BadTrace, read_lines
from mock_server.resources import TRACE_SCHEMA


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
    try:
        parsed = read_lines(path, TRACE_SCHEMA)
    except BadTrace as exc:
        raise TraceError(f"{path}: {exc}") from None
    header = parsed[0]
    cells: dict[tuple[str, str], list[Observation]] = defaultdict(list)
    for line in parsed[1:]:
        seen = observation(line)
        if seen is not None:
            cells[(line["gpu_type"], line["model"])].append(seen)
    return Trace(header, {cell: sorted(found, key=lambda o: o.t) for cell, found in cells.items()})
