"""The stateful suite: a Hypothesis state machine drives the real connector against the target.

Beside the target it keeps a small reference model (the allocations it made and the state each should
be in) and after every step checks that the target agrees: the tenant's active allocations are the
ones the model holds, and, on a mock used only by this run, every pool's allocated capacity is the sum
of what the model holds there. Rules allocate, infer (plain and streamed), release, release twice, use
a released allocation, read an allocation back, probe it with another tenant's key, replay an
allocate with its `Idempotency-Key`, and, with two tenants of different customer tiers, allocate across
the tier boundary (403 `pool_not_permitted`, nothing held) and inside it (served). A failure is shrunk
by Hypothesis to the shortest sequence of steps that still fails, reported as code that replays it.

Every allocation carries the labels `harness_run` (this run) and `harness_case` (one generated
example), so the checks see only what this run made, and a leak found after the run is released.
Against a live HostedAI the run takes at most `RunOptions.max_allocations` allocations and releases
every one. A target with a control plane is a mock used only by this run: each example starts with
`POST /_admin/reset` (seeded with the run's seed), so pool totals are exact and a shrunk example
replays alike.

`machine.py` is the machine and its model; `runner.py` runs it in a thread and reports.
"""

from harness.suites.stateful.machine import (
    ACTIVE_SET,
    ALL_RELEASED,
    ALLOCATE,
    CAPACITY,
    CHECKS,
    IDEMPOTENT_ALLOCATE,
    INFERENCE,
    ISOLATION,
    MACHINE,
    RELEASE,
    RELEASE_IDEMPOTENT,
    STATUS,
    STREAM,
    TIERS,
    USE_AFTER_RELEASE,
    HostedAiMachine,
)
from harness.suites.stateful.runner import CATALOGUE, StatefulSuite

__all__ = [
    "ACTIVE_SET",
    "ALLOCATE",
    "ALL_RELEASED",
    "CAPACITY",
    "CATALOGUE",
    "CHECKS",
    "IDEMPOTENT_ALLOCATE",
    "INFERENCE",
    "ISOLATION",
    "MACHINE",
    "RELEASE",
    "RELEASE_IDEMPOTENT",
    "STATUS",
    "STREAM",
    "TIERS",
    "USE_AFTER_RELEASE",
    "HostedAiMachine",
    "StatefulSuite",
]
