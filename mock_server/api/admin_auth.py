"""The control plane's token check, with failed attempts rate limited per client address.

A wrong or missing `X-Admin-Token` costs one token from the sender's bucket (`burst` at once, then
`per_second`). Once the bucket is empty, every control-plane request from that address is answered 429
with `Retry-After` until a token is back, without looking at the token: guessing is slow, and a 429 says
nothing about whether a guess was right. Wall-clock time, not the simulator's (this is about real
clients); at most `max_sources` addresses are remembered, the least recently failing forgotten first,
so memory stays bounded whatever the number of senders.

Senders on loopback are the machine itself, not the network (the mock even accepts its built-in token
there): they are never limited, so a local test run that probes wrong tokens on purpose (schemathesis
does) never locks the local control plane.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from mock_server.sim.ratelimit import TokenBucket


@dataclass(slots=True)
class _Source:
    bucket: TokenBucket
    blocked_until: float = 0.0


class AdminGate:
    def __init__(
        self,
        *,
        burst: int = 10,
        per_second: float = 1.0,
        max_sources: int = 1024,
        clock: Callable[[], float] = time.monotonic,
        exempt: Callable[[str | None], bool] | None = None,
    ) -> None:
        """`exempt`: which senders are never limited (default: loopback addresses)."""
        self._exempt = exempt or on_loopback
        self._burst = burst
        self._per_second = per_second
        self._max_sources = max_sources
        self._clock = clock
        self._sources: OrderedDict[str, _Source] = OrderedDict()

    def blocked_for(self, source: str | None) -> int:
        """Whole seconds until `source` may try again (0: it may now)."""
        if self._exempt(source):
            return 0
        known = self._sources.get(source or "unknown")
        remaining = known.blocked_until - self._clock() if known is not None else 0.0
        return max(1, int(remaining + 0.999)) if remaining > 0 else 0

    def admits(self, sent: str | None, token: str | None, source: str | None) -> bool:
        """Whether `sent` is the token; a miss is charged to `source`."""
        if token is not None and sent is not None and _same(sent, token):
            return True
        if not self._exempt(source):
            self._failed(source or "unknown", self._clock())
        return False

    def _failed(self, address: str, now: float) -> None:
        source = self._sources.get(address)
        if source is None:
            source = self._sources[address] = _Source(TokenBucket(self._per_second, self._burst, now))
            while len(self._sources) > self._max_sources:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(address)
        wait = source.bucket.take(now)
        if wait:
            source.blocked_until = now + wait


def _same(sent: str, token: str) -> bool:
    # aiohttp decodes header bytes that are not UTF-8 to lone surrogates; encoded back the same way,
    # any byte sequence compares (and fails) instead of raising.
    return hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape"))


def on_loopback(source: str | None) -> bool:
    try:
        return source is not None and ipaddress.ip_address(source).is_loopback
    except ValueError:
        return False
