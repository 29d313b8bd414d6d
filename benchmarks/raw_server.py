"""A reference below the bare aiohttp handler: the same fixed answer from a raw asyncio protocol.

Run as `python -m benchmarks.raw_server PORT`. Each HTTP/1.1 request (keep-alive, parsed by httptools,
the parser uvicorn uses) is answered with the bare handler's fixed JSON body, its request unread: what
answering costs with no web framework at all. `make bench` sets it beside the bare aiohttp handler, so
the report can say how much of a request's CPU aiohttp itself takes — the part of the inference bar
(half the bare aiohttp handler) that no work inside the mock can buy back.

Not a server anyone should deploy: no limits, no pipelining beyond what httptools hands over in order,
no error answers (a request it cannot parse closes the connection).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import httptools
import orjson

from benchmarks.minimal_server import ANSWER

_BODY = orjson.dumps(ANSWER)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
    b"Content-Length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY
)


class FixedAnswer(asyncio.Protocol):
    """One connection: every complete request gets RESPONSE; a connection that says `close` is closed."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    # httptools' callback, once a request's headers and body are in.
    def on_message_complete(self) -> None:
        if self.transport is None:
            return
        self.transport.write(RESPONSE)
        if not self.parser.should_keep_alive():
            self.transport.close()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FixedAnswer, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends it quietly (`make bench` sends SIGTERM)
        asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
