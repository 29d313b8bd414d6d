"""The connector's Prometheus metrics, with the integration guide's names and labels."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300)


class ConnectorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = REGISTRY if registry is None else registry
        self.registry = registry
        self.allocations = Counter(
            "hosted_ai_allocations", "GPU allocations obtained", ["pool", "model"], registry=registry
        )
        self.allocation_seconds = Histogram(
            "hosted_ai_allocation_duration_seconds",
            "Time to acquire GPU resources, retries included",
            ["pool"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.inference_seconds = Histogram(
            "hosted_ai_inference_duration_seconds",
            "End-to-end inference latency seen by the client",
            ["model"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "hosted_ai_errors", "Errors by type and operation", ["type", "operation"], registry=registry
        )
        self.retries = Counter(
            "hosted_ai_retries",
            "Retries by operation and the error that caused them",
            ["operation", "type"],
            registry=registry,
        )
        self.releases_pending = Gauge(
            "hosted_ai_releases_pending",
            "Allocations whose release failed and is being retried in the background",
            registry=registry,
        )
        self.releases_abandoned = Counter(
            "hosted_ai_releases_abandoned",
            "Releases given up after the background retries (close() tries them once more)",
            registry=registry,
        )
        self.circuit_state = Gauge(
            "hosted_ai_circuit_state",
            "Circuit breaker state per base URL: 0 closed, 1 half-open, 2 open",
            ["base_url"],
            registry=registry,
        )
