"""The mock's own metrics (`mock_server/api/metrics.py`): counted as plain numbers on the request path,
they must read on `/metrics` exactly as prometheus-client's Counter and Histogram would have them."""

from __future__ import annotations

import math
import re

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from mock_server.api.metrics import E2E_BUCKETS, HTTP_BUCKETS, TTFT_BUCKETS, ServerMetrics
from mock_server.config import default_config
from mock_server.sim.clock import ManualClock
from mock_server.sim.simulator import Simulator


def _series(text: bytes, prefixes: tuple[str, ...]) -> list[str]:
    """The samples (and their HELP and TYPE lines) of the named families; creation times masked (the
    series must be there, their clocks differ)."""
    return [
        re.sub(r"(_created\{.*\}) \S+$", r"\1 <time>", line)
        for line in text.decode().splitlines()
        if any(prefix in line for prefix in prefixes)
    ]


def test_request_and_inference_metrics_read_as_prometheus_clients_own_would() -> None:
    ours = ServerMetrics(Simulator(default_config(), ManualClock(), seed=1))
    registry = CollectorRegistry()
    requests = Counter(
        "hostedai_sim_http_requests",
        "HTTP requests by operation and status",
        ["operation", "status"],
        registry=registry,
    )
    seconds = Histogram(
        "hostedai_sim_http_request_duration_seconds",
        "Wall time spent answering, by operation",
        ["operation"],
        buckets=HTTP_BUCKETS,
        registry=registry,
    )
    tokens = Counter("hostedai_sim_tokens", "Tokens processed, by model and kind", ["model", "kind"], registry=registry)
    ttft = Histogram(
        "hostedai_sim_time_to_first_token_seconds",
        "Simulated time to first token",
        ["model"],
        buckets=TTFT_BUCKETS,
        registry=registry,
    )
    e2e = Histogram(
        "hostedai_sim_e2e_request_latency_seconds",
        "Simulated end-to-end inference latency",
        ["model"],
        buckets=E2E_BUCKETS,
        registry=registry,
    )
    # Values on bucket bounds (a bound is `le`: inclusive), between them, above the last and zero.
    durations = [0.0, 0.0005, 0.0004, 0.001, 0.3, 60.0, 61.0, 0.02]
    for i, duration in enumerate(durations):
        operation, status = ("createInference", 200) if i % 3 else ("createAllocation", 503)
        ours.count_request(operation, status, duration)
        requests.labels(operation, str(status)).inc()
        seconds.labels(operation).observe(duration)
        model = "gemma-270m" if i % 2 else "qwen-30b"
        e2e_s = None if i == 4 else duration * 3
        ours.observe_inference(model, 7 + i, 16, duration, e2e_s)
        tokens.labels(model, "prompt").inc(7 + i)
        tokens.labels(model, "completion").inc(16)
        ttft.labels(model).observe(duration)
        if e2e_s is not None:
            e2e.labels(model).observe(e2e_s)
    families = ("hostedai_sim_http_request", "hostedai_sim_tokens", "hostedai_sim_time_to_first", "hostedai_sim_e2e")
    expected = _series(generate_latest(registry), families)
    assert len(expected) > 40
    assert _series(ours.exposition(), families) == expected


def test_every_counted_series_says_when_it_was_created() -> None:
    ours = ServerMetrics(Simulator(default_config(), ManualClock(), seed=1))
    ours.count_request("createInference", 200, 0.01)
    created = [
        line
        for line in ours.exposition().decode().splitlines()
        if line.startswith("hostedai_sim_http_requests_created")
    ]
    assert len(created) == 1
    assert math.isfinite(float(created[0].rsplit(" ", 1)[1]))
