"""The mock's Prometheus metrics, in a registry of its own per app (several mocks may share a process).

Names follow Prometheus conventions (base units, `_total` counters, `_ratio` in 0–1) with the
`hostedai_sim_` prefix. Pool gauges are read from the simulator at scrape time, so they never drift.
Label values come only from the configuration (pools, models), the contract (operations) and fixed
sets (outcomes, fault actions): whatever a client sends, a name it made up becomes `unknown`, so the
number of series is bounded.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from mock_server.sim.simulator import Simulator

# vLLM's buckets for time to first token and end-to-end latency (vllm/v1/metrics/loggers.py).
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80)
E2E_BUCKETS = (0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 60, 120, 240, 480)
UNKNOWN = "unknown"
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _PoolCollector(Collector):
    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def collect(self) -> Iterator[Metric]:
        families = {
            "tflops": GaugeMetricFamily("hostedai_sim_pool_tflops", "Physical TFLOPS of healthy GPUs", labels=["pool"]),
            "tflops_allocated": GaugeMetricFamily(
                "hostedai_sim_pool_tflops_allocated", "TFLOPS held by active allocations", labels=["pool"]
            ),
            "vram": GaugeMetricFamily("hostedai_sim_pool_vram_bytes", "VRAM of healthy GPUs", labels=["pool"]),
            "vram_allocated": GaugeMetricFamily(
                "hostedai_sim_pool_vram_allocated_bytes", "VRAM held by active allocations", labels=["pool"]
            ),
            "compute_ratio": GaugeMetricFamily(
                "hostedai_sim_pool_compute_utilisation_ratio",
                "Allocated over physical TFLOPS (above 1 when overcommitted)",
                labels=["pool"],
            ),
            "vram_ratio": GaugeMetricFamily(
                "hostedai_sim_pool_vram_utilisation_ratio", "Allocated over physical VRAM", labels=["pool"]
            ),
            "active": GaugeMetricFamily("hostedai_sim_allocations_active", "Active allocations", labels=["pool"]),
        }
        for p in self._sim.pool_stats():
            labels = [p.pool_id]
            families["tflops"].add_metric(labels, p.tflops_total)
            families["tflops_allocated"].add_metric(labels, p.tflops_allocated)
            families["vram"].add_metric(labels, p.vram_mb_total * 1_000_000)
            families["vram_allocated"].add_metric(labels, p.vram_mb_allocated * 1_000_000)
            families["compute_ratio"].add_metric(labels, p.tflops_allocated / p.tflops_total if p.tflops_total else 0)
            families["vram_ratio"].add_metric(labels, p.vram_mb_allocated / p.vram_mb_total if p.vram_mb_total else 0)
            families["active"].add_metric(labels, p.allocations_active)
        yield from families.values()


class CountFamily(Collector):
    """A counter family counted per request as plain numbers, exposed at scrape time.

    prometheus-client's own Counter and Histogram take a lock for every increment and walk a
    histogram's buckets one by one; every inference touched five of them (nine locked increments).
    Here an increment is a dictionary update and an observation a bisect: the event loop is the only
    writer and the scrape runs on it too, so no lock is needed. The text exposed is the same."""

    def __init__(self, name: str, documentation: str, labels: list[str]) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        self.values: dict[tuple[str, ...], float] = {}
        self.created: dict[tuple[str, ...], float] = {}

    def inc(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        value = self.values.get(labels)
        if value is None:
            self.created[labels] = time.time()
            value = 0.0
        self.values[labels] = value + amount

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, value in self.values.items():
            family.add_metric(list(labels), value, created=self.created[labels])
        yield family


class HistogramFamily(Collector):
    """A histogram family kept as bucket counts per label values (see `CountFamily` for why)."""

    def __init__(self, name: str, documentation: str, labels: list[str], buckets: tuple[float, ...]) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        self.bounds = (*buckets, math.inf)
        self.counts: dict[tuple[str, ...], list[int]] = {}
        self.sums: dict[tuple[str, ...], float] = {}
        self.created: dict[tuple[str, ...], float] = {}

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        counts = self.counts.get(labels)
        if counts is None:
            counts = self.counts[labels] = [0] * len(self.bounds)
            self.sums[labels] = 0.0
            self.created[labels] = time.time()
        # The first bucket whose upper bound is at least the value, as Prometheus' `le` means.
        counts[bisect_left(self.bounds, value)] += 1
        self.sums[labels] += value

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, counts in self.counts.items():
            cumulative, buckets = 0, []
            for bound, count in zip(self.bounds, counts, strict=True):
                cumulative += count
                buckets.append((_le(bound), float(cumulative)))
            family.add_metric(list(labels), buckets, self.sums[labels])
            # `HistogramMetricFamily.add_metric` takes no creation time; prometheus-client's Histogram
            # writes one per series, and so does this.
            family.add_sample(f"{self.name}_created", dict(zip(self.labels, labels, strict=True)), self.created[labels])
        yield family


def _le(bound: float) -> str:
    """A bucket bound as prometheus-client writes it (`+Inf`, `0.005`, `1.0`)."""
    return "+Inf" if bound == math.inf else repr(float(bound))


class ServerMetrics:
    def __init__(self, sim: Simulator) -> None:
        self.registry = CollectorRegistry()
        self.requests = CountFamily(
            "hostedai_sim_http_requests", "HTTP requests by operation and status", ["operation", "status"]
        )
        self.request_seconds = HistogramFamily(
            "hostedai_sim_http_request_duration_seconds",
            "Wall time spent answering, by operation",
            ["operation"],
            HTTP_BUCKETS,
        )
        self.allocations = Counter(
            "hostedai_sim_allocations",
            "Allocate outcomes by pool",
            ["pool", "outcome"],
            registry=self.registry,
        )
        self.preemptions = Counter(
            "hostedai_sim_preemptions", "Allocations preempted, by pool", ["pool"], registry=self.registry
        )
        self.faults = Counter(
            "hostedai_sim_faults_injected",
            "Fault rules that fired, by action and operation",
            ["action", "operation"],
            registry=self.registry,
        )
        self.tokens = CountFamily("hostedai_sim_tokens", "Tokens processed, by model and kind", ["model", "kind"])
        self.ttft = HistogramFamily(
            "hostedai_sim_time_to_first_token_seconds", "Simulated time to first token", ["model"], TTFT_BUCKETS
        )
        self.e2e = HistogramFamily(
            "hostedai_sim_e2e_request_latency_seconds",
            "Simulated end-to-end inference latency",
            ["model"],
            E2E_BUCKETS,
        )
        for family in (self.requests, self.request_seconds, self.tokens, self.ttft, self.e2e):
            self.registry.register(family)
        self.registry.register(_PoolCollector(sim))
        self._pools = frozenset(sim.pools)
        self._statuses: dict[int, str] = {}

    def count_allocation(self, pool_id: str, outcome: str) -> None:
        """An allocate's outcome; a pool the config does not name counts as `unknown`."""
        self.allocations.labels(pool_id if pool_id in self._pools else UNKNOWN, outcome).inc()

    def count_request(self, operation: str, status: int, seconds: float) -> None:
        text = self._statuses.get(status)
        if text is None:
            text = self._statuses[status] = str(status)
        self.requests.inc((operation, text))
        self.request_seconds.observe((operation,), seconds)

    def observe_inference(
        self, model: str, prompt_tokens: int, completion_tokens: int, ttft_s: float, e2e_s: float | None
    ) -> None:
        self.tokens.inc((model, "prompt"), prompt_tokens)
        self.tokens.inc((model, "completion"), completion_tokens)
        self.ttft.observe((model,), ttft_s)
        if e2e_s is not None:
            self.e2e.observe((model,), e2e_s)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
