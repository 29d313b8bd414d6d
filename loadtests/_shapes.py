"""Load shapes: how many users run at each moment of a run, by name. Pure functions of elapsed time.

Each shape has a peak (`-u`, default 10 users) and a duration (`-t`, else its own default); it reaches
each level at `-r` users/s (default: the peak, so a level is reached within about a second) and ends the
run by itself when its duration is over.

- `ramp`: from 1 user up to the peak, linearly over the first 80 % of the run, then holds;
- `spike`: a fifth of the peak, the whole peak for the middle 20 % of the run, back to a fifth;
- `step`: four equal steps, a quarter of the peak more each;
- `soak`: up to the peak over the first 10 %, then holds for a long time (default 30 minutes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_PEAK = 10


@dataclass(frozen=True, slots=True)
class Shape:
    name: str
    default_duration_s: float
    users_at: Callable[[float, int], int]
    """(fraction of the run elapsed, 0 to 1; peak users) → users."""


def _ramp(x: float, peak: int) -> int:
    return math.ceil(peak * min(1.0, x / 0.8))


def _spike(x: float, peak: int) -> int:
    return peak if 0.4 <= x < 0.6 else peak // 5


def _step(x: float, peak: int) -> int:
    return math.ceil(peak * (math.floor(x * 4) + 1) / 4)


def _soak(x: float, peak: int) -> int:
    return math.ceil(peak * min(1.0, x / 0.1))


SHAPES = {
    shape.name: shape
    for shape in (
        Shape("ramp", 60, _ramp),
        Shape("spike", 60, _spike),
        Shape("step", 120, _step),
        Shape("soak", 1800, _soak),
    )
}


@dataclass(frozen=True, slots=True)
class ShapePlan:
    shape: Shape
    peak: int
    spawn_rate: float
    duration_s: float

    def tick(self, elapsed_s: float) -> tuple[int, float] | None:
        """Locust's `LoadTestShape.tick`: (users, spawn rate) now, or None once the run is over."""
        if elapsed_s >= self.duration_s:
            return None
        return max(1, self.shape.users_at(elapsed_s / self.duration_s, self.peak)), self.spawn_rate


def plan_shape(name: str, users: int | None, spawn_rate: float | None, run_time_s: float | None) -> ShapePlan:
    shape = SHAPES[name]
    peak = max(1, users or DEFAULT_PEAK)
    return ShapePlan(shape, peak, spawn_rate or float(peak), float(run_time_s or shape.default_duration_s))
