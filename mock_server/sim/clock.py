"""Simulated time. Nothing in `sim` reads the wall clock or sleeps: it asks a clock.

`now()` is simulated seconds since the simulation started. `real_seconds(d)` says how long the HTTP
layer should really wait for a simulated duration `d`: `d × time_scale` with the scaled clock, and 0
with the manual clock, whose time moves only when `advance()` is called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

# 2026-01-01T00:00:00Z: the manual clock's default epoch, so manual-clock runs render the same timestamps.
MANUAL_EPOCH = 1_767_225_600.0


class Clock(Protocol):
    epoch: float
    """Unix time of simulated t=0, used only to render timestamps."""

    @property
    def waits(self) -> bool:
        """Whether simulated durations are really waited for."""
        ...

    def now(self) -> float: ...

    def real_seconds(self, sim_seconds: float) -> float: ...

    def restart(self) -> None:
        """Back to simulated t=0."""
        ...


class ScaledClock:
    """Real time, scaled: one simulated second lasts `time_scale` real seconds.

    With `wall` (a function giving Unix time), simulated t=0 is anchored to the wall clock at every
    (re)start, so timestamps after a reset continue from now instead of jumping back to the first start.
    """

    waits = True

    def __init__(
        self, time_scale: float, monotonic: Callable[[], float], epoch: float, wall: Callable[[], float] | None = None
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        self.epoch = epoch
        self._monotonic = monotonic
        self._wall = wall
        self._start = monotonic()

    def now(self) -> float:
        return (self._monotonic() - self._start) / self.time_scale

    def restart(self) -> None:
        self._start = self._monotonic()
        if self._wall is not None:
            self.epoch = self._wall()

    def real_seconds(self, sim_seconds: float) -> float:
        return max(0.0, sim_seconds) * self.time_scale


class ManualClock:
    """Time that moves only when told to; nothing is ever waited for."""

    waits = False

    def __init__(self, epoch: float = MANUAL_EPOCH, start: float = 0.0) -> None:
        self.epoch = epoch
        self._now = start

    def now(self) -> float:
        return self._now

    def restart(self) -> None:
        self._now = 0.0

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the clock cannot go backwards")
        self._now += seconds
        return self._now

    def real_seconds(self, sim_seconds: float) -> float:
        return 0.0
