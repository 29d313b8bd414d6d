"""Harpoon's `/v2/process` service under load: `HarpoonUser` sends simple and complex texts.

    locust -f loadtests/harpoon_locustfile.py --headless -u 5 -r 5 -t 30s --host http://127.0.0.1:8080

Three simple texts to one complex one. Rows: `POST /v2/process (simple)` and `POST /v2/process
(complex)` (what was sent; the service classifies by itself), plus HostedAI's timings of each answer as
`SIM ttft_ms` and `SIM queue_ms`. An answer with `fallback: true` (Harpoon's circuit to HostedAI is
open) is a failure: the request was not served. The service holds and releases the allocations itself;
the HostedAI key is the service's (`HOSTED_AI_API_KEY` in its environment), not this file's.

Request batching (the service's `batching:`), from each answer's `batch`: `SIM allocations_per_request`
(1 for a request alone, 1/n for one of n sharing an allocation: the row's average is the allocations
made per request served) and `SIM batch_wait_ms` (what waiting for a batch added to a batched request).
Both are summed up in one line at the end of the run.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from _runtime import SIM, describe, record_figure, record_timings, ssl_context_factory
from _workload import harpoon_text
from locust import FastHttpUser, between, events, task
from locust.env import Environment
from locust.runners import WorkerRunner

ALLOCATIONS_PER_REQUEST = "allocations_per_request"
BATCH_WAIT_MS = "batch_wait_ms"

_user_numbers = itertools.count()


class HarpoonUser(FastHttpUser):
    wait_time = between(0.5, 2.0)
    insecure = False
    network_timeout = 120.0
    connection_timeout = 10.0

    def __init__(self, environment: Environment) -> None:
        options = environment.parsed_options
        self.ssl_context_factory = ssl_context_factory(options)
        super().__init__(environment)
        self.rng = random.Random(f"harpoon:{getattr(options, 'workload_seed', 0)}:{next(_user_numbers)}")

    @task(3)
    def simple(self) -> None:
        self._process("simple")

    @task(1)
    def complex(self) -> None:
        self._process("complex")

    def _process(self, label: str) -> None:
        body = {"text": harpoon_text(self.rng, label), "deployment": "HostedAI"}
        with self.client.post("/v2/process", json=body, name=f"/v2/process ({label})", catch_response=True) as answer:
            if answer.status_code != 200:
                answer.failure(describe(answer))
                return
            try:
                doc = answer.json()
                fallback, reason, timings = bool(doc["fallback"]), doc.get("reason"), doc["timings"]
                batch = doc.get("batch")
                shared_by = int(batch["size"]) if batch else 1
            except (ValueError, KeyError, TypeError):
                answer.failure(f"200 that is not a ProcessResult: {(answer.text or '')[:200]}")
                return
            if fallback or timings is None:
                answer.failure(f"fallback: {reason}")
                return
            answer.success()
        record_timings(self.environment, timings)
        record_figure(self.environment, ALLOCATIONS_PER_REQUEST, 1 / shared_by)
        if batch:
            record_figure(self.environment, BATCH_WAIT_MS, float(batch["wait_ms"]))


@events.quitting.add_listener
def _batching_summary(environment: Environment, **_kw: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return  # the master has every worker's rows
    served = environment.stats.entries.get((ALLOCATIONS_PER_REQUEST, SIM))
    if served is None or not served.num_requests:
        return
    line = f"Harpoon batching: {served.avg_response_time:.3f} allocations per request ({served.num_requests} served)"
    waits = environment.stats.entries.get((BATCH_WAIT_MS, SIM))
    if waits is not None and waits.num_requests:
        p50, p95 = waits.get_response_time_percentile(0.5), waits.get_response_time_percentile(0.95)
        line += f"; batching added p50 {p50:g} ms, p95 {p95:g} ms to the {waits.num_requests} batched"
    print(line, flush=True)
