"""Named scenarios: documented bundles of fault rules (docs/faults.md has the catalogue).

Each scenario is a list of rules in the admin contract's `FaultRuleInput` shape. Windows are relative
to the moment the scenario is applied, so `region-outage` starts now whatever the clock says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mock_server.sim.errors import NotFound

Rules = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    rules: Callable[[float], Rules]


def _flaky_5xx(now: float) -> Rules:
    return [
        {"probability": 0.1, "action": {"type": "error", "status": 503, "code": "unavailable", "retry_after": 1}},
        {"probability": 0.05, "action": {"type": "error", "status": 500, "code": "internal_error"}},
        {"probability": 0.05, "action": {"type": "error", "status": 502, "code": "bad_gateway"}},
    ]


def _rate_limited(now: float) -> Rules:
    return [{"action": {"type": "rate_limit", "rps": 5, "burst": 10}}]


def _capacity_crunch(now: float) -> Rules:
    return [
        {
            "match": {"operation": "allocate"},
            "probability": 0.7,
            "action": {"type": "error", "status": 503, "code": "capacity_exhausted", "retry_after": 2},
        }
    ]


def _brownout(now: float) -> Rules:
    # Latency that rises minute by minute, then stays bad: median 200 ms, 800 ms, 2 s, 5 s.
    steps = [(0, 60, 200), (60, 120, 800), (120, 180, 2000), (180, 10**9, 5000)]
    return [
        {
            "window_s": [now + start, now + end],
            "action": {"type": "delay", "distribution": "lognormal", "median_ms": median, "sigma": 0.5},
        }
        for start, end, median in steps
    ]


def _lost_responses(now: float) -> Rules:
    return [{"match": {"operation": "allocate"}, "phase": "after", "probability": 0.5, "action": {"type": "reset"}}]


def _gpu_xid(now: float) -> Rules:
    return [{"match": {"operation": "inference"}, "probability": 0.1, "action": {"type": "gpu_fail", "after_ms": 50}}]


def _region_outage(now: float) -> Rules:
    return [
        {
            "window_s": [now, now + 60],
            "action": {"type": "error", "status": 503, "code": "unavailable", "retry_after": 30},
        }
    ]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("flaky-5xx", "10% 503 unavailable (Retry-After 1), 5% 500, 5% 502, on every operation.", _flaky_5xx),
        Scenario(
            "rate-limited",
            "Per-tenant token bucket: 5 requests/s, bursts of 10, then 429 + Retry-After.",
            _rate_limited,
        ),
        Scenario(
            "capacity-crunch", "70% of allocates answer 503 capacity_exhausted with Retry-After 2.", _capacity_crunch
        ),
        Scenario(
            "brownout",
            "Every request slowed by a lognormal delay whose median rises each simulated minute: "
            "200 ms, 800 ms, 2 s, then 5 s.",
            _brownout,
        ),
        Scenario(
            "lost-responses",
            "Half the allocates are done but their answer is lost: the connection is reset after the work.",
            _lost_responses,
        ),
        Scenario(
            "gpu-xid",
            "10% of inferences hit an Xid error: their GPU fails 50 ms in, and every allocation on it ends failed.",
            _gpu_xid,
        ),
        Scenario(
            "region-outage",
            "Every operation answers 503 unavailable (Retry-After 30) for 60 simulated s.",
            _region_outage,
        ),
    )
}


def scenario_rules(name: str, now: float) -> Rules:
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise NotFound(f"No scenario {name}; known: {', '.join(SCENARIOS)}.")
    return scenario.rules(now)
