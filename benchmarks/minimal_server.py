"""The baseline: the least an aiohttp server can do on the inference path (parse JSON, answer JSON).

Run as `python -m benchmarks.minimal_server PORT`. No validation, no simulation: what the mock is
measured against.
"""

from __future__ import annotations

import sys

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


async def inference(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({**ANSWER, "allocation_id": body["allocation_id"]})


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/inference", inference)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
