"""The one middleware: a request id on every response, every error as problem+json, request metrics."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from harness.connector import HostedAiError
from harness.service.keys import METRICS, REQUEST_ID
from harness.service.problems import Problem, from_http, from_upstream, render

log = logging.getLogger("harness.service")

# As HostedAI does: a client's own id is kept when it is 1 to 128 visible ASCII characters.
_CLIENT_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
# The route whose requests are counted (see ServiceMetrics).
COUNTED_ROUTE = "process"
# The status counted for a request whose client disconnected before its answer (nginx's convention).
CLIENT_GONE = 499


def request_id_for(sent: str | None) -> str:
    if sent is not None and _CLIENT_REQUEST_ID.match(sent):
        return sent
    return f"req_{uuid.uuid4().hex[:16]}"


@web.middleware
async def request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request[REQUEST_ID] = request_id_for(request.headers.get("X-Request-Id"))
    started = time.perf_counter()
    response: web.StreamResponse
    try:
        response = await handler(request)
    except Problem as problem:
        response = render(problem, request_id)
    except web.HTTPException as exc:
        response = render(from_http(exc), request_id)
    except HostedAiError as exc:
        log.warning("request %s: HostedAI failed: %s", request_id, exc)
        response = render(from_upstream(exc), request_id)
    except asyncio.CancelledError:
        raise
    except ConnectionError:
        # The client went away (mid-body, or while its answer was being made): nobody to answer.
        # Returned, not raised: aiohttp would log a raised one as an error; this answer is never sent.
        log.info("request %s: the client went away before its answer", request_id)
        response = web.Response(status=CLIENT_GONE)
    except Exception:
        log.exception("request %s: unhandled error", request_id)
        response = render(Problem("internal_error", "The service failed to handle the request."), request_id)
    response.headers["X-Request-Id"] = request_id
    if request.match_info.route.name == COUNTED_ROUTE:
        request.app[METRICS].observe(response.status, time.perf_counter() - started)
    return response
