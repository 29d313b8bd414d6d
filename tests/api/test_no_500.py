"""No input gets a 500: generated requests to every operation of both contracts (the public API and the
control plane), with edge-value numbers, any bytes in any header, and bodies built from the contract's
own examples with their leaves replaced, removed or added to. Sent as raw bytes over a socket to the
mock served as `hostedai-mock` serves it, so even what aiohttp itself refuses is covered; in strict
mode, so an answer the contract does not document (a status, a body) is a 500 too.

An answer must be a well-formed HTTP response below 500 (503 `capacity_exhausted` aside, a valid
answer to a valid allocate on a full pool), and nothing may be logged as an unhandled error."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mock_server import serving
from mock_server.api.admin_auth import AdminGate
from mock_server.api.app import create_app
from mock_server.api.contract import Contract
from mock_server.api.state import STATE
from mock_server.cli import connection_limits, protocol_problem
from mock_server.resources import ADMIN_CONTRACT
from mock_server.sim.simulator import AllocationSpec
from tests.conftest import config_with

API_KEY = "dev-key"
ADMIN_TOKEN = "dev-admin"


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    path: str
    params: tuple[tuple[str, str], ...]
    """(location, name) of each declared parameter."""
    examples: tuple[Any, ...]
    """Request bodies from the contract's examples (empty: the operation takes no body)."""


def _operations() -> list[Operation]:
    found = []
    for contract in (Contract.load(), Contract.load(ADMIN_CONTRACT)):
        for path, item in contract.spec["paths"].items():
            shared = item.get("parameters", [])
            for method, op in item.items():
                if method == "parameters":
                    continue
                params = tuple((p["in"], p["name"]) for p in (*shared, *op.get("parameters", [])) if "in" in p)
                content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
                examples = [content["example"]] if "example" in content else []
                examples += [e["value"] for e in content.get("examples", {}).values() if "value" in e]
                if content and not examples:
                    examples = [{}]
                found.append(Operation(op["operationId"], method.upper(), path, params, tuple(examples)))
    return found


OPERATIONS = _operations()

# Numbers at the edges: zero and signs, integer-valued floats, the 32/53/64-bit limits, the float
# range's ends, and beyond what orjson reads (a JSON number has no limit).
EDGE_NUMBERS: list[int | float] = [
    0, -0.0, 1, -1, 2.0, 2048.0, 0.5, 1e-300, 5e-324, 1e308, -1e308, 1.7976931348623157e308,
    2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30,
]  # fmt: skip
EDGE_TEXT = ["", " ", "a" * 10_000, "\u00e9\u4e2d\U0001f600", "\x00", "../../etc/passwd", "%00", "NaN", "-1", "1e999"]
HEADER_NAMES = ["Authorization", "X-Admin-Token", "Idempotency-Key", "X-Request-Id", "Content-Type", "Accept", "X-Odd"]

