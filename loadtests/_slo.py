"""SLO gates: a YAML file of latency, error-rate and throughput limits, checked against a run's stats.

The file (loadtests/slo.yaml is the default; docs/load.md explains every key)::

    users:                      # gates per user class, applied when that class ran
      HostedAiUser:
        POST /v1/allocate: {p50_ms: 250, p95_ms: 1000, p99_ms: 2500, max_error_rate: 0.01}
        SIM ttft_ms: {p95_ms: 1000}
    total: {max_error_rate: 0.01, min_rps: 0.5}   # every wire request (SIM rows excluded)

A row is named as locust's stats table names it, `<type> <name>`. Percentiles are locust's own (whole
milliseconds below 100 ms, two significant digits above), so a gate reads exactly like the table. A
gate on a row without requests is skipped, not passed: nothing was measured (a short run may make no
streamed inference); `total` gates and the error-rate gates of the rows that ran still judge the run.

Pure: the locust side (loadtests/_runtime.py) turns its stats into `RowStats`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TOTAL = "total"
"""The row of every wire request together (locust's `Aggregated` without the SIM rows)."""

LATENCY = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}
METRICS = (*LATENCY, "max_error_rate", "min_rps")


class SloError(Exception):
    """The SLO file cannot be used (one line, naming the file and the key)."""


@dataclass(frozen=True, slots=True)
class Gate:
    row: str
    metric: str
    limit: float

    @property
    def label(self) -> str:
        """`POST /v1/allocate p95 ≤ 1000 ms`: stable across runs, so reports can track it."""
        if self.metric in LATENCY:
            return f"{self.row} {self.metric.removesuffix('_ms')} ≤ {_number(self.limit)} ms"
        if self.metric == "max_error_rate":
            return f"{self.row} error rate ≤ {_percent(self.limit)}"
        return f"{self.row} ≥ {_number(self.limit)} req/s"


@dataclass(frozen=True, slots=True)
class Slo:
    path: Path
    users: Mapping[str, tuple[Gate, ...]]
    total: tuple[Gate, ...]

    def gates(self, user_classes: Iterable[str]) -> list[Gate]:
        """The gates of the user classes that ran (in file order), then the total's."""
        ran = set(user_classes)
        gates = [gate for name, gates in self.users.items() if name in ran for gate in gates]
        return list(dict.fromkeys([*gates, *self.total]))


@dataclass(frozen=True, slots=True)
class RowStats:
    requests: int
    failures: int
    rps: float
    percentiles: Mapping[float, float]
    """Fraction (0.5, 0.95, 0.99) → milliseconds."""


@dataclass(frozen=True, slots=True)
class GateResult:
    gate: Gate
    actual: float | None
    """None: the row had no requests, and the gate is skipped."""
    passed: bool | None
    requests: int

    @property
    def outcome(self) -> str:
        return "SKIP" if self.passed is None else "PASS" if self.passed else "FAIL"

    def as_json(self) -> dict[str, Any]:
        return {
            "row": self.gate.row,
            "metric": self.gate.metric,
            "limit": self.gate.limit,
            "label": self.gate.label,
            "actual": self.actual,
            "requests": self.requests,
            "passed": self.passed,
        }


def load_slo(path: str | Path) -> Slo:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except OSError as exc:
        raise SloError(f"cannot read the SLO file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SloError(f"{path} is not YAML: {str(exc).splitlines()[0]}") from None
    return parse_slo(data, path)


def parse_slo(data: Any, path: Path) -> Slo:
    if not isinstance(data, dict) or set(data) - {"users", "total"} or not data:
        raise SloError(f"{path}: expected a mapping with `users` and/or `total`")
    users: dict[str, tuple[Gate, ...]] = {}
    for user, rows in (data.get("users") or {}).items():
        if not isinstance(rows, dict) or not rows:
            raise SloError(f"{path}: users.{user} must map request rows to gates")
        users[str(user)] = tuple(
            gate for row, limits in rows.items() for gate in _gates(str(row), limits, f"{path}: users.{user}.{row}")
        )
    total = _gates(TOTAL, data.get("total") or {}, f"{path}: total") if "total" in data else ()
    if not users and not total:
        raise SloError(f"{path}: no gates")
    return Slo(path, users, tuple(total))


def _gates(row: str, limits: Any, where: str) -> tuple[Gate, ...]:
    if not isinstance(limits, dict) or not limits:
        raise SloError(f"{where}: expected a mapping of {', '.join(METRICS)}")
    gates = []
    for metric, limit in limits.items():
        if metric not in METRICS:
            raise SloError(f"{where}.{metric}: unknown gate (use {', '.join(METRICS)})")
        if isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 0:
            raise SloError(f"{where}.{metric}: {limit!r} is not a number ≥ 0")
        if metric == "max_error_rate" and limit > 1:
            raise SloError(f"{where}.{metric}: {limit} is a fraction, 0 to 1")
        gates.append(Gate(row, metric, float(limit)))
    return tuple(gates)


def evaluate(gates: Iterable[Gate], rows: Mapping[str, RowStats]) -> list[GateResult]:
    results = []
    for gate in gates:
        stats = rows.get(gate.row)
        if stats is None or stats.requests == 0:
            results.append(GateResult(gate, None, None, 0))
            continue
        if gate.metric in LATENCY:
            actual = stats.percentiles[LATENCY[gate.metric]]
            passed = actual <= gate.limit
        elif gate.metric == "max_error_rate":
            actual = stats.failures / stats.requests
            passed = actual <= gate.limit
        else:
            actual = stats.rps
            passed = actual >= gate.limit
        results.append(GateResult(gate, actual, passed, stats.requests))
    return results


def render_table(results: list[GateResult], source: Path) -> str:
    rows = [("request", "gate", "limit", "actual", "requests", "result")]
    for r in results:
        rows.append(
            (
                r.gate.row,
                r.gate.metric,
                _value(r.gate.metric, r.gate.limit),
                "no requests" if r.actual is None else _value(r.gate.metric, r.actual),
                str(r.requests),
                r.outcome,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    failed = sum(r.passed is False for r in results)
    skipped = sum(r.passed is None for r in results)
    counts = f"{failed} of {len(results)} gates" if failed else f"{len(results)} gates"
    if skipped:
        counts += f", {skipped} skipped: no requests"
    return "\n".join([f"SLO gates ({source})", *lines, f"SLO {'FAILED' if failed else 'PASSED'} ({counts})"])


def report(
    results: list[GateResult], source: Path, total: RowStats, exceptions: int, rate_limited: int = 0
) -> dict[str, Any]:
    """What `--slo-report` writes: the verdict, the wire requests, each gate, and the tasks' unhandled
    exceptions (any fails the run)."""
    return {
        "slo_file": str(source),
        "ok": all(r.passed is not False for r in results) and exceptions == 0,
        "requests": {"count": total.requests, "failures": total.failures, "rps": round(total.rps, 3)},
        "rate_limited": rate_limited,
        "exceptions": exceptions,
        "gates": [r.as_json() for r in results],
    }


def write_report(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", "utf-8")


def _value(metric: str, value: float) -> str:
    if metric in LATENCY:
        return f"{_number(value)} ms"
    if metric == "max_error_rate":
        return _percent(value)
    return f"{value:.2f}/s"


def _number(value: float) -> str:
    return f"{value:g}"


def _percent(value: float) -> str:
    return f"{value * 100:.2f} %"
