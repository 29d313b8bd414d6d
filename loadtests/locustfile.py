"""HostedAI under load: `HostedAiUser` runs sessions the way an integration does.

    locust -f loadtests/locustfile.py --headless -u 10 -r 5 -t 30s --host http://127.0.0.1:8000

A session (one task) allocates on `--pool` with an `Idempotency-Key` and this run's labels, runs 1 to 5
inferences on it (streamed 1 in 4; prompt lengths and `max_tokens` from loadtests/_workload.py), and
releases it — always, in `finally`. Stats rows: `POST /v1/allocate`, `POST /v1/inference`,
`POST /v1/inference [stream]` (the whole stream: headers to `done`), `DELETE /v1/allocate/[id]`, and
the server's own timings of every inference as `SIM ttft_ms` and `SIM queue_ms`.

The API key is `HOSTED_AI_API_KEY` (default `dev-key`, the mock's); `HOSTED_AI_API_KEYS` (comma-separated)
gives the users several tenants' keys, in turn (docs/cells.md). Options, shapes, SLO gates and the
clean-up that leaves nothing allocated: loadtests/_runtime.py and docs/load.md.
"""

from __future__ import annotations

import codecs
import itertools
import logging
import random
import time
from typing import Any

import gevent
from _runtime import (
    STATE,
    api_keys,
    begin_session,
    describe,
    honour_rate_limit,
    labels,
    record_timings,
    ssl_context_factory,
)
from _sse import SseParser, StreamOutcome
from _workload import Inference, Model, plan_session
from gevent import GreenletExit
from locust import FastHttpUser, between, task
from locust.env import Environment

logger = logging.getLogger("loadtests")

_user_numbers = itertools.count()
_key_numbers = itertools.count()
RELEASE_ATTEMPTS = 5
"""How many times a rate-limited release is tried: each waits out its Retry-After (capped), so a session
that ends on a tight budget still hands its GPUs back."""


class HostedAiUser(FastHttpUser):
    wait_time = between(0.5, 2.0)
    insecure = False
    network_timeout = 60.0
    connection_timeout = 10.0

    def __init__(self, environment: Environment) -> None:
        options = environment.parsed_options
        # FastHttpUser reads these when it builds its client, in super().__init__.
        self.ssl_context_factory = ssl_context_factory(options)
        self.number = next(_user_numbers)
        # Users take the keys in turn: with several tenants' keys, a run spreads over the cells they live in.
        keys = api_keys()
        self.api_key = keys[self.number % len(keys)]
        self.default_headers = {"Authorization": f"Bearer {self.api_key}"}
        super().__init__(environment)
        self.rng = random.Random(f"{getattr(options, 'workload_seed', 0)}:{self.number}")

    @task
    def session(self) -> None:
        if not begin_session(self.environment):
            return
        plan = plan_session(self.rng)
        allocation_id = self._allocate(plan.model)
        if allocation_id is None:
            return
        try:
            for inference in plan.inferences:
                if STATE.stopping or not self._infer(allocation_id, inference):
                    break
        except GreenletExit:
            logger.info("run stopped mid-session: releasing %s", allocation_id)
            raise
        finally:
            self._release(allocation_id)

    def on_stop(self) -> None:
        for allocation_id in STATE.held_by(self):
            self._release(allocation_id)

    def _allocate(self, model: Model) -> str | None:
        options = self.environment.parsed_options
        body = {
            "pool_id": options.pool,
            "requirements": model.requirements(),
            "overcommit": True,
            "ttl_seconds": options.alloc_ttl,
            "labels": labels(options),
        }
        key = f"{options.run_id}-{STATE.process}-{next(_key_numbers)}"
        with self.client.post(
            "/v1/allocate", json=body, headers={"Idempotency-Key": key}, name="/v1/allocate", catch_response=True
        ) as answer:
            if (wait := honour_rate_limit(answer)) is not None:
                gevent.sleep(wait)  # a slowed-down session, not a failed one: it tries again next time
                return None
            if answer.status_code != 201:
                answer.failure(describe(answer))
                return None
            try:
                allocation_id = str(answer.json()["allocation_id"])
            except (ValueError, KeyError, TypeError):
                answer.failure(f"201 without an allocation_id: {(answer.text or '')[:200]}")
                return None
            STATE.hold(allocation_id, self, self.api_key)
            answer.success()
            return allocation_id

    def _infer(self, allocation_id: str, inference: Inference) -> bool:
        """One inference; False when the allocation can no longer be used (the session ends)."""
        if inference.stream:
            return self._infer_streamed(allocation_id, inference)
        with self.client.post(
            "/v1/inference", json=inference.body(allocation_id), name="/v1/inference", catch_response=True
        ) as answer:
            if (wait := honour_rate_limit(answer)) is not None:
                gevent.sleep(wait)
                return True
            if answer.status_code != 200:
                answer.failure(describe(answer))
                return bool(answer.status_code != 409)
            try:
                doc = answer.json()
                timings = {k: float(doc["timings"][k]) for k in ("ttft_ms", "queue_ms")}
                str(doc["output"])
            except (ValueError, KeyError, TypeError):
                answer.failure(f"200 without output and timings: {(answer.text or '')[:200]}")
                return True
            answer.success()
        record_timings(self.environment, timings)
        return True

    def _infer_streamed(self, allocation_id: str, inference: Inference) -> bool:
        started = time.perf_counter()
        with self.client.post(
            "/v1/inference",
            json=inference.body(allocation_id),
            headers={"Accept": "text/event-stream", "Accept-Encoding": "identity"},
            name="/v1/inference [stream]",
            stream=True,
            catch_response=True,
        ) as answer:
            if (wait := honour_rate_limit(answer)) is not None:
                gevent.sleep(wait)
                return True
            if answer.status_code != 200:
                answer.failure(describe(answer))
                return bool(answer.status_code != 409)
            try:
                outcome, length = _read_stream(answer)
            except Exception as exc:  # the connection broke mid-stream: a failed request, not a crash
                answer.failure(f"stream broke: {exc!r}")
                return True
            # Locust timed the headers only; the row is the whole stream, first byte to `done`.
            answer.request_meta["response_time"] = (time.perf_counter() - started) * 1000
            answer.request_meta["response_length"] = length
            problem = outcome.problem()
            if problem:
                answer.failure(problem)
                return outcome.error is None or outcome.error.get("status") != 409
            answer.success()
        assert outcome.done is not None
        record_timings(self.environment, outcome.done["timings"])
        return True

    def _release(self, allocation_id: str) -> None:
        # A release the target rate-limits is waited out and tried again (a bounded number of times): giving
        # up on a 429 would leak the allocation, which is the client bug the leak check exists to catch.
        for _attempt in range(RELEASE_ATTEMPTS):
            with self.client.delete(
                f"/v1/allocate/{allocation_id}", name="/v1/allocate/[id]", catch_response=True
            ) as answer:
                if (wait := honour_rate_limit(answer)) is not None:
                    gevent.sleep(wait)
                    continue
                if answer.status_code == 204:
                    STATE.released(allocation_id)
                    answer.success()
                    return
                if answer.status_code == 404:
                    STATE.released(allocation_id)  # not ours to release any more: nothing left to retry
                answer.failure(describe(answer))
                return


def _read_stream(answer: Any) -> tuple[StreamOutcome, int]:
    parser, outcome, length = SseParser(), StreamOutcome(), 0
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for chunk in answer.iter_content(chunk_size=4096, decode_content=False):
        length += len(chunk)
        outcome.add(parser.feed(decoder.decode(chunk)))
    outcome.add(parser.feed(decoder.decode(b"", final=True)))
    return outcome, length
