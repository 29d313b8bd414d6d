"""Judging drift: the records of a live trace against those of the mock's replay of the same probe.

Pure functions of the two record lists and the thresholds; each aspect is a named check, as the suites'
are, so a drift report is read like any other harness report:

- *status*: for each probe step and operation, per pool × model cell, the statuses, problem codes and
  transport failures seen (a 429 is the target's load, not its behaviour: counted in a note, left out);
- *headers*: for each operation and status both answered, which of the headers that matter were present
  (`X-Request-Id`, `Location`, `Retry-After`, `Idempotent-Replayed`) and the content types;
- *shape*: for each operation and status both answered, the body's key paths and types;
- *GPU types*: the GPU type each pool reported;
- *timings*: for each inference step × GPU type × model, the server-reported TTFT and time per output
  token, by a two-sample KS test: drift when D is at least `max_ks`, its p-value is below `alpha`
  divided by the number of timing comparisons (Bonferroni: `alpha` is the false-alarm rate of the whole
  run, not of each comparison), *and* the p50 or the p99 moved by `min_shift` or more (the effect is
  large enough to matter, not only certain). Samples smaller than `min_samples` are skipped, never
  passed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.drift.stats import ks_2samp, percentile
from harness.suites.base import CheckResult

Record = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Thresholds:
    alpha: float = 0.01
    """The run's false-alarm rate over all timing comparisons."""
    max_ks: float = 0.5
    """The smallest KS distance counted as drift, whatever the p-value."""
    min_samples: int = 5
    """Per side: fewer timing samples than this cannot be judged."""
    min_shift: float = 0.15
    """The smallest relative change of p50 or p99 counted as drift: with a dozen samples a 1 % shift can
    be certain (KS D 1, p tiny) and still be of no consequence to anyone."""


TIMING_METRICS = ("ttft_ms", "tpot_ms")
_HEADER_FLAGS = ("request_id", "location", "retry_after", "idempotent_replayed")


def compare(live: Sequence[Record], mock: Sequence[Record], thresholds: Thresholds = Thresholds()) -> list[CheckResult]:
    checks = [*status_checks(live, mock), *header_checks(live, mock), *shape_checks(live, mock)]
    checks.append(gpu_type_check(live, mock))
    checks += timing_checks(live, mock, thresholds)
    return checks


def rate_limited(records: Iterable[Record]) -> int:
    return sum(1 for r in records if r["status"] == 429)


def _answered(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if r["status"] != 429]


def _outcome(record: Record) -> str:
    if record["status"] is None:
        return f"no answer ({record['transport_error'] or 'unknown'})"
    code = record["error_code"]
    return f"{record['status']} {code}" if code else str(record["status"])


def _cell(record: Record) -> str:
    parts = [p for p in (record["pool_id"], record["model"]) if p]
    return " × ".join(parts) if parts else "-"


def _tally(counter: Counter[str]) -> str:
    return ", ".join(f"{outcome} ×{count}" for outcome, count in sorted(counter.items())) or "nothing"


def status_checks(live: Sequence[Record], mock: Sequence[Record]) -> list[CheckResult]:
    """One check per (step, operation): every cell's outcomes must be the same multiset on both sides."""
    seen: dict[tuple[str, str], dict[str, tuple[Counter[str], Counter[str]]]] = defaultdict(dict)
    for side, records in ((0, live), (1, mock)):
        for r in _answered(records):
            cells = seen[(r["step"], r["operation"])]
            pair = cells.setdefault(_cell(r), (Counter(), Counter()))
            pair[side][_outcome(r)] += 1
    checks = []
    for (step, operation), cells in sorted(seen.items()):
        name = f"status: {step} {operation}"
        differ = [
            f"{cell}: live {_tally(pair[0])}; mock {_tally(pair[1])}"
            for cell, pair in sorted(cells.items())
            if pair[0] != pair[1]
        ]
        if differ:
            checks.append(CheckResult(name, "failed", message="\n".join(differ)))
        else:
            both = sum((pair[0] for pair in cells.values()), Counter[str]())
            checks.append(CheckResult(name, "passed", message=f"both: {_tally(both)}"))
    return checks


def _by_answer(records: Iterable[Record]) -> dict[tuple[str, int], list[Record]]:
    grouped: dict[tuple[str, int], list[Record]] = defaultdict(list)
    for r in _answered(records):
        if r["status"] is not None:
            grouped[(r["operation"], r["status"])].append(r)
    return grouped


def _present(records: Sequence[Record]) -> set[str]:
    present = {flag for r in records for flag in _HEADER_FLAGS if r["headers"][flag] not in (None, False)}
    present |= {f"Content-Type {r['headers']['content_type']}" for r in records if r["headers"]["content_type"]}
    return present


def header_checks(live: Sequence[Record], mock: Sequence[Record]) -> list[CheckResult]:
    """Per operation and status seen on both sides: a header one sends and the other never does."""
    ours, theirs = _by_answer(live), _by_answer(mock)
    checks = []
    for key in sorted(ours.keys() & theirs.keys()):
        name = f"headers: {key[0]} {key[1]}"
        a, b = _present(ours[key]), _present(theirs[key])
        if a == b:
            checks.append(CheckResult(name, "passed", message=", ".join(sorted(a)) or "none of note"))
            continue
        lines = []
        if a - b:
            lines.append(f"only live sent: {', '.join(sorted(a - b))}")
        if b - a:
            lines.append(f"only the mock sent: {', '.join(sorted(b - a))}")
        checks.append(CheckResult(name, "failed", message="\n".join(lines)))
    return checks


