"""A burst client for timing fidelity: N inferences in flight at once, each one's latency as observed.

    python -m benchmarks.timing_client --port P --allocation-id ID --concurrency 1000 --rounds 5

Opens N keep-alive connections to 127.0.0.1, then, each round, writes one `POST /v1/inference` on
every connection in one go and times each from its write to the end of its answer. The first round
warms the connections up and is not reported. Plain asyncio protocols, no HTTP library, so the client
adds as little as it can to what it measures. Bounded: N × (rounds + 1) requests, each round at most
`--timeout` seconds. Prints one JSON document: every latency in ms, and the failures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time

PROMPT = "Summarise the integration guide in one short sentence, please."


class _Exchange(asyncio.Protocol):
    """One connection: a request written, its answer read by Content-Length."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._done: asyncio.Future[tuple[int, float]] | None = None
        self.sent_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, request: bytes) -> asyncio.Future[tuple[int, float]]:
        assert self.transport is not None
        self._buffer.clear()
        self._done = asyncio.get_running_loop().create_future()
        self.sent_at = time.perf_counter()
        self.transport.write(request)
        return self._done

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        head_end = self._buffer.find(b"\r\n\r\n")
        if head_end < 0 or self._done is None or self._done.done():
            return
        head = bytes(self._buffer[:head_end]).decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if len(self._buffer) >= head_end + 4 + length:
            status = int(head[0].split()[1])
            self._done.set_result((status, time.perf_counter()))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(ConnectionError(f"connection lost: {exc}"))


async def run(port: int, allocation_id: str, concurrency: int, rounds: int, round_s: float) -> dict[str, object]:
    body = json.dumps({"allocation_id": allocation_id, "prompt": PROMPT, "max_tokens": 16}).encode()
    request = (
        f"POST /v1/inference HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer dev-key\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    loop = asyncio.get_running_loop()
    exchanges: list[_Exchange] = []
    for _ in range(concurrency):
        _, protocol = await loop.create_connection(_Exchange, "127.0.0.1", port)
        exchanges.append(protocol)
    latencies: list[float] = []
    failures: list[str] = []
    try:
        for round_no in range(rounds + 1):
            futures = [exchange.send(request) for exchange in exchanges]
            done = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), round_s)
            for exchange, outcome in zip(exchanges, done, strict=True):
                if isinstance(outcome, BaseException):
                    failures.append(repr(outcome))
                elif outcome[0] != 200:
                    failures.append(f"HTTP {outcome[0]}")
                elif round_no:  # round 0 warms up
                    latencies.append((outcome[1] - exchange.sent_at) * 1000)
            await asyncio.sleep(0.2)
    finally:
        for exchange in exchanges:
            if exchange.transport is not None:
                exchange.transport.close()
    return {"concurrency": concurrency, "rounds": rounds, "latencies_ms": latencies, "failures": failures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.timing_client", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--allocation-id", default="alloc_0000000000000000")
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.concurrency + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.concurrency + 64), hard))
    result = asyncio.run(run(args.port, args.allocation_id, args.concurrency, args.rounds, args.timeout))
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
