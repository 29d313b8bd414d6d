"""The locust capacity benchmark's load: `GET /v1/pools` with the `dev-key` bearer, no wait between
requests, so locust sends as fast as its process can.

Bounded: every user stops after `BENCH_MAX_REQUESTS` requests (default 200,000) and `benchmarks.run`
passes locust `--run-time`. Against 127.0.0.1 only (`--host` is given by `benchmarks.run`).
"""

from __future__ import annotations

import os

from locust import FastHttpUser, constant, task
from locust.exception import StopUser

MAX_REQUESTS = int(os.environ.get("BENCH_MAX_REQUESTS", "200000"))


class PoolsReader(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.sent = 0

    @task
    def list_pools(self) -> None:
        if self.sent >= MAX_REQUESTS:
            raise StopUser()
        self.sent += 1
        self.client.get("/v1/pools", headers={"Authorization": "Bearer dev-key"})
