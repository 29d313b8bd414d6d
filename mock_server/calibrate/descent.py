"""Coordinate descent over a serving profile's figures: multiplicative steps that shrink each round.

The fit `benchmarks/fidelity.py --fit` runs against published anchors, and `hostedai-mock calibrate`
runs against a recorded trace: one search, two losses. It needs no gradient and never leaves the
profile's valid region (figures stay positive, a bigger batch never steps faster), which matters more
here than speed: a loss evaluation is a simulation.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Profile = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Knob:
    """One figure of a profile that the search may move."""

    name: str
    get: Callable[[Profile], float]
    set: Callable[[Profile, float], None]


def field_knob(name: str) -> Knob:
    def put(profile: Profile, value: float) -> None:
        profile[name] = value

    return Knob(name, lambda profile: float(profile[name]), put)


def decode_step_knob(index: int) -> Knob:
    """One point of the decode grid; the points above it are kept at least as slow."""

    def put(profile: Profile, value: float) -> None:
        steps = profile["decode"]["step_ms"]
        steps[index] = value
        for i in range(1, len(steps)):  # a bigger batch never steps faster
            steps[i] = max(steps[i], steps[i - 1])

    return Knob(f"decode.step_ms[{index}]", lambda profile: float(profile["decode"]["step_ms"][index]), put)


def decode_scale_knob() -> Knob:
    """The whole decode grid scaled at once: what traffic at batch 1 can tell, keeping the grid's shape
    (its higher batch points are not measured by such traffic, so they follow the first)."""

    def get(profile: Profile) -> float:
        return float(profile["decode"]["step_ms"][0])

    def put(profile: Profile, value: float) -> None:
        steps = profile["decode"]["step_ms"]
        factor = value / steps[0]
        profile["decode"]["step_ms"] = [round(step * factor, 4) for step in steps]

    return Knob("decode.step_ms (scaled)", get, put)


def coordinate_descent(
    profile: Profile,
    knobs: list[Knob],
    loss: Callable[[Profile], float],
    *,
    rounds: int = 6,
    step: float = 0.3,
    patient: bool = False,
    progress: Callable[[float, float], None] | None = None,
) -> tuple[Profile, float]:
    """The profile (a copy) with the lowest loss found, and that loss. Each round tries every knob up and
    down by `step` (×(1+step), ÷(1+step)) and keeps the first move that lowers the loss; then `step` is
    halved — after every round, which refines a start already near (a figure moves by ×1.8 at most over
    the rounds: the fidelity fit); or, `patient`, only after a round that found nothing, which lets a
    figure travel as far as the rounds allow (calibration, whose start may be far from the trace).
    `progress(loss, step)` is told after each round."""
    profile = copy.deepcopy(profile)
    best = loss(profile)
    for _ in range(rounds):
        improved = False
        for knob in knobs:
            for factor in (1 + step, 1 / (1 + step)):
                trial = copy.deepcopy(profile)
                knob.set(trial, round(knob.get(trial) * factor, 4))
                value = loss(trial)
                if value < best:
                    best, profile, improved = value, trial, True
                    break
        if not (patient and improved):
            step /= 2
        if progress is not None:
            progress(best, step)
    return profile, best
