"""Fault rules: which requests misbehave, and how, decided reproducibly.

A rule matches on operation, pool, model and tenant, inside an optional window of simulator time. Each
match counts; a rule lets its first `skip` matches pass, fires on at most `times` matches, and fires
with `probability` (one draw from the engine's seeded stream per eligible match). Rules are tried in
order and the first that fires wins. What firing *does* to the HTTP exchange is the HTTP layer's job
(`mock_server/api/faults.py`); here a rule only decides, and samples whatever numbers its action needs,
so that the same seed and the same requests give the same decisions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from mock_server.sim.errors import NotFound
from mock_server.sim.ratelimit import TokenBucket

OPERATIONS = ("allocate", "status", "list", "release", "inference", "pools", "models", "usage")
PHASES = ("before", "after")


@dataclass(slots=True)
class FaultRule:
    id: str
    action: dict[str, Any]
    operation: str = "any"
    pool_id: str | None = None
    model: str | None = None
    tenant_id: str | None = None
    phase: str = "before"
    probability: float = 1.0
    times: int | None = None
    skip: int = 0
    window_s: tuple[float, float] | None = None
    source: str = "api"
    matched: int = 0
    fired: int = 0

    def matches(self, operation: str, tenant_id: str | None, pool_id: str | None, model: str | None) -> bool:
        return (
            (self.operation == "any" or self.operation == operation)
            and (self.tenant_id is None or self.tenant_id == tenant_id)
            and (self.pool_id is None or self.pool_id == pool_id)
            and (self.model is None or self.model == model)
        )

    def describe(self) -> dict[str, Any]:
        """The rule as the admin contract's `FaultRule`."""
        return {
            "id": self.id,
            "match": {
                "operation": self.operation,
                "pool_id": self.pool_id,
                "model": self.model,
                "tenant_id": self.tenant_id,
            },
            "phase": self.phase,
            "probability": self.probability,
            "times": self.times,
            "skip": self.skip,
            "window_s": list(self.window_s) if self.window_s is not None else None,
            "action": dict(self.action),
            "matched": self.matched,
            "fired": self.fired,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    rule: FaultRule
    delay_s: float = 0.0
    """For `delay`: the sampled simulated delay."""
    retry_after: int | None = None
    """For `rate_limit`: seconds until the bucket has a token again."""

    @property
    def kind(self) -> str:
        return str(self.rule.action["type"])

    @property
    def spoils_answer(self) -> bool:
        """Whether the answer the client gets is the fault's own rather than the server's
        (a `delay` or a `gpu_fail` leaves the answer to the server)."""
        return self.kind not in ("delay", "gpu_fail")


@dataclass(slots=True)
class FaultEngine:
    rng: random.Random
    rules: list[FaultRule] = field(default_factory=list)
    _next_id: int = 1
    _buckets: dict[tuple[str, str | None], TokenBucket] = field(default_factory=dict)

    def add(self, spec: dict[str, Any], source: str = "api") -> FaultRule:
        """Add a rule from its contract shape (`FaultRuleInput`, already validated)."""
        match = spec.get("match") or {}
        window = spec.get("window_s")
        rule = FaultRule(
            id=f"fault_{self._next_id}",
            action=dict(spec["action"]),
            operation=match.get("operation") or "any",
            pool_id=match.get("pool_id"),
            model=match.get("model"),
            tenant_id=match.get("tenant_id"),
            phase=spec.get("phase", "before"),
            probability=float(spec.get("probability", 1.0)),
            times=spec.get("times"),
            skip=int(spec.get("skip", 0)),
            window_s=(float(window[0]), float(window[1])) if window is not None else None,
            source=source,
        )
        self._next_id += 1
        self.rules.append(rule)
        return rule

    def remove(self, rule_id: str) -> None:
        for i, rule in enumerate(self.rules):
            if rule.id == rule_id:
                del self.rules[i]
                return
        raise NotFound(f"No fault rule {rule_id}.")

    def clear(self) -> None:
        self.rules.clear()
        self._buckets.clear()

    def decide(
        self,
        *,
        operation: str,
        phase: str,
        now: float,
        tenant_id: str | None = None,
        pool_id: str | None = None,
        model: str | None = None,
    ) -> Decision | None:
        for rule in self.rules:
            if rule.phase != phase or not rule.matches(operation, tenant_id, pool_id, model):
                continue
            if rule.window_s is not None and not (rule.window_s[0] <= now < rule.window_s[1]):
                continue
            rule.matched += 1
            if rule.matched <= rule.skip or (rule.times is not None and rule.fired >= rule.times):
                continue
            decision = self._fire(rule, tenant_id, now)
            if decision is not None:
                rule.fired += 1
                return decision
        return None

    def _fire(self, rule: FaultRule, tenant_id: str | None, now: float) -> Decision | None:
        action = rule.action
        if action["type"] == "rate_limit":
            # A rate limit fires exactly when the tenant's bucket is empty; probability does not apply.
            key = (rule.id, tenant_id)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(action["rps"], action["burst"], now)
            wait = bucket.take(now)
            return Decision(rule, retry_after=wait) if wait else None
        if rule.probability < 1.0 and self.rng.random() >= rule.probability:
            return None
        if action["type"] == "delay":
            return Decision(rule, delay_s=sample_delay_ms(action, self.rng) / 1000)
        return Decision(rule)


def sample_delay_ms(action: dict[str, Any], rng: random.Random) -> float:
    distribution = action["distribution"]
    if distribution == "fixed":
        return float(action["ms"])
    if distribution == "uniform":
        low, high = sorted((float(action["min_ms"]), float(action["max_ms"])))
        return rng.uniform(low, high)
    if distribution == "normal":
        return max(0.0, rng.gauss(float(action["mean_ms"]), float(action["stddev_ms"])))
    if distribution == "lognormal":
        return float(action["median_ms"]) * rng.lognormvariate(0.0, float(action["sigma"]))
    raise ValueError(f"unknown delay distribution {distribution!r}")
