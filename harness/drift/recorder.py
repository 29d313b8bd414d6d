"""Recording what the connector sends and gets, request by request, without changing the connector.

The probe drives the real `HostedAiConnector` (retries, idempotent allocate, guaranteed release) over an
`aiohttp.ClientSession` given this recorder's trace hooks: every wire attempt, retries and the
connector's own clean-up calls included, becomes one record. Which probe step a request belongs to (and
its pool, model, GPU type) is read from a context variable the probe sets around each call, so a record
made inside the connector's background clean-up still names the step that caused it.

What is kept of an answer is chosen for drift and for privacy: status, problem `code`, the headers that
matter as presence or value, the body's shape, timings. Never a key, a prompt or an output.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp

from harness.drift.operations import operation_id
from harness.drift.shape import shape


@dataclass(frozen=True, slots=True)
class Step:
    """What the probe is doing: the key records are compared by, and the cell it runs in."""

    name: str
    pool_id: str | None = None
    model: str | None = None
    gpu_type: str | None = None


_UNLABELLED = Step("unlabelled")
_STEP: contextvars.ContextVar[Step | None] = contextvars.ContextVar("hostedai_drift_step", default=None)


def _current() -> Step:
    return _STEP.get() or _UNLABELLED


def _ms(seconds: float) -> float:
    return round(max(0.0, seconds) * 1000.0, 3)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare, and not a number of seconds to compare


class Recorder:
    """Collects one record per request sent through `session()`; `records` in the order sent."""

    def __init__(self, clock: Any = time.perf_counter) -> None:
        self._clock = clock
        self._start = clock()
        self.records: list[dict[str, Any]] = []
        operation_id("GET", "/")  # the contract is read now, not inside the first request's timing

    @contextlib.contextmanager
    def step(self, name: str, **cell: str | None) -> Iterator[Step]:
        step = Step(name, **cell)
        token = _STEP.set(step)
        try:
            yield step
        finally:
            _STEP.reset(token)

    def trace_config(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()
        config.on_request_start.append(self._on_start)
        config.on_request_end.append(self._on_end)
        config.on_response_chunk_received.append(self._on_body)
        config.on_request_exception.append(self._on_exception)
        return config

    # ---- the hooks: aiohttp calls them with a per-request namespace ---------------------------------

    async def _on_start(self, _: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
        step = _current()
        ctx.started = self._clock()
        ctx.record = {
            "kind": "request",
            "seq": len(self.records),
            "t": round(ctx.started - self._start, 6),
            "step": step.name,
            "operation": operation_id(params.method, params.url.path),
            "method": params.method.upper(),
            "status": None,
            "error_code": None,
            "transport_error": None,
            "headers": {
                "content_type": None,
                "request_id": False,
                "location": False,
                "retry_after": None,
                "idempotent_replayed": None,
            },
            "shape": None,
            "timings": {"total_ms": 0.0},
            "pool_id": step.pool_id,
            "model": step.model,
            "gpu_type": step.gpu_type,
        }
        self.records.append(ctx.record)

    async def _on_end(self, _: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
        record, headers = ctx.record, params.response.headers
        record["status"] = params.response.status
        record["timings"]["total_ms"] = _ms(self._clock() - ctx.started)
        replayed = headers.get("Idempotent-Replayed")
        record["headers"] = {
            "content_type": params.response.content_type if "Content-Type" in headers else None,
            "request_id": "X-Request-Id" in headers,
            "location": "Location" in headers,
            "retry_after": _retry_after(headers.get("Retry-After")),
            "idempotent_replayed": None if replayed is None else replayed.lower() == "true",
        }

    async def _on_body(self, _: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
        record = ctx.record
        record["timings"]["total_ms"] = _ms(self._clock() - ctx.started)
        try:
            body = json.loads(params.chunk) if params.chunk else None
        except ValueError:
            body = None
        record["shape"] = shape(body) if body is not None else None
        if isinstance(body, dict):
            code = body.get("code")
            record["error_code"] = code if isinstance(code, str) and (record["status"] or 0) >= 400 else None
            _take_timings(record["timings"], body)

    async def _on_exception(self, _: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
        ctx.record["transport_error"] = type(params.exception).__name__
        ctx.record["timings"]["total_ms"] = _ms(self._clock() - ctx.started)

    # ---- what only the probe knows: a stream's token times ----------------------------------------

    def stream_seen(self, *, ttft_s: float, token_times_s: list[float], done: Mapping[str, Any]) -> None:
        """Adds a stream's client-side timings and its `done` event to the stream's record (the last
        createInference of the current step answered as an event stream)."""
        step = _current().name
        for record in reversed(self.records):
            if (
                record["step"] == step
                and record["operation"] == "createInference"
                and record["headers"]["content_type"] == "text/event-stream"
            ):
                timings = record["timings"]
                timings["ttft_ms"] = _ms(ttft_s)
                timings["itl_ms"] = [_ms(b - a) for a, b in itertools.pairwise(token_times_s)]
                timings["total_ms"] = _ms(token_times_s[-1] if token_times_s else ttft_s)
                # The connector parsed the events; the shape of `done` stands for the stream's.
                record["shape"] = shape({"done": dict(done)})
                _take_timings(timings, dict(done))
                return


def _take_timings(timings: dict[str, Any], body: Mapping[str, Any]) -> None:
    """The server's own account of an inference (`timings`, `usage`), when it gives one."""
    reported = body.get("timings")
    if isinstance(reported, dict):
        kept = {
            key: float(reported[key])
            for key in ("queue_ms", "ttft_ms", "total_ms", "tpot_ms")
            if isinstance(reported.get(key), int | float) and reported[key] >= 0
        }
        if kept:
            timings["reported"] = kept
    usage = body.get("usage")
    if isinstance(usage, dict):
        for key in ("prompt_tokens", "completion_tokens"):
            if isinstance(usage.get(key), int) and usage[key] >= 0:
                timings[key] = usage[key]
