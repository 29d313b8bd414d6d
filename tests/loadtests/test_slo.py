"""SLO files: parsed strictly (one line naming the key), gates judged against a run's rows both ways."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests._slo import TOTAL, Gate, RowStats, SloError, evaluate, load_slo, parse_slo, render_table, report

from .conftest import LAX_SLO, LOADTESTS

HERE = Path("slo.yaml")


def _row(
    requests: int = 100, failures: int = 0, rps: float = 10.0, p50: float = 5, p95: float = 20, p99: float = 40
) -> RowStats:
    return RowStats(requests, failures, rps, {0.5: p50, 0.95: p95, 0.99: p99})


@pytest.mark.parametrize("path", [LOADTESTS / "slo.yaml", LAX_SLO])
def test_the_shipped_slo_files_load_and_gate_both_user_classes(path: Path) -> None:
    slo = load_slo(path)
    assert slo.gates(["HostedAiUser"])
    assert slo.gates(["HarpoonUser"])
    assert slo.total


def test_gates_apply_to_the_user_classes_that_ran_then_the_total() -> None:
    slo = parse_slo(
        {
            "users": {
                "HostedAiUser": {"POST /v1/allocate": {"p95_ms": 100}, "SIM ttft_ms": {"p50_ms": 50}},
                "HarpoonUser": {"POST /v2/process (simple)": {"max_error_rate": 0.01}, "SIM ttft_ms": {"p50_ms": 50}},
            },
            "total": {"min_rps": 1},
        },
        HERE,
    )
    assert [g.row for g in slo.gates(["HostedAiUser"])] == ["POST /v1/allocate", "SIM ttft_ms", TOTAL]
    both = slo.gates(["HostedAiUser", "HarpoonUser"])
    assert [g.row for g in both] == ["POST /v1/allocate", "SIM ttft_ms", "POST /v2/process (simple)", TOTAL]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "expected a mapping"),
        ({"gates": {}}, "expected a mapping"),
        ({"users": {"U": {"POST /x": {"p90_ms": 1}}}}, "slo.yaml: users.U.POST /x.p90_ms: unknown gate"),
        ({"users": {"U": {"POST /x": {"p95_ms": -1}}}}, "users.U.POST /x.p95_ms: -1 is not a number ≥ 0"),
        ({"users": {"U": {"POST /x": {"p95_ms": "fast"}}}}, "'fast' is not a number"),
        ({"users": {"U": {"POST /x": {"p95_ms": True}}}}, "True is not a number"),
        ({"total": {"max_error_rate": 5}}, "total.max_error_rate: 5 is a fraction, 0 to 1"),
        ({"users": {"U": {}}}, "users.U must map request rows to gates"),
        ({"users": {"U": {"POST /x": {}}}}, "users.U.POST /x: expected a mapping"),
        ({"total": {}}, "total: expected a mapping"),
    ],
)
def test_a_bad_slo_file_is_one_line_naming_the_key(data: object, message: str) -> None:
    with pytest.raises(SloError) as raised:
        parse_slo(data, HERE)
    assert message in str(raised.value)
    assert len(str(raised.value).splitlines()) == 1


def test_an_unreadable_slo_file_is_an_slo_error(tmp_path: Path) -> None:
    with pytest.raises(SloError, match="cannot read the SLO file"):
        load_slo(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("users: [")
    with pytest.raises(SloError, match="is not YAML"):
        load_slo(tmp_path / "bad.yaml")


def test_each_gate_passes_within_its_limit_and_fails_beyond() -> None:
    rows = {"POST /v1/allocate": _row(requests=200, failures=3, rps=12.5, p50=4, p95=30, p99=90)}
    at_limit = [
        Gate("POST /v1/allocate", "p50_ms", 4),
        Gate("POST /v1/allocate", "p95_ms", 30),
        Gate("POST /v1/allocate", "p99_ms", 90),
        Gate("POST /v1/allocate", "max_error_rate", 0.015),
        Gate("POST /v1/allocate", "min_rps", 12.5),
    ]
    assert all(r.passed for r in evaluate(at_limit, rows))
    beyond = [
        Gate("POST /v1/allocate", "p50_ms", 3),
        Gate("POST /v1/allocate", "p95_ms", 29),
        Gate("POST /v1/allocate", "p99_ms", 89),
        Gate("POST /v1/allocate", "max_error_rate", 0.01),
        Gate("POST /v1/allocate", "min_rps", 13),
    ]
    results = evaluate(beyond, rows)
    assert not any(r.passed for r in results)
    assert [r.actual for r in results] == [4, 30, 90, 0.015, 12.5]


def test_a_gate_on_a_row_without_requests_is_skipped_not_passed() -> None:
    results = evaluate([Gate("POST /v1/inference [stream]", "p95_ms", 1), Gate(TOTAL, "min_rps", 1)], {TOTAL: _row()})
    assert [(r.passed, r.actual, r.outcome) for r in results] == [(None, None, "SKIP"), (True, 10.0, "PASS")]
    table = render_table(results, HERE)
    assert "no requests" in table
    assert table.endswith("SLO PASSED (2 gates, 1 skipped: no requests)")
    assert report(results, HERE, _row(), exceptions=0)["ok"] is True


def test_the_table_shows_every_gate_and_the_verdict() -> None:
    results = evaluate(
        [Gate("POST /v1/allocate", "p95_ms", 100), Gate(TOTAL, "max_error_rate", 0.01)],
        {"POST /v1/allocate": _row(p95=250), TOTAL: _row()},
    )
    table = render_table(results, HERE).splitlines()
    assert table[0] == "SLO gates (slo.yaml)"
    assert table[1].split() == ["request", "gate", "limit", "actual", "requests", "result"]
    assert table[3].split() == ["POST", "/v1/allocate", "p95_ms", "100", "ms", "250", "ms", "100", "FAIL"]
    assert table[4].split() == ["total", "max_error_rate", "1.00", "%", "0.00", "%", "100", "PASS"]
    assert table[-1] == "SLO FAILED (1 of 2 gates)"


def test_the_report_is_the_verdict_the_requests_and_every_gate() -> None:
    results = evaluate([Gate(TOTAL, "min_rps", 1)], {TOTAL: _row(requests=42, failures=1, rps=4.2)})
    data = report(results, HERE, _row(requests=42, failures=1, rps=4.2), exceptions=0)
    assert data["ok"] is True
    assert data["requests"] == {"count": 42, "failures": 1, "rps": 4.2}
    assert data["gates"] == [
        {
            "row": "total",
            "metric": "min_rps",
            "limit": 1.0,
            "label": "total ≥ 1 req/s",
            "actual": 4.2,
            "requests": 42,
            "passed": True,
        }
    ]
    assert report(results, HERE, _row(), exceptions=2)["ok"] is False


def test_gate_labels_are_stable_names() -> None:
    assert Gate("POST /v1/allocate", "p95_ms", 1000).label == "POST /v1/allocate p95 ≤ 1000 ms"
    assert Gate("SIM ttft_ms", "p50_ms", 0.001).label == "SIM ttft_ms p50 ≤ 0.001 ms"
    assert Gate(TOTAL, "max_error_rate", 0.005).label == "total error rate ≤ 0.50 %"
