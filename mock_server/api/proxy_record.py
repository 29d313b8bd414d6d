"""The fault proxy's `--record FILE`: the upstream's answers, as a drift trace (one record per forwarded
request), for `hostedai-mock calibrate` to fit profiles to real traffic.

What is recorded is what the upstream answered, before any fault spoilt it: the trace describes the
service, not the proxy's misbehaviour (a request a before-phase fault answered was never forwarded, and
has no record). Bodies are kept as their shape only, like `hostedai-harness record` keeps them; no key,
prompt or output is written. A record's pool, model and GPU type are learnt from the traffic itself: a
pool's GPU type from the catalogue answers that passed through, an allocation's pool and model from the
allocate or status answer that named it.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mock_server.calibrate.shape import shape
from mock_server.calibrate.tracefile import proxy_header, write_line


@dataclass(slots=True)
class Exchange:
    """One forwarded request as the upstream answered it."""

    operation: str
    method: str
    request_body: bytes
    started: float
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    """A plain answer's body; None for an event stream."""
    done: dict[str, Any] | None = None
    """An event stream's `done` event."""
    token_times: list[float] = field(default_factory=list)
    ended: float = 0.0
    transport_error: str | None = None


def _json(raw: bytes | None) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _ms(seconds: float) -> float:
    return round(max(0.0, seconds) * 1000.0, 3)


class ProxyRecorder:
    def __init__(self, path: Path, upstream: str, clock: Any = time.perf_counter) -> None:
        self._clock = clock
        self._start = clock()
        self._seq = 0
        self._gpu_types: dict[str, str] = {}
        self._allocations: dict[str, tuple[str, str]] = {}
        self._stream: IO[str] = path.open("w", encoding="utf-8")
        write_line(self._stream, proxy_header(upstream))

    def now(self) -> float:
        return float(self._clock())

    def close(self) -> None:
        self._stream.close()

    def _learn(self, body: Any) -> None:
        if not isinstance(body, dict):
            return
        for pool in body.get("pools", []) if isinstance(body.get("pools"), list) else [body]:
            if (
                isinstance(pool, dict)
                and isinstance(pool.get("pool_id"), str)
                and isinstance(pool.get("gpu_type"), str)
            ):
                self._gpu_types[pool["pool_id"]] = pool["gpu_type"]
        if isinstance(body.get("allocation_id"), str) and isinstance(body.get("pool_id"), str):
            self._allocations[body["allocation_id"]] = (body["pool_id"], str(body.get("model")))

    def _cell(self, exchange: Exchange, answer: Any) -> tuple[str | None, str | None]:
        asked = _json(exchange.request_body)
        allocation_id = asked.get("allocation_id") if isinstance(asked, dict) else None
        if isinstance(allocation_id, str) and allocation_id in self._allocations:
            return self._allocations[allocation_id]
        if isinstance(answer, dict) and isinstance(answer.get("pool_id"), str):
            return answer["pool_id"], answer.get("model") if isinstance(answer.get("model"), str) else None
        return None, None

    def record(self, exchange: Exchange) -> None:
        answer = _json(exchange.body) if exchange.body is not None else exchange.done
        self._learn(answer)
        pool_id, model = self._cell(exchange, answer)
        status = exchange.status
        timings: dict[str, Any] = {"total_ms": _ms(exchange.ended - exchange.started)}
        if exchange.token_times:
            times = [t - exchange.started for t in exchange.token_times]
            timings["ttft_ms"] = _ms(times[0])
            timings["itl_ms"] = [_ms(b - a) for a, b in itertools.pairwise(times)]
        if isinstance(answer, dict):
            reported = answer.get("timings")
            if isinstance(reported, dict):
                kept = {
                    k: float(reported[k])
                    for k in ("queue_ms", "ttft_ms", "total_ms", "tpot_ms")
                    if isinstance(reported.get(k), int | float) and reported[k] >= 0
                }
                if kept:
                    timings["reported"] = kept
            usage = answer.get("usage")
            if isinstance(usage, dict):
                for key in ("prompt_tokens", "completion_tokens"):
                    if isinstance(usage.get(key), int) and usage[key] >= 0:
                        timings[key] = usage[key]
        code = answer.get("code") if isinstance(answer, dict) and (status or 0) >= 400 else None
        replayed = exchange.headers.get("Idempotent-Replayed")
        retry_after = exchange.headers.get("Retry-After")
        line = {
            "kind": "request",
            "seq": self._seq,
            "t": round(exchange.started - self._start, 6),
            "step": "proxy",
            "operation": exchange.operation,
            "method": exchange.method,
            "status": status,
            "error_code": code if isinstance(code, str) else None,
            "transport_error": exchange.transport_error,
            "headers": {
                "content_type": exchange.headers.get("Content-Type", "").split(";")[0].strip() or None,
                "request_id": "X-Request-Id" in exchange.headers,
                "location": "Location" in exchange.headers,
                "retry_after": float(retry_after) if retry_after and retry_after.isdigit() else None,
                "idempotent_replayed": None if replayed is None else replayed.lower() == "true",
            },
            "shape": shape({"done": answer} if exchange.done is not None else answer) if answer is not None else None,
            "timings": timings,
            "pool_id": pool_id,
            "model": model,
            "gpu_type": self._gpu_types.get(pool_id) if pool_id else None,
        }
        self._seq += 1
        write_line(self._stream, line)
