"""The floor: what the mock's per-request features cost on aiohttp with nothing simulated.

Run as `python -m benchmarks.features_server PORT [--sleep SECONDS] [--log]`. The same three routes
as `benchmarks/minimal_server.py` (allocate, infer, release), each doing what the mock does to every
request *except* simulate, each the cheapest way this project knows:

- a bearer key looked up in a dict (the mock: `inputs.authenticate`);
- a request id (the client's `X-Request-Id` if well formed, as the mock takes it), sent back, and a
  journal entry kept in a bounded deque;
- the mock's own metric collectors (`mock_server.api.metrics`): a request counted and timed, and an
  inference's tokens, time to first token and latency observed, as the mock does;
- the body parsed with orjson and validated by the mock's own compiled contract (jsonschema-rs);
- the answer rendered with orjson;
- with `--log`, the mock's access log line (`mock_server.logs.AccessLog`, buffered, written by a thread).

Left out, being the mock's own work rather than serving features: the simulation, fault rules, the
dashboard's latency window, strict-mode response checks.

`make bench` measures the mock against it: the mock's ratio to this server is what its simulation
and the rest of its own work cost, over and above serving the same features at all; this server's
ratio to the bare handler is the most any server with these features can reach on aiohttp.
`--sleep` makes inference wait as the timing baseline does (the timing floor).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import logging
import time
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from benchmarks.minimal_server import ANSWER
from mock_server.api.contract import Contract
from mock_server.api.metrics import E2E_BUCKETS, HTTP_BUCKETS, TTFT_BUCKETS, CountFamily, HistogramFamily
from mock_server.api.state import CLIENT_REQUEST_ID
from mock_server.logs import AccessLog, configure_logging

KEYS = {"dev-key": "dev"}
JOURNAL_SIZE = 1000


def build_app(sleep_s: float = 0.0) -> web.Application:
    contract = Contract.load()
    schemas = {name: contract.operations[name].body for name in ("createAllocation", "createInference")}
    ids, allocation_ids = itertools.count(1), itertools.count(1)
    journal: collections.deque[tuple[str, str, str, int]] = collections.deque(maxlen=JOURNAL_SIZE)
    # The mock's collectors (plain numbers, exposed at scrape time): the cheapest counting there is here.
    requests = CountFamily("requests", "Requests answered", ["operation", "status"])
    latency = HistogramFamily("request_seconds", "Time to answer", ["operation"], HTTP_BUCKETS)
    tokens = CountFamily("tokens", "Tokens", ["model", "kind"])
    ttft = HistogramFamily("ttft_seconds", "Time to first token", ["model"], TTFT_BUCKETS)
    e2e = HistogramFamily("e2e_seconds", "Latency", ["model"], E2E_BUCKETS)

    @web.middleware
    async def features(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        sent = request.headers.get("X-Request-Id")
        request_id = sent if sent is not None and CLIENT_REQUEST_ID.match(sent) else f"req_{next(ids):016x}"
        if KEYS.get(request.headers.get("Authorization", "")[7:]) is None:
            raise web.HTTPUnauthorized()
        response = await handler(request)
        response.headers["X-Request-Id"] = request_id
        operation = request.match_info.route.name or ""
        journal.append((request_id, request.method, request.path, response.status))
        requests.inc((operation, str(response.status)))
        latency.observe((operation,), time.perf_counter() - started)
        return response

    async def valid_body(request: web.Request, operation: str) -> Any:
        body = orjson.loads(await request.read())
        schema = schemas[operation]
        if schema is not None and schema.violations(body, "/body"):
            raise web.HTTPBadRequest()
        return body

    def json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)

    usage: Any = ANSWER["usage"]
    timings: Any = ANSWER["timings"]
    model = str(ANSWER["model"])

    async def inference(request: web.Request) -> web.Response:
        body = await valid_body(request, "createInference")
        if sleep_s:
            await asyncio.sleep(sleep_s)
        tokens.inc((model, "prompt"), usage["prompt_tokens"])
        tokens.inc((model, "completion"), usage["completion_tokens"])
        ttft.observe((model,), timings["ttft_ms"] / 1000)
        e2e.observe((model,), timings["total_ms"] / 1000)
        return json({**ANSWER, "allocation_id": body["allocation_id"]})

    async def allocate(request: web.Request) -> web.Response:
        body = await valid_body(request, "createAllocation")
        allocation_id = f"alloc_{next(allocation_ids):016x}"
        answer = {
            "allocation_id": allocation_id,
            "pool_id": body["pool_id"],
            "state": "active",
            "requirements": body["requirements"],
        }
        return json(answer, 201, {"Location": f"/v1/allocate/{allocation_id}"})

    async def release(request: web.Request) -> web.Response:
        request.match_info["allocation_id"]
        return web.Response(status=204)

    app = web.Application(middlewares=[features])
    app.router.add_post("/v1/inference", inference, name="createInference")
    app.router.add_post("/v1/allocate", allocate, name="createAllocation")
    app.router.add_delete("/v1/allocate/{allocation_id}", release, name="releaseAllocation")
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.features_server")
    parser.add_argument("port", type=int)
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds each inference waits")
    parser.add_argument("--log", action="store_true", help="an access log line per request, as the mock's")
    args = parser.parse_args()
    access_log = None
    if args.log:
        configure_logging("INFO", KEYS)
        access_log = logging.getLogger("aiohttp.access")
    web.run_app(
        build_app(args.sleep),
        host="127.0.0.1",
        port=args.port,
        access_log=access_log,
        access_log_class=AccessLog,
        print=None,
    )


if __name__ == "__main__":
    main()
