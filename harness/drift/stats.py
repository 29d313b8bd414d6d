"""The statistics drift needs, written out (the kit does not depend on scipy): percentiles and the
two-sample Kolmogorov–Smirnov test.

KS compares two samples' empirical distribution functions: D is the largest vertical gap between them
(0: the same, 1: no overlap at all), a distribution-free effect size; its p-value is the chance of a gap
at least that large if both samples came from one distribution. For small samples (n·m ≤ 10,000) the
p-value is exact, by counting the lattice paths of the two merged samples that stay within the gap
(the method scipy's `ks_2samp(method="exact")` uses for two-sided tests; Hodges 1958, "The significance
probability of the Smirnov two-sample test", Ark. Mat. 3); above that, the asymptotic Kolmogorov
distribution with Stephens' small-sample correction (Stephens 1970, J. R. Stat. Soc. B 32; as in
Numerical Recipes, 3rd ed., §14.3.3).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

_EXACT_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class KsResult:
    statistic: float
    """D: the largest gap between the two empirical distribution functions, in [0, 1]."""
    pvalue: float
    n: int
    m: int


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100), interpolated linearly between order statistics (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ks_2samp(first: Sequence[float], second: Sequence[float]) -> KsResult:
    """The two-sided two-sample KS test."""
    n, m = len(first), len(second)
    if n == 0 or m == 0:
        raise ValueError("the KS test needs two non-empty samples")
    a, b = sorted(first), sorted(second)
    # D is reached at a data point: evaluate both ECDFs just after every value of either sample. Exact
    # fractions, so that ties and equal samples give D exactly 0, and the exact count below its bound.
    gap = max(abs(Fraction(bisect.bisect_right(a, x), n) - Fraction(bisect.bisect_right(b, x), m)) for x in (*a, *b))
    pvalue = _exact_pvalue(n, m, gap) if n * m <= _EXACT_LIMIT else _asymptotic_pvalue(n, m, float(gap))
    return KsResult(float(gap), min(1.0, max(0.0, pvalue)), n, m)


def _exact_pvalue(n: int, m: int, gap: Fraction) -> float:
    """P(D ≥ gap): one minus the share of the C(n+m, n) orderings of the merged samples whose ECDF gap
    stays strictly below `gap` everywhere (a path through the n × m grid, counted row by row)."""
    if gap == 0:
        return 1.0
    # |i/n − j/m| < gap  ⇔  |i·m − j·n| < gap·n·m, all in integers.
    bound = gap * n * m
    row = [1 if abs(j * n) < bound else 0 for j in range(m + 1)]
    for j in range(1, m + 1):
        row[j] = row[j - 1] if row[j] else 0
    for i in range(1, n + 1):
        new = [0] * (m + 1)
        for j in range(m + 1):
            if abs(i * m - j * n) < bound:
                new[j] = row[j] + (new[j - 1] if j else 0)
        row = new
    return 1.0 - row[m] / math.comb(n + m, n)


def _asymptotic_pvalue(n: int, m: int, gap: float) -> float:
    effective = math.sqrt(n * m / (n + m))
    lam = (effective + 0.12 + 0.11 / effective) * gap
    if lam < 0.2:
        return 1.0  # the series converges slowly there, and its value is 1 to many digits
    total = math.fsum((-1.0) ** (k - 1) * math.exp(-2.0 * k * k * lam * lam) for k in range(1, 101))
    return 2.0 * total
