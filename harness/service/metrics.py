"""The service's own Prometheus metrics, next to the connector's in one registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# Requests wait for a whole inference: up to minutes for a long completion on a busy GPU.
_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class ServiceMetrics:
    """Counts `/v2/process` requests only: health probes and scrapes would drown the real traffic."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "harpoon_requests", "Requests to /v2/process by HTTP status", ["status"], registry=registry
        )
        self.duration = Histogram(
            "harpoon_request_duration_seconds",
            "Time to answer a /v2/process request",
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.fallbacks = Counter(
            "harpoon_fallbacks",
            "Requests answered with a fallback because HostedAI's circuit was open",
            registry=registry,
        )

    def observe(self, status: int, seconds: float) -> None:
        self.requests.labels(str(status)).inc()
        self.duration.observe(seconds)
