"""A fast subset of `python -m benchmarks.fidelity` (docs/fidelity.md): anchored figures that must stay
within their bands, so a change to the serving model or its profiles cannot quietly lose fidelity."""

from __future__ import annotations

import pytest

from benchmarks import fidelity

FAST = (
    "gemma-270m L4, 1 users: TTFT p50",
    "gemma-270m L4, 1 users: ITL",
    "gemma-270m L4, 16 users: TTFT p50",
    "gemma-270m L4, 16 users: ITL",
    "gemma-270m L4, 16 users: throughput",
    "qwen-30b H100, 1 user (1k in / 256 out): ITL",
    "gemma-270m H100, 1 user, 1024 in: TTFT",
    "gemma-270m H100, 1 user: TPOT",
    "spatial (MPS), 2 busy neighbours: TPOT ratio",
    "temporal: fine at 1.25x VRAM, a co-tenant killed at 1.67x",
)
POINTS = {p.what: p for p in (*fidelity.anchored(), *fidelity.behaviour_points())}


def test_every_fast_figure_is_one_the_benchmark_measures() -> None:
    assert set(FAST) <= set(POINTS)


@pytest.mark.parametrize("what", FAST)
def test_the_figure_stays_within_its_band(what: str) -> None:
    result = fidelity.Result(POINTS[what], POINTS[what].measure())
    assert result.ok, f"{what}: anchor {result.point.expected}, mock {result.mock:.4g} ({result.error:.1%})"
