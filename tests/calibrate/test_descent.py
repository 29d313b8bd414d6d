"""The coordinate descent calibrate and `benchmarks/fidelity.py --fit` share."""

from __future__ import annotations

import math
from typing import Any

import pytest

from mock_server.calibrate.descent import coordinate_descent, decode_scale_knob, decode_step_knob, field_knob


def _loss(p: dict[str, Any]) -> float:
    return math.log(p["a"] / 3.0) ** 2 + math.log(p["b"] / 2.0) ** 2


def test_the_patient_descent_travels_to_a_far_minimum_and_leaves_its_input_alone() -> None:
    start: dict[str, Any] = {"a": 1.0, "b": 10.0}
    fitted, best = coordinate_descent(start, [field_knob("a"), field_knob("b")], _loss, rounds=24, patient=True)
    assert fitted["a"] == pytest.approx(3.0, rel=0.03)
    assert fitted["b"] == pytest.approx(2.0, rel=0.03)
    assert best < _loss(start)
    assert start == {"a": 1.0, "b": 10.0}


def test_the_refining_descent_moves_a_figure_by_less_than_two() -> None:
    # The fidelity fit's mode: the step halves every round, so its reach is bounded (1.3 · 1.15 · ...).
    fitted, _ = coordinate_descent({"a": 1.0, "b": 2.0}, [field_knob("a")], _loss, rounds=6)
    assert 1.5 < fitted["a"] < 1.8


def test_scaling_the_decode_grid_keeps_its_shape() -> None:
    profile: dict[str, Any] = {"decode": {"step_ms": [2.0, 3.0, 6.0]}}
    decode_scale_knob().set(profile, 4.0)
    assert profile["decode"]["step_ms"] == [4.0, 6.0, 12.0]


def test_a_decode_point_never_makes_a_bigger_batch_faster() -> None:
    profile: dict[str, Any] = {"decode": {"step_ms": [2.0, 3.0, 6.0]}}
    decode_step_knob(0).set(profile, 5.0)
    assert profile["decode"]["step_ms"] == [5.0, 5.0, 6.0]