# Any byte but the line ends, which would end the header line itself (those are framing, tried below);
# as often, only bytes a header value may hold (visible ASCII, space, tab, obs-text 0x80-0xff), which
# get past aiohttp's parser and into the handlers.
header_bytes = st.one_of(
    st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.lists(st.sampled_from([9, *range(0x20, 0x7F), *range(0x80, 0x100)]), max_size=300).map(bytes),
)
edge_scalars = st.one_of(
    st.sampled_from(EDGE_NUMBERS),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(EDGE_TEXT),
    st.text(max_size=50),
    st.booleans(),
    st.none(),
)
json_values = st.recursive(
    edge_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


KNOWN_IDS: list[str] = []
"""Allocations made when the server starts, so generated requests also reach live ones."""
allocation_ids = st.deferred(lambda: st.sampled_from(KNOWN_IDS or ["alloc_0000000000000000"]))


def sometimes(times: int, out_of: int) -> st.SearchStrategy[bool]:
    """True `times` in `out_of` draws (hypothesis would drive `integers() == 0` to 0 far more often)."""
    return st.sampled_from([True] * times + [False] * (out_of - times))


def mutated(data: st.DataObject, value: Any, key: str = "") -> Any:
    """`value` with a few leaves replaced by edge values, a few keys dropped and some added: mostly
    valid, so that the requests reach deep into the handlers, each one a little wrong."""
    if key == "allocation_id" and data.draw(sometimes(3, 4)):
        return data.draw(allocation_ids)
    if isinstance(value, dict):
        out = {}
        for name, item in value.items():
            choice = data.draw(st.sampled_from(["keep"] * 7 + ["mutate"] * 2 + ["drop"]))
            if choice != "drop":
                out[name] = mutated(data, item, name) if choice == "mutate" or isinstance(item, dict) else item
        if data.draw(sometimes(1, 5)):
            out[data.draw(st.text(max_size=10))] = data.draw(json_values)
        return out
    if isinstance(value, list):
        return [mutated(data, item) for item in value]
    return data.draw(st.one_of(edge_scalars, json_values))


def _encode(body: Any, data: st.DataObject) -> bytes:
    kind = data.draw(st.sampled_from(["json"] * 8 + ["json-nan", "raw", "empty"]))
    if kind == "raw":
        return data.draw(st.binary(max_size=200))
    if kind == "empty":
        return b""
    # Python's json writes the big integers and the float range's ends that orjson would refuse to.
    return json.dumps(body, allow_nan=kind == "json-nan").encode()


def _text_of(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    data = draw(st.data())
    op = draw(st.sampled_from(OPERATIONS))
    method = draw(st.sampled_from([op.method] * 12 + ["GET", "DELETE", "PATCH", "FOO"]))
    path = op.path
    for name in re.findall(r"{(\w+)}", op.path):
        value = draw(
            st.one_of(
                st.sampled_from(["alloc_0000000000000000", "gpu-pool-1", "gpu-pool-1-gpu-0"]),
                st.text(min_size=1, max_size=40),
            )
        )
        path = path.replace("{" + name + "}", urllib.parse.quote(value, safe=""))
    query = []
    for location, name in op.params:
        if location == "query" and draw(st.booleans()):
            query.append((name, _text_of(draw(edge_scalars))))
    if draw(sometimes(1, 5)):
        query.append((draw(st.text(min_size=1, max_size=8)), draw(st.text(max_size=20))))
    target = path + ("?" + urllib.parse.urlencode(query) if query else "")
    headers: dict[str, bytes] = {
        "Authorization": b"Bearer " + API_KEY.encode(),
        "X-Admin-Token": ADMIN_TOKEN.encode(),
        "Content-Type": b"application/json",
    }
    for name in draw(st.lists(st.sampled_from(HEADER_NAMES), max_size=2, unique=True)):
        headers[name] = draw(header_bytes)
    for location, name in op.params:
        if location == "header" and draw(st.booleans()):
            headers[name] = _text_of(draw(edge_scalars)).encode("utf-8", "surrogatepass")
    body = b""
    if op.examples and draw(sometimes(9, 10)):
        body = _encode(mutated(data, draw(st.sampled_from(op.examples))), data)
    head = f"{method} {target} HTTP/1.1\r\nHost: mock\r\nConnection: close\r\n".encode("utf-8", "surrogatepass")
    for name, value in headers.items():
        head += name.encode() + b": " + value + b"\r\n"
    # Now and then, broken framing on purpose: a header line without a colon, a NUL, a bare line end.
    head += draw(st.sampled_from([b""] * 36 + [b"X-Broken\r\n", b"X-Nul: a\x00b\r\n", b"\n", b"X-Cr: a\rb\r\n"]))
    if body:
        head += b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    return head + b"\r\n" + body


@pytest.fixture(scope="module")
def served_mock() -> Iterator[tuple[str, int]]:
    """The mock as `hostedai-mock` serves it (connection guard, protocol errors as problem+json), on its
    own loop in a thread: hypothesis drives the examples synchronously."""
    config = config_with(
        server=lambda s: {**s, "admin_token": ADMIN_TOKEN, "strict": True},
        simulation=lambda s: {**s, "clock": "manual", "seed": 3},
    )
    loop = asyncio.new_event_loop()
    ready: asyncio.Future[str] = loop.create_future()
    stop = asyncio.Event()

    async def run() -> None:
        app = create_app(config)
        state = app[STATE]
        # Guessed admin tokens would soon block every control-plane request from 127.0.0.1.
        state.admin_gate = AdminGate(burst=10**9)
        for pool, model, tflops, vram_mb in (
            ("gpu-pool-1", "qwen-30b", 30, 20480),
            ("gpu-pool-2", "gemma-270m", 5, 2048),
        ):
            spec = AllocationSpec(pool_id=pool, model=model, tflops=tflops, vram_mb=vram_mb)
            KNOWN_IDS.append(state.sim.allocate("dev", spec, request_id="req_setup").allocation.allocation_id)
        await serving.serve(
            app,
            host="127.0.0.1",
            port=0,
            limits=connection_limits(config),
            render_problem=protocol_problem(app),
            started=ready.set_result,
            stop=stop.wait,
        )

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    url = asyncio.run_coroutine_threadsafe(_wait(ready), loop).result(timeout=30)
    host, port = url.removeprefix("http://").split(":")
    yield host, int(port)
    loop.call_soon_threadsafe(stop.set)
    thread.join(timeout=30)


async def _wait(future: asyncio.Future[str]) -> str:
    return await future


def _exchange(address: tuple[str, int], raw: bytes) -> bytes:
    with socket.create_connection(address, timeout=30) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            head, ended, _ = answer.partition(b"\r\n\r\n")
            if ended and _EVENT_STREAM.search(head):
                # The dashboard's stream never ends by contract: its head is the answer to judge.
                break
    return answer


_EVENT_STREAM = re.compile(rb"^content-type: text/event-stream", re.IGNORECASE | re.MULTILINE)


STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3}) ")
# Generated admin requests may add fault rules (the contract's example injects a 503); the server keeps
# them, and a later example would meet an injected 5xx that is the rule's answer, not a server error.
CLEAR_FAULTS = (
    f"DELETE /_admin/faults HTTP/1.1\r\nHost: mock\r\nConnection: close\r\nX-Admin-Token: {ADMIN_TOKEN}\r\n\r\n"
)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(raw=requests())
def test_no_request_gets_a_500(served_mock: tuple[str, int], raw: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    cleared = _exchange(served_mock, CLEAR_FAULTS.encode())
    assert cleared.startswith(b"HTTP/1.1 204 "), cleared[:200]
    answer = _exchange(served_mock, raw)
    status_line = STATUS_LINE.match(answer)
    assert status_line, f"not an HTTP answer: {answer[:200]!r} to {raw[:300]!r}"
    status = int(status_line.group(1))
    head, _, body = answer.partition(b"\r\n\r\n")
    if status >= 500:
        assert status == 503, f"{answer[:400]!r} to {raw[:400]!r}"
        assert b'"capacity_exhausted"' in body, f"{answer[:400]!r} to {raw[:400]!r}"
    if status >= 400:
        assert b"application/problem+json" in head.lower(), f"{answer[:300]!r} to {raw[:300]!r}"
    assert not caplog.records, caplog.text
