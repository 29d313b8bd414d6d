"""TTFT and ITL of answered inferences, over time and as histograms, in constant memory.

A ring of `bins` time bins, each `bin_s` real seconds wide, holds per bin a count and two fixed
histograms (log-spaced buckets shared by TTFT and ITL). Observing is O(1); a view is O(bins × buckets)
whatever the traffic, and the bins are on the observer's clock (injected), so a locust run's latency
shows as it happens even when the simulator's clock is manual or scaled. Latencies themselves are
simulated ones, as the API reports them in `timings`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Bucket upper bounds in ms: five per decade from 1 ms to 100 s; one more bucket holds what is above.
EDGES_MS: tuple[float, ...] = tuple(round(10 ** (k / 5), 3) for k in range(26))
_BUCKETS = len(EDGES_MS) + 1
_SERIES = ("count", "ttft_p50_ms", "ttft_p95_ms", "itl_p50_ms", "itl_p95_ms")


def bucket_of(ms: float) -> int:
    """The index of the bucket holding `ms`: the first whose upper bound is at least `ms`."""
    return bisect.bisect_left(EDGES_MS, ms)


def quantile_ms(counts: list[int], q: float) -> float | None:
    """The q-quantile of a bucketed sample, interpolated inside its bucket as Prometheus's
    `histogram_quantile` does (the top bucket answers its lower bound); None when empty."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index == len(EDGES_MS):
                return EDGES_MS[-1]
            lower = EDGES_MS[index - 1] if index else 0.0
            return round(lower + (EDGES_MS[index] - lower) * (rank - seen) / count, 3)
        seen += count
    return EDGES_MS[-1]


@dataclass(slots=True)
class _Bin:
    slot: int = -1
    count: int = 0
    ttft: list[int] = field(default_factory=lambda: [0] * _BUCKETS)
    itl: list[int] = field(default_factory=lambda: [0] * _BUCKETS)

    def restart(self, slot: int) -> None:
        self.slot, self.count = slot, 0
        self.ttft[:] = [0] * _BUCKETS
        self.itl[:] = [0] * _BUCKETS


class LatencyWindow:
    def __init__(self, now: Callable[[], float], *, bins: int = 120, bin_s: float = 1.0) -> None:
        self._now = now
        self.bin_s = bin_s
        self._bins = [_Bin() for _ in range(bins)]
        self.observed = 0
        """Inferences observed since start (or `clear`)."""

    def _slot(self) -> int:
        return math.floor(self._now() / self.bin_s)

    def observe(self, ttft_s: float, itl_s: float | None) -> None:
        """One answered inference; `itl_s` is None when it produced fewer than two tokens."""
        slot = self._slot()
        current = self._bins[slot % len(self._bins)]
        if current.slot != slot:
            current.restart(slot)
        current.count += 1
        current.ttft[bucket_of(ttft_s * 1000)] += 1
        if itl_s is not None:
            current.itl[bucket_of(itl_s * 1000)] += 1
        self.observed += 1

    def clear(self) -> None:
        for b in self._bins:
            b.restart(-1)
        self.observed = 0

    def view(self) -> dict[str, Any]:
        """The window, oldest bin first: per bin the count and the TTFT and ITL p50 and p95 (ms, null
        for an empty bin), as parallel arrays; and the histograms of the whole window."""
        newest = self._slot()
        n = len(self._bins)
        ttft_total, itl_total = [0] * _BUCKETS, [0] * _BUCKETS
        series: dict[str, list[Any]] = {k: [] for k in _SERIES}
        for slot in range(newest - n + 1, newest + 1):
            b = self._bins[slot % n]
            live = b.slot == slot
            series["count"].append(b.count if live else 0)
            for name, counts in (("ttft", b.ttft), ("itl", b.itl)):
                series[f"{name}_p50_ms"].append(quantile_ms(counts, 0.5) if live else None)
                series[f"{name}_p95_ms"].append(quantile_ms(counts, 0.95) if live else None)
            if live:
                ttft_total = [a + c for a, c in zip(ttft_total, b.ttft, strict=True)]
                itl_total = [a + c for a, c in zip(itl_total, b.itl, strict=True)]
        return {
            "bin_s": self.bin_s,
            "observed": self.observed,
            "series": series,
            "edges_ms": list(EDGES_MS),
            "ttft_histogram": ttft_total,
            "itl_histogram": itl_total,
            "ttft_p50_ms": quantile_ms(ttft_total, 0.5),
            "ttft_p95_ms": quantile_ms(ttft_total, 0.95),
            "itl_p50_ms": quantile_ms(itl_total, 0.5),
            "itl_p95_ms": quantile_ms(itl_total, 0.95),
        }
