"""The latency window: fixed buckets, quantiles as Prometheus interpolates them, and a ring of time
bins on an injected clock (no real second passes in these tests)."""

from __future__ import annotations

import random

import pytest

from mock_server.dashboard.latency import EDGES_MS, LatencyWindow, bucket_of, quantile_ms


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("ms", "bucket"),
    [(0.0, 0), (1.0, 0), (1.001, 1), (EDGES_MS[7], 7), (EDGES_MS[7] + 0.001, 8), (1e5, 25), (1e5 + 1, 26), (1e9, 26)],
)
def test_a_value_falls_in_the_first_bucket_whose_bound_holds_it(ms: float, bucket: int) -> None:
    assert bucket_of(ms) == bucket


def test_every_value_lands_below_its_bound_and_above_the_previous_one() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        ms = 10 ** rng.uniform(-1, 6)
        index = bucket_of(ms)
        if index < len(EDGES_MS):
            assert ms <= EDGES_MS[index]
        if index > 0:
            assert ms > EDGES_MS[index - 1]


def test_quantiles_interpolate_inside_the_bucket() -> None:
    counts = [0] * (len(EDGES_MS) + 1)
    assert quantile_ms(counts, 0.5) is None
    counts[10] = 4  # (EDGES_MS[9], EDGES_MS[10]] = (63.096, 100]
    assert quantile_ms(counts, 0.5) == pytest.approx(EDGES_MS[9] + (100 - EDGES_MS[9]) / 2, abs=1e-3)
    assert quantile_ms(counts, 1.0) == 100
    counts[-1] = 100  # above the last bound: answered with the last bound, as Prometheus does
    assert quantile_ms(counts, 0.99) == EDGES_MS[-1]


def test_bins_follow_the_observer_clock_and_roll_over() -> None:
    now = FakeTime()
    window = LatencyWindow(now, bins=4, bin_s=1.0)
    window.observe(0.050, 0.010)
    now.now += 1
    window.observe(0.200, None)  # one token: no inter-token latency
    window.observe(0.200, 0.020)
    view = window.view()
    assert view["series"]["count"] == [0, 0, 1, 2]
    assert view["series"]["ttft_p50_ms"][:2] == [None, None]
    assert sum(view["ttft_histogram"]) == 3
    assert sum(view["itl_histogram"]) == 2
    now.now += 3  # the first bin leaves the window
    view = window.view()
    assert view["series"]["count"] == [2, 0, 0, 0]
    assert sum(view["ttft_histogram"]) == 2
    now.now += 10  # every bin is stale: the slots they held are not reused by mistake
    window.observe(0.001, 0.001)
    assert window.view()["series"]["count"] == [0, 0, 0, 1]
    assert window.observed == 4


def test_the_view_has_the_same_size_whatever_the_traffic() -> None:
    now = FakeTime()
    window = LatencyWindow(now)
    small = window.view()
    rng = random.Random(3)
    for _ in range(20_000):
        now.now += rng.random() / 100
        window.observe(rng.lognormvariate(-3, 1), rng.lognormvariate(-5, 0.5))
    big = window.view()
    assert {k: len(v) for k, v in big["series"].items()} == {k: len(v) for k, v in small["series"].items()}
    assert len(big["ttft_histogram"]) == len(small["ttft_histogram"]) == len(EDGES_MS) + 1
    window.clear()
    assert window.view()["observed"] == 0
    assert sum(window.view()["series"]["count"]) == 0
