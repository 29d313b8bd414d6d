"""What every suite shares: its options, and how it reports (the target is `harness.target.Target`).

A suite is an object with a `name`, a `needs_control_plane` flag and an async `run(target, options)`
returning a `SuiteResult`. Suites never print: the CLI and the pytest plugin render their results.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from harness.target import Target

Outcome = Literal["passed", "failed", "skipped"]

RATE_LIMIT_TRIES = 5
"""How often a suite sends one call the target keeps answering 429, each time after its Retry-After."""
RETRY_AFTER_CAP_S = 30.0
"""The longest a suite waits out one Retry-After."""


def retry_after_wait_s(retry_after: float | None) -> float:
    """How long a suite waits after a 429: the target's Retry-After (1 s without one), capped."""
    return min(RETRY_AFTER_CAP_S, max(0.0, 1.0 if retry_after is None else retry_after))


@dataclass(frozen=True, slots=True)
class RunOptions:
    seed: int = 0
    examples: int = 25
    """Depth: schemathesis examples per operation, stateful runs, chaos rounds all scale with it."""
    report_dir: Path | None = None
    max_allocations: int = 20
    """Live targets: the most allocations a suite may take (each is released)."""
    idempotency_key: bool = True
    """False when the target is declared to ignore `Idempotency-Key` (HostedAI today): those checks skip."""
    workdir: Path = Path(".")


@dataclass(slots=True)
class CheckResult:
    name: str
    outcome: Outcome
    duration_s: float = 0.0
    message: str = ""
    reproduce: list[str] = field(default_factory=list)
    """curl commands or code that replay the failure."""


@dataclass(slots=True)
class SuiteResult:
    suite: str
    checks: list[CheckResult] = field(default_factory=list)
    duration_s: float = 0.0
    skipped_reason: str | None = None
    replay: str = ""
    """The command that replays this suite's run, as it must be typed (seed and depth included)."""
    notes: list[str] = field(default_factory=list)
    """What the run left out and why (a live budget spent, operations mostly rate limited...)."""

    def count(self, outcome: Outcome) -> int:
        return sum(1 for c in self.checks if c.outcome == outcome)

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0


class Suite(Protocol):
    name: str
    needs_control_plane: bool
    """A suite that makes the target misbehave cannot run against a live HostedAI."""

    async def run(self, target: Target, options: RunOptions) -> SuiteResult: ...


class Stopwatch:
    def __init__(self) -> None:
        self._start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start
