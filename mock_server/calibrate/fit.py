"""Calibrating a cell's serving profile to a trace: fit on the earlier part, judge on the later.

For each GPU type × model the trace served, the profile the mock's config runs there is the starting
point; the figures one user's traffic can tell apart — the decode step (the grid scaled as one), the
prefill cost per prompt token and the frontend's overhead per request — are moved by coordinate descent
until the simulator's TTFT and time per output token match the trace's at the 10th, 50th and 90th
percentiles. The trace is split by time: the first two thirds are fitted, the last third is held out,
and the held-out p50 and p99 errors are what the command reports. A cell with fewer than `min_samples`
inferences is refused, never guessed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mock_server.calibrate.descent import Knob, coordinate_descent, decode_scale_knob, field_knob
from mock_server.calibrate.observations import Observation, Trace
from mock_server.calibrate.predict import Cell, CellError, cell_of, predict
from mock_server.config import MockConfig, serving_profile

HELD_OUT_SHARE = 1 / 3
_FIT_QUANTILES = (10.0, 50.0, 90.0)
REPORT_QUANTILES = (50.0, 99.0)
METRICS = ("ttft_ms", "tpot_ms")


@dataclass(slots=True)
class CellFit:
    gpu_type: str
    model: str
    samples: int
    profile_name: str | None = None
    refused: str | None = None
    profile: dict[str, Any] | None = None
    held_out: dict[str, tuple[float, float]] = field(default_factory=dict)
    """`ttft_ms p50` → (observed, predicted) on the held-out requests."""

    def error(self, key: str) -> float:
        observed, predicted = self.held_out[key]
        return (predicted - observed) / observed if observed else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def split(observations: Sequence[Observation]) -> tuple[list[Observation], list[Observation]]:
    """Oldest two thirds to fit, newest third held out (time order: the held-out part is the future)."""
    ordered = sorted(observations, key=lambda o: o.t)
    cut = len(ordered) - max(1, round(len(ordered) * HELD_OUT_SHARE))
    return ordered[:cut], ordered[cut:]


def quantile_loss(predicted: Sequence[Observation], observed: Sequence[Observation]) -> float:
    """Squared log errors of TTFT and time per output token at the fitted percentiles."""
    total = 0.0
    for metric in METRICS:
        mine = [getattr(o, metric) for o in predicted]
        theirs = [getattr(o, metric) for o in observed]
        for q in _FIT_QUANTILES:
            a, b = percentile(mine, q), percentile(theirs, q)
            total += math.log(max(a, 1e-9) / max(b, 1e-9)) ** 2
    return total


def knobs(profile: dict[str, Any]) -> list[Knob]:
    found = [decode_scale_knob(), field_knob("prefill_us_per_token"), field_knob("request_overhead_ms")]
    if profile.get("prefill_step_ms") is not None:
        found.append(field_knob("prefill_step_ms"))
    return found


def _seeded_start(profile: dict[str, Any]) -> dict[str, Any]:
    """A figure at 0 cannot be moved by multiplying it: it starts at a small value the search can scale."""
    start = dict(profile)
    for name, floor in (("prefill_us_per_token", 1.0), ("request_overhead_ms", 0.5)):
        if not start.get(name):
            start[name] = floor
    return start


def fit_cell(cell: Cell, base: dict[str, Any], observations: Sequence[Observation], seed: int = 0) -> CellFit:
    fitting, held = split(observations)
    result = CellFit(cell.gpu_type, cell.model, len(observations), profile_name=cell.profile_name)
    start = _seeded_start(base)

    def loss(candidate: dict[str, Any]) -> float:
        return quantile_loss(predict(cell, candidate, fitting, seed), fitting)

    # Patient: a live service's figures may be far from the starting profile's (the step shrinks only
    # when a round finds nothing; 24 rounds let a figure travel by up to ×1.3 a round while it improves).
    fitted, _ = coordinate_descent(start, knobs(start), loss, rounds=24, patient=True)
    result.profile = fitted
    predicted = predict(cell, fitted, held, seed)
    for metric in METRICS:
        for q in REPORT_QUANTILES:
            observed = percentile([getattr(o, metric) for o in held], q)
            result.held_out[f"{metric} p{q:g}"] = (observed, percentile([getattr(o, metric) for o in predicted], q))
    return result


def calibrate(trace: Trace, config: MockConfig, min_samples: int = 12, seed: int = 0) -> list[CellFit]:
    fits = []
    for (gpu_type, model), observations in sorted(trace.cells.items()):
        if len(observations) < min_samples:
            fits.append(
                CellFit(
                    gpu_type,
                    model,
                    len(observations),
                    refused=f"{len(observations)} inferences, fewer than {min_samples}",
                )
            )
            continue
        try:
            cell = cell_of(config, gpu_type, model)
        except CellError as exc:
            fits.append(CellFit(gpu_type, model, len(observations), refused=str(exc)))
            continue
        base = serving_profile(config, model, gpu_type).model_dump()
        fits.append(fit_cell(cell, base, observations, seed))
    return fits


def library(fits: Sequence[CellFit], header: dict[str, Any]) -> dict[str, Any]:
    """The fitted profiles in the format of `serving_profiles.yaml`, each saying where it came from."""
    profiles: dict[str, Any] = {}
    for fit in fits:
        if fit.profile is None or fit.profile_name is None:
            continue
        errors = ", ".join(f"{key} {fit.error(key):+.1%}" for key in fit.held_out)
        held = fit.samples - len(split([Observation(0, 0, 0, 0, 0)] * fit.samples)[0])
        profile = dict(fit.profile)
        profile["source"] = (
            f"Calibrated by `hostedai-mock calibrate` to a trace of {header['target']} recorded "
            f"{header['recorded_at']} ({fit.samples} inferences on {fit.gpu_type} x {fit.model}; the latest "
            f"{held} held out, errors there: {errors}). Batch-1 traffic: the decode grid was scaled as one, "
            f"its shape is the starting profile's."
        )
        profiles[fit.profile_name] = profile
    return {"version": 1, "profiles": profiles}
