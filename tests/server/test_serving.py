"""Serving on a hostile network (`mock_server/serving.py`, twin of `harness/service/serving.py`): the
connection guard's timeouts and cap, the bounded drain, protocol errors as problem+json, and logs
without secrets. Timeouts here are tenths of a second and a test only waits for their effect, with a
generous bound: nothing depends on how fast the machine is."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import resource
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from harness.service.config import ServiceSettings
from mock_server import logs, serving
from mock_server.config import ServerConfig
from mock_server.logs import RedactSecrets
from mock_server.serving import ConnectionLimits, effective_max_connections

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-live-7f3a9c"
# How long a test waits for an effect that should take a tenth of a second: only a hung test waits it.
PATIENCE_S = 10.0


@pytest.mark.parametrize("name", ["serving.py", "logs.py"])
def test_the_mock_and_the_service_serve_and_log_through_the_same_files(name: str) -> None:
    twin = (ROOT / "harness" / "service" / name).read_bytes()
    assert (ROOT / "mock_server" / name).read_bytes() == twin


# ---- a small server through serving.serve --------------------------------------------------------------


def _problem(status: int) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"status": status}), content_type="application/problem+json")


class Served:
    def __init__(self, url: str, stop: asyncio.Event, task: asyncio.Task[None], seen: list[str]) -> None:
        self.url = url
        self.stop = stop
        self.task = task
        self.seen = seen
        """What the handlers saw: the body read, or the exception reading it raised."""
        self.release = asyncio.Event()
        """Set to let the `/wait` handler answer."""

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").split(":")
        return host, int(port)


@contextlib.asynccontextmanager
async def served(limits: ConnectionLimits) -> AsyncIterator[Served]:
    seen: list[str] = []
    app = web.Application()
    holder: dict[str, Served] = {}

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def echo(request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except ConnectionError as exc:
            seen.append(type(exc).__name__)
            raise
        seen.append(f"read {len(body)}")
        return web.json_response({"bytes": len(body)})

    async def wait(request: web.Request) -> web.Response:
        await holder["served"].release.wait()
        return web.json_response({"waited": True})

    async def arrived(request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        return web.json_response({"arrived": request.get(serving.ARRIVED), "handled": loop.time()})

    app.router.add_get("/health", health)
    app.router.add_get("/arrived", arrived)
    app.router.add_post("/echo", echo)
    app.router.add_get("/wait", wait)
    stop = asyncio.Event()
    url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serving.serve(
            app,
            host="127.0.0.1",
            port=0,
            limits=limits,
            render_problem=_problem,
            started=url.set_result,
            stop=stop.wait,
        )
    )
    holder["served"] = running = Served(await asyncio.wait_for(url, PATIENCE_S), stop, task, seen)
    try:
        yield running
    finally:
        running.release.set()
        stop.set()
        await asyncio.wait_for(task, PATIENCE_S)


async def _closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closing)."""
    try:
        return await asyncio.wait_for(reader.read(), PATIENCE_S)
    except ConnectionResetError:
        return b""


async def _get(url: str, path: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url + path) as resp:
        return resp.status


QUICK = ConnectionLimits(idle_timeout_s=30, header_timeout_s=0.2, body_timeout_s=0.2, shutdown_timeout_s=0.2)


async def test_a_request_is_stamped_with_the_moment_its_first_byte_arrived_not_its_last() -> None:
    # A server promising a latency counts it from the request's arrival: here the headers take 0.3 s
    # to come in, and the stamp is from before that wait; the next request on the connection gets its own.
    async with served(ConnectionLimits(header_timeout_s=5.0)) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        answers = []
        for _ in range(2):
            writer.write(b"GET /arr")
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.write(b"ived HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE_S)
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
            answers.append(orjson.loads(await reader.readexactly(length)))
        writer.close()
    first, second = answers
    assert first["handled"] - first["arrived"] >= 0.29
    assert second["handled"] - second["arrived"] >= 0.29
    assert second["arrived"] > first["handled"]


async def test_a_connection_that_sends_no_request_is_closed_after_the_header_timeout() -> None:
    async with served(QUICK) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        assert await _closed_by_server(reader) == b""
        writer.close()
        assert await _get(server.url, "/health") == 200


async def test_headers_that_trickle_in_are_cut_off() -> None:
    async with served(QUICK) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        closed = asyncio.create_task(_closed_by_server(reader))
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ":
            if closed.done():
                break
            with contextlib.suppress(ConnectionError):
                writer.write(bytes([byte]))
            await asyncio.sleep(0.02)
        assert await closed == b""  # never answered: its headers never completed in time
        writer.close()


async def test_a_body_that_stops_arriving_closes_the_connection_and_the_handler_sees_the_client_gone() -> None:
    async with served(QUICK) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        assert await _closed_by_server(reader) == b""
        writer.close()
        assert server.seen == ["ConnectionResetError"]


async def test_a_complete_body_is_read_whatever_the_timeouts() -> None:
    async with served(QUICK) as server, aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.post(server.url + "/echo", data=b"x" * 5000) as resp:
                assert (await resp.json())["bytes"] == 5000
        assert server.seen == ["read 5000"] * 3


async def test_at_the_cap_a_new_connection_closes_the_oldest_idle_one() -> None:
    limits = ConnectionLimits(idle_timeout_s=30, header_timeout_s=30, max_connections=3)
    async with served(limits) as server:
        idle = [await asyncio.open_connection(*server.address) for _ in range(3)]
        await asyncio.sleep(0.1)  # let the server accept them before the next one comes
        assert await _get(server.url, "/health") == 200
        oldest_reader, _ = idle[0]
        assert await _closed_by_server(oldest_reader) == b""
        for _, writer in idle:
            writer.close()


async def test_at_the_cap_with_every_connection_busy_a_newcomer_is_refused() -> None:
    limits = ConnectionLimits(idle_timeout_s=30, header_timeout_s=30, max_connections=1)
    async with served(limits) as server, aiohttp.ClientSession() as session:
        busy = asyncio.create_task(session.get(server.url + "/wait"))
        await asyncio.sleep(0.2)
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await _closed_by_server(reader) == b""
        writer.close()
        server.release.set()
        async with await busy as resp:
            assert resp.status == 200


def test_the_cap_leaves_room_under_the_open_file_limit_for_an_accept_burst_and_the_rest() -> None:
    # Under a hard limit of 1,024: a backlog of 256 and 128 descriptors for the rest.
    assert serving.listen_backlog(1024) == 256
    assert effective_max_connections(4096, open_files=1024) == 1024 - 256 - serving.OTHER_FDS
    assert serving.listen_backlog(65536) == serving.LISTEN_BACKLOG
    assert effective_max_connections(4096, open_files=65536) == 4096
    assert effective_max_connections(4096, open_files=10) == 1


def test_serving_raises_the_soft_open_file_limit_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 64:
        pytest.skip("no finite hard limit above 64 to raise to")
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        assert serving.raise_open_file_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_shutdown_drains_within_its_bound_whatever_a_request_does() -> None:
    async with served(QUICK) as server, aiohttp.ClientSession() as session:
        hung = asyncio.create_task(session.get(server.url + "/wait"))
        await asyncio.sleep(0.2)
        server.stop.set()
        await asyncio.wait_for(asyncio.shield(server.task), PATIENCE_S)  # not held by the request
        with pytest.raises(aiohttp.ClientError):
            await hung


async def test_a_malformed_request_is_answered_by_the_renderer_and_its_bytes_are_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with served(QUICK) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + SECRET.encode() + b"\x00\r\n\r\n")
        answer = await _closed_by_server(reader)
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400 ") or head.startswith(b"HTTP/1.1 400 ")
    assert b"application/problem+json" in head
    assert orjson.loads(body) == {"status": 400}
    assert SECRET not in caplog.text
    assert "refused a malformed request" in caplog.text


