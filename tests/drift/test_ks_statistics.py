"""The statistics drift judges timings with, against values worked out by hand."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest

from harness.drift.stats import _asymptotic_pvalue, _exact_pvalue, ks_2samp, percentile


def test_samples_that_do_not_overlap_have_distance_one_and_the_exact_p_of_two_orderings() -> None:
    # Only 2 of the C(12, 6) orderings of the merged samples separate them completely (one each way).
    result = ks_2samp([1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12])
    assert result.statistic == 1.0
    assert result.pvalue == pytest.approx(2 / math.comb(12, 6))


def test_equal_samples_have_distance_zero_and_p_one() -> None:
    result = ks_2samp([3.0, 1.0, 2.0, 2.0], [2.0, 1.0, 3.0, 2.0])
    assert (result.statistic, result.pvalue) == (0.0, 1.0)


def test_the_distance_counts_ties_once() -> None:
    # ECDFs after 1: 1/2 against 0; after 2: 1 against 1/2; after 3: 1 against 1.
    assert ks_2samp([1, 2], [2, 3]).statistic == 0.5


def test_the_exact_p_value_enumerates_orderings() -> None:
    # n = m = 2, D = 1/2: of the 6 orderings, those whose ECDF gap stays below 1/2 everywhere are none
    # (any first value opens a gap of 1/2), so P(D >= 1/2) = 1.
    assert _exact_pvalue(2, 2, Fraction(1, 2)) == 1.0
    # n = m = 3, D = 1: 2 of C(6, 3) = 20 orderings.
    assert ks_2samp([1, 2, 3], [4, 5, 6]).pvalue == pytest.approx(0.1)


def test_the_asymptotic_p_value_agrees_with_the_exact_one_for_moderate_samples() -> None:
    rng = random.Random(5)
    a = [rng.gauss(0, 1) for _ in range(60)]
    b = [rng.gauss(0.4, 1) for _ in range(70)]
    exact = ks_2samp(a, b)
    assert exact.n * exact.m <= 10_000
    assert _asymptotic_pvalue(60, 70, exact.statistic) == pytest.approx(exact.pvalue, rel=0.25)


def test_large_samples_from_one_distribution_are_not_told_apart() -> None:
    rng = random.Random(11)
    result = ks_2samp([rng.random() for _ in range(400)], [rng.random() for _ in range(300)])
    assert result.n * result.m > 10_000  # the asymptotic branch
    assert result.pvalue > 0.05


def test_large_samples_from_shifted_distributions_are() -> None:
    rng = random.Random(11)
    result = ks_2samp([rng.random() for _ in range(400)], [rng.random() + 0.2 for _ in range(300)])
    assert result.statistic > 0.15
    assert result.pvalue < 1e-6


def test_percentiles_interpolate_like_numpy() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 99) == pytest.approx(3.97)