def shape_checks(live: Sequence[Record], mock: Sequence[Record]) -> list[CheckResult]:
    """Per operation and status seen on both sides: key paths (with types) one body has and the other
    never had."""
    ours, theirs = _by_answer(live), _by_answer(mock)
    checks = []
    for key in sorted(ours.keys() & theirs.keys()):
        name = f"shape: {key[0]} {key[1]}"
        a = {path for r in ours[key] for path in r["shape"] or ()}
        b = {path for r in theirs[key] for path in r["shape"] or ()}
        if a == b:
            checks.append(CheckResult(name, "passed", message=f"{len(a)} key paths alike"))
            continue
        lines = []
        if a - b:
            lines.append(f"only live: {', '.join(sorted(a - b)[:20])}")
        if b - a:
            lines.append(f"only the mock: {', '.join(sorted(b - a)[:20])}")
        checks.append(CheckResult(name, "failed", message="\n".join(lines)))
    return checks


def _gpu_types(records: Iterable[Record]) -> dict[str, str]:
    return {r["pool_id"]: r["gpu_type"] for r in records if r["pool_id"] and r["gpu_type"]}


def gpu_type_check(live: Sequence[Record], mock: Sequence[Record]) -> CheckResult:
    a, b = _gpu_types(live), _gpu_types(mock)
    differ = [
        f"{pool}: live {a.get(pool, 'not seen')}, mock {b.get(pool, 'not seen')}"
        for pool in sorted(a.keys() | b.keys())
        if a.get(pool) != b.get(pool)
    ]
    if differ:
        return CheckResult("GPU type of each pool", "failed", message="\n".join(differ))
    return CheckResult("GPU type of each pool", "passed", message=", ".join(f"{p} {t}" for p, t in sorted(a.items())))


def timing_samples(records: Iterable[Record]) -> dict[tuple[str, str, str, str], list[float]]:
    """(step, GPU type, model, metric) → values: the server-reported TTFT, and time per output token
    (reported, else (total − TTFT) / (completion tokens − 1))."""
    samples: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    for r in records:
        reported = r["timings"].get("reported")
        if r["operation"] != "createInference" or r["status"] != 200 or not reported:
            continue
        key = (r["step"], r["gpu_type"] or "-", r["model"] or "-")
        if "ttft_ms" in reported:
            samples[(*key, "ttft_ms")].append(reported["ttft_ms"])
        tpot = reported.get("tpot_ms")
        tokens = r["timings"].get("completion_tokens")
        if tpot is None and tokens and tokens > 1 and "total_ms" in reported and "ttft_ms" in reported:
            tpot = (reported["total_ms"] - reported["ttft_ms"]) / (tokens - 1)
        if tpot is not None:
            samples[(*key, "tpot_ms")].append(tpot)
    return samples


def timing_checks(live: Sequence[Record], mock: Sequence[Record], thresholds: Thresholds) -> list[CheckResult]:
    ours, theirs = timing_samples(live), timing_samples(mock)
    keys = sorted(ours.keys() | theirs.keys())
    judged = [
        k
        for k in keys
        if len(ours.get(k, ())) >= thresholds.min_samples and len(theirs.get(k, ())) >= thresholds.min_samples
    ]
    per_test_alpha = thresholds.alpha / max(1, len(judged))
    checks = []
    for key in keys:
        step, gpu, model, metric = key
        name = f"timing: {step} {metric} on {gpu} × {model}"
        a, b = ours.get(key, []), theirs.get(key, [])
        if key not in judged:
            checks.append(
                CheckResult(
                    name,
                    "skipped",
                    message=f"too few samples to judge (live {len(a)}, mock {len(b)}; "
                    f"at least {thresholds.min_samples} each)",
                )
            )
            continue
        ks = ks_2samp(a, b)
        shift = max(abs(relative_shift(a, b, 50)), abs(relative_shift(a, b, 99)))
        summary = (
            f"KS D {ks.statistic:.3f}, p {ks.pvalue:.2g}; "
            f"p50 live {percentile(a, 50):.4g} mock {percentile(b, 50):.4g} ({relative_shift(a, b, 50):+.1%}), "
            f"p99 live {percentile(a, 99):.4g} mock {percentile(b, 99):.4g} ({relative_shift(a, b, 99):+.1%}); "
            f"n {ks.n}/{ks.m} (drift: D ≥ {thresholds.max_ks:g}, p < {per_test_alpha:.2g} and a shift ≥ "
            f"{thresholds.min_shift:.0%})"
        )
        drifted = ks.statistic >= thresholds.max_ks and ks.pvalue < per_test_alpha and shift >= thresholds.min_shift
        checks.append(CheckResult(name, "failed" if drifted else "passed", message=summary))
    return checks


def relative_shift(a: list[float], b: list[float], q: float) -> float:
    """The mock's q-th percentile against live's, as a signed fraction of live's."""
    ours, theirs = percentile(a, q), percentile(b, q)
    if ours == 0:
        return 0.0 if theirs == 0 else float("inf")
    return (theirs - ours) / ours
