"""The drift judges, fed tables of records: each aspect flags its own difference and no other."""

from __future__ import annotations

import random
from typing import Any

from harness.drift.compare import Thresholds, compare, timing_samples
from harness.drift.shape import shape


def _rec(step: str, operation: str, status: int, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "kind": "request",
        "step": step,
        "operation": operation,
        "status": status,
        "error_code": None,
        "transport_error": None,
        "headers": {
            "content_type": "application/json",
            "request_id": True,
            "location": False,
            "retry_after": None,
            "idempotent_replayed": None,
        },
        "shape": ["id:string"],
        "timings": {"total_ms": 1.0},
        "pool_id": "p",
        "model": "m",
        "gpu_type": "L4",
    }
    record.update(changes)
    return record


def _inference(ttft: float, tpot: float, step: str = "inference") -> dict[str, Any]:
    return _rec(
        step,
        "createInference",
        200,
        timings={"total_ms": 1.0, "reported": {"ttft_ms": ttft, "total_ms": ttft + 31 * tpot}, "completion_tokens": 32},
    )


def _failed(live: list[dict[str, Any]], mock: list[dict[str, Any]]) -> list[str]:
    return [c.name for c in compare(live, mock) if c.outcome == "failed"]


BASE = [_rec("allocate", "createAllocation", 201), _rec("error:x", "getAllocation", 404, error_code="not_found")]


def test_identical_records_drift_nowhere() -> None:
    checks = compare(BASE, BASE)
    assert [c.outcome for c in checks if c.outcome != "passed"] == []


def test_a_changed_code_is_a_status_difference_only() -> None:
    live = [BASE[0], {**BASE[1], "error_code": "missing"}]
    assert _failed(live, BASE) == ["status: error:x getAllocation"]


def test_a_header_one_side_never_sends_is_named() -> None:
    live = [{**BASE[0], "headers": {**BASE[0]["headers"], "location": True}}, BASE[1]]
    checks = {c.name: c for c in compare(live, BASE)}
    assert [n for n, c in checks.items() if c.outcome == "failed"] == ["headers: createAllocation 201"]
    assert checks["headers: createAllocation 201"].message == "only live sent: location"


def test_a_field_of_another_type_is_a_shape_difference() -> None:
    live = [{**BASE[0], "shape": ["id:number"]}, BASE[1]]
    assert _failed(live, BASE) == ["shape: createAllocation 201"]


def test_rate_limited_answers_are_left_out() -> None:
    live = [_rec("allocate", "createAllocation", 429, error_code="rate_limited"), *BASE]
    assert _failed(live, BASE) == []


def test_a_step_only_one_side_took_is_a_status_difference() -> None:
    assert _failed(BASE, BASE[:1]) == ["status: error:x getAllocation"]


def test_timings_from_one_distribution_do_not_drift_and_a_slower_one_does() -> None:
    rng = random.Random(3)
    live = [_inference(30 * rng.uniform(1, 1.05), 5 * rng.uniform(1, 1.05)) for _ in range(12)]
    same = [_inference(30 * rng.uniform(1, 1.05), 5 * rng.uniform(1, 1.05)) for _ in range(12)]
    slower = [_inference(45 * rng.uniform(1, 1.05), 5 * rng.uniform(1, 1.05)) for _ in range(12)]
    assert _failed(live, same) == []
    assert _failed(live, slower) == ["timing: inference ttft_ms on L4 × m"]


def test_a_certain_but_small_timing_shift_is_not_drift() -> None:
    # Every mock sample 3 % above every live one: KS is certain (D 1), the effect is below min_shift.
    live = [_inference(30 + i * 0.01, 5) for i in range(12)]
    mock = [_inference(31 + i * 0.01, 5) for i in range(12)]
    checks = {c.name: c for c in compare(live, mock)}
    ttft = checks["timing: inference ttft_ms on L4 × m"]
    assert ttft.outcome == "passed"
    assert "KS D 1.000" in ttft.message


def test_too_few_timing_samples_are_skipped_not_passed() -> None:
    checks = compare([_inference(30, 5)] * 3, [_inference(60, 9)] * 3, Thresholds(min_samples=5))
    timing = [c for c in checks if c.name.startswith("timing:")]
    assert {c.outcome for c in timing} == {"skipped"}


def test_time_per_output_token_is_derived_when_not_reported() -> None:
    samples = timing_samples([_inference(30, 5)])
    assert samples[("inference", "L4", "m", "tpot_ms")] == [5.0]


def test_a_shape_keeps_names_and_types_never_values() -> None:
    body = {"output": "secret text", "usage": {"prompt_tokens": 3}, "labels": {"team": "x"}, "items": [{"a": 1.5}]}
    assert shape(body) == [
        "items:array",
        "items[].a:number",
        "items[]:object",
        "labels:object",
        "output:string",
        "usage.prompt_tokens:number",
        "usage:object",
    ]
