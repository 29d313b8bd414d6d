"""Failed control-plane logins are rate limited per address; no header bytes make the check fail."""

from __future__ import annotations

import asyncio

import aiohttp

from mock_server import MockHostedAI
from mock_server.api.admin_auth import AdminGate
from tests.helpers import expect_problem


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_loopback_senders_are_never_limited() -> None:
    gate = AdminGate(burst=1, clock=_Clock())
    for source in ("127.0.0.1", "::1", "127.8.9.10"):
        for _ in range(5):
            assert not gate.admits("guess", "the-token", source)
        assert gate.blocked_for(source) == 0
    for _ in range(2):
        gate.admits("guess", "the-token", "10.0.0.1")
    assert gate.blocked_for("10.0.0.1") > 0


def test_a_sender_is_blocked_after_its_burst_of_failures_and_let_back_as_tokens_refill() -> None:
    clock = _Clock()
    gate = AdminGate(burst=3, per_second=0.5, clock=clock)
    for _ in range(4):
        assert gate.blocked_for("10.0.0.1") == 0
        assert not gate.admits("guess", "the-token", "10.0.0.1")
    assert gate.blocked_for("10.0.0.1") == 2  # one token every 2 s
    assert gate.blocked_for("10.0.0.2") == 0  # another address is not affected
    clock.now += 2
    assert gate.blocked_for("10.0.0.1") == 0


def test_the_right_token_is_admitted_and_costs_nothing() -> None:
    gate = AdminGate(burst=1, clock=_Clock())
    for _ in range(5):
        assert gate.admits("the-token", "the-token", "10.0.0.1")
    assert gate.blocked_for("10.0.0.1") == 0


def test_undecodable_header_bytes_are_a_wrong_token_not_an_error() -> None:
    gate = AdminGate(clock=_Clock())
    # aiohttp turns bytes that are not UTF-8 into lone surrogates.
    assert not gate.admits("\udcff\udcfe", "dev-admin", "10.0.0.1")
    assert not gate.admits("dév", "dev-admin", "10.0.0.1")


def test_the_gate_remembers_a_bounded_number_of_addresses() -> None:
    gate = AdminGate(burst=1, max_sources=2, clock=_Clock())
    for address in ("a", "b", "c"):
        gate.admits("x", "token", address)
        gate.admits("x", "token", address)
    assert gate.blocked_for("a") == 0  # forgotten: the least recent of three
    assert gate.blocked_for("c") > 0


async def test_over_http_a_guessing_client_gets_429_with_retry_after(
    mock: MockHostedAI, anonymous: aiohttp.ClientSession
) -> None:
    # The test runs on loopback, which is never limited: limit it as if it were another address.
    mock.state.admin_gate = AdminGate(exempt=lambda source: False)
    for _ in range(11):
        async with anonymous.get("/_admin/state", headers={"X-Admin-Token": "guess"}) as resp:
            await expect_problem(resp, 401, "unauthorized")
    # Blocked now: even the right token is not looked at.
    async with anonymous.get("/_admin/state", headers={"X-Admin-Token": mock.admin_token or ""}) as resp:
        body = await expect_problem(resp, 429, "rate_limited")
        assert int(resp.headers["Retry-After"]) >= 1
        assert body["retry_after"] == int(resp.headers["Retry-After"])


async def test_non_utf8_bytes_in_the_admin_token_are_a_401(mock: MockHostedAI) -> None:
    host, port = mock.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /_admin/state HTTP/1.1\r\nHost: x\r\nX-Admin-Token: \xff\xfe\r\nConnection: close\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert b"application/problem+json" in answer