# ---- logs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        f"Authorization: Bearer {SECRET}",
        f"b'Authorization: Bearer {SECRET}\\x00'",
        f"{{'Authorization': 'Bearer {SECRET}', 'Accept': '*/*'}}",
        f"X-Admin-Token: {SECRET}",
        f"calling with token={SECRET} now",
        f"bearer {SECRET};",
    ],
)
def test_credentials_are_scrubbed_from_any_line(line: str) -> None:
    scrubbed = RedactSecrets([SECRET]).scrub(line)
    assert SECRET not in scrubbed
    assert logs.REDACTED in scrubbed


def test_a_line_without_credentials_is_left_alone() -> None:
    line = '127.0.0.1 "GET /v1/pools HTTP/1.1" 200 512 1.2ms'
    assert RedactSecrets([SECRET]).scrub(line) == line


def test_configured_logging_scrubs_messages_and_tracebacks_and_restores_the_root_logger(
    capfd: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    stop = logs.configure_logging("INFO", [SECRET])
    try:
        logging.getLogger("test").info("header was %s", f"Authorization: Bearer {SECRET}")
        try:
            raise ValueError(f"bad key {SECRET}")
        except ValueError:
            logging.getLogger("test").exception("failed")
    finally:
        stop()
    err = capfd.readouterr().err
    assert "header was Authorization: [redacted]" in err
    assert "ValueError: bad key [redacted]" in err
    assert SECRET not in err
    assert root.handlers == before


def test_the_documented_connection_settings_are_the_defaults_of_both_servers() -> None:
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \| ([\d.]+) \|", (ROOT / "docs" / "serving.md").read_text(), re.M)
    assert len(rows) == 5
    mock_defaults, service_defaults = ServerConfig(), ServiceSettings()
    for mock_key, service_key, default in rows:
        assert getattr(mock_defaults, mock_key) == float(default), mock_key
        assert getattr(service_defaults, service_key) == float(default), service_key


def test_access_lines_skip_the_logging_machinery_yet_are_stamped_and_scrubbed_like_other_lines(
    capfd: pytest.CaptureFixture[str],
) -> None:
    stop = logs.configure_logging("INFO", [SECRET])
    try:
        logging.getLogger("test").info("before")
        request = make_mocked_request("GET", f"/v1/pools?api_key={SECRET}", headers={"Host": "h"})
        logs.AccessLog(logging.getLogger("aiohttp.access"), "").log(request, web.Response(body=b"{}"), 0.0012)
    finally:
        stop()
    err = capfd.readouterr().err.splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(stamp + " INFO test: before", err[0])
    assert re.fullmatch(
        stamp + r' INFO aiohttp.access: \S+ "GET /v1/pools\?api_key=\[redacted\] HTTP/1.1" 200 2 1.2ms', err[1]
    )


def test_a_full_log_buffer_drops_lines_and_says_how_many_once_there_is_room() -> None:
    buffer = logs._BufferHandler()
    for i in range(logs.LOG_QUEUE_SIZE + 3):
        buffer.add_line("aiohttp.access", f"line {i}")
    assert len(buffer.records) == logs.LOG_QUEUE_SIZE
    buffer.records.clear()  # the writing thread caught up
    buffer.add_line("aiohttp.access", "after")
    note, line = list(buffer.records)
    assert isinstance(note, logging.LogRecord)
    assert note.getMessage() == "dropped 3 log records: stderr did not keep up"
    assert line[1:] == ("aiohttp.access", "after")
