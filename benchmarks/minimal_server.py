"""The baseline: the least an aiohttp server can do on the mock's hot paths (parse JSON, answer JSON).

Run as `python -m benchmarks.minimal_server PORT [--sleep SECONDS | --bare]`. No validation, no
simulation, no auth: what the mock is measured against.

- `POST /v1/allocate` answers 201 with a fresh allocation id, `DELETE /v1/allocate/{id}` 204: with
  `POST /v1/inference` they make the full allocate → infer → release cycle.
- `POST /v1/inference` answers at once, or after `await asyncio.sleep(SECONDS)` with `--sleep`: the
  timing-fidelity baseline, the least a server that waits a configured latency can add to it.
- `GET /v1/pools` answers a fixed pool list (the locust capacity baseline).
- `--bare`: `POST /v1/inference` answers a fixed JSON body without reading the request's: the least an
  aiohttp handler can do at all (the throughput bar of the inference path is half of it).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json

from aiohttp import web

ANSWER = {
    "inference_id": "inf_0000000000000000",
    "allocation_id": "alloc_0000000000000000",
    "model": "gemma-270m",
    "output": " the GPU pool answers fast",
    "finish_reason": "length",
    "usage": {"prompt_tokens": 8, "completion_tokens": 16, "total_tokens": 24},
    "timings": {"queue_ms": 0.0, "ttft_ms": 12.0, "total_ms": 87.0},
}

POOLS = {
    "pools": [
        {
            "pool_id": "gpu-pool-1",
            "gpu_type": "H100-80GB",
            "gpus": 8,
            "tflops_total": 7912.0,
            "tflops_allocated": 0.0,
            "vram_mb_total": 655360,
            "vram_mb_allocated": 0,
            "overcommit_ratio": 2.0,
            "allocations_active": 0,
            "price_per_tflops_hour": 0.003,
        }
    ]
}


ANSWER_BYTES = json.dumps(ANSWER).encode()


def build_app(sleep_s: float = 0.0, bare: bool = False) -> web.Application:
    ids = itertools.count(1)

    async def fixed(request: web.Request) -> web.Response:
        return web.Response(body=ANSWER_BYTES, content_type="application/json")

    async def inference(request: web.Request) -> web.Response:
        body = await request.json()
        if sleep_s:
            await asyncio.sleep(sleep_s)
        return web.json_response({**ANSWER, "allocation_id": body["allocation_id"]})

    async def allocate(request: web.Request) -> web.Response:
        body = await request.json()
        allocation_id = f"alloc_{next(ids):016x}"
        answer = {
            "allocation_id": allocation_id,
            "pool_id": body["pool_id"],
            "state": "active",
            "requirements": body["requirements"],
        }
        return web.json_response(answer, status=201, headers={"Location": f"/v1/allocate/{allocation_id}"})

    async def release(request: web.Request) -> web.Response:
        request.match_info["allocation_id"]
        return web.Response(status=204)

    async def pools(request: web.Request) -> web.Response:
        return web.json_response(POOLS)

    app = web.Application()
    app.router.add_post("/v1/inference", fixed if bare else inference)
    app.router.add_post("/v1/allocate", allocate)
    app.router.add_delete("/v1/allocate/{allocation_id}", release)
    app.router.add_get("/v1/pools", pools)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.minimal_server")
    parser.add_argument("port", type=int)
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds each inference waits")
    parser.add_argument("--bare", action="store_true", help="inference answers a fixed body, unread request")
    args = parser.parse_args()
    web.run_app(build_app(args.sleep, args.bare), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
