"""The mock's Prometheus metrics, in a registry of its own per app (several mocks may share a process).

Names follow Prometheus conventions (base units, `_total` counters, `_ratio` in 0–1) with the
`hostedai_sim_` prefix. Pool gauges are read from the simulator at scrape time, so they never drift.
Label values come only from the configuration (pools, models), the contract (operations) and fixed
sets (outcomes, fault actions): whatever a client sends, a name it made up becomes `unknown`, so the
number of series is bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
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


class ServerMetrics:
    def __init__(self, sim: Simulator) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hostedai_sim_http_requests",
            "HTTP requests by operation and status",
            ["operation", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "hostedai_sim_http_request_duration_seconds",
            "Wall time spent answering, by operation",
            ["operation"],
            buckets=HTTP_BUCKETS,
            registry=self.registry,
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
        self.tokens = Counter(
            "hostedai_sim_tokens", "Tokens processed, by model and kind", ["model", "kind"], registry=self.registry
        )
        self.ttft = Histogram(
            "hostedai_sim_time_to_first_token_seconds",
            "Simulated time to first token",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        )
        self.e2e = Histogram(
            "hostedai_sim_e2e_request_latency_seconds",
            "Simulated end-to-end inference latency",
            ["model"],
            buckets=E2E_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_PoolCollector(sim))
        self._pools = frozenset(sim.pools)
        self._request_children: dict[tuple[str, int], Any] = {}
        self._duration_children: dict[str, Any] = {}
        self._model_children: dict[str, tuple[Any, Any, Any, Any]] = {}

    def count_allocation(self, pool_id: str, outcome: str) -> None:
        """An allocate's outcome; a pool the config does not name counts as `unknown`."""
        self.allocations.labels(pool_id if pool_id in self._pools else UNKNOWN, outcome).inc()

    def count_request(self, operation: str, status: int, seconds: float) -> None:
        # `.labels()` takes a lock and builds a key on every call; the request path caches the children.
        key = (operation, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(operation, str(status))
        counter.inc()
        histogram = self._duration_children.get(operation)
        if histogram is None:
            histogram = self._duration_children[operation] = self.request_seconds.labels(operation)
        histogram.observe(seconds)

    def observe_inference(
        self, model: str, prompt_tokens: int, completion_tokens: int, ttft_s: float, e2e_s: float | None
    ) -> None:
        children = self._model_children.get(model)
        if children is None:
            children = self._model_children[model] = (
                self.tokens.labels(model, "prompt"),
                self.tokens.labels(model, "completion"),
                self.ttft.labels(model),
                self.e2e.labels(model),
            )
        prompt, completion, ttft, e2e = children
        prompt.inc(prompt_tokens)
        completion.inc(completion_tokens)
        ttft.observe(ttft_s)
        if e2e_s is not None:
            e2e.observe(e2e_s)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
