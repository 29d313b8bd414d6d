"""Before any suite runs: can this target be tested at all?

A run that cannot decide must not pass: an unreachable target, a certificate the client cannot trust,
a key the target rejects, or something that is not a HostedAI API at all would otherwise show up as
a string of failed checks, or worse, as checks that passed because nothing was really asked. Each of
those ends the run here with `TargetError` and one line saying which (the CLI exits 2).

What is asked: `GET /v1/pools` with the key (and with the second tenant's key, and `GET /_admin/state`
with the admin token, when given). A 5xx is not a reason to stop: that is the target's answer, for
the suites to judge.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Mapping

import aiohttp

from harness.connector.tls import certificate_problem, describe, handshake_problem
from harness.target import Target, TargetError

_TIMEOUT = aiohttp.ClientTimeout(total=20, sock_connect=10)
_RATE_LIMIT_RETRIES = 3
_RETRY_AFTER_CAP_S = 30.0


def ssl_setting(target: Target) -> ssl.SSLContext | bool:
    """Verified TLS, against the target's CA bundle when it has one."""
    return ssl.create_default_context(cafile=target.ca_bundle) if target.ca_bundle else True


async def preflight(target: Target) -> None:
    """Raise `TargetError` (one line) when the target cannot be tested; return when it can."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_setting(target))) as session:
        await _probe_key(session, target, target.api_key, target.api_key_env)
        if target.second_api_key is not None:
            await _probe_key(session, target, target.second_api_key, "the second tenant's key (--second-api-key-env)")
        if target.admin_token is not None and not target.is_mock_process:
            await _probe_control_plane(session, target)


async def _get(
    session: aiohttp.ClientSession, target: Target, path: str, headers: Mapping[str, str]
) -> tuple[int, str, str]:
    """Status, content type and body text of one GET, waiting out a few 429s; transport failures as
    one-line `TargetError`s."""
    url = f"{target.url}{path}"
    for _ in range(_RATE_LIMIT_RETRIES):
        try:
            async with session.get(url, headers=headers, timeout=_TIMEOUT, allow_redirects=False) as resp:
                text = await resp.text(errors="replace")
                if resp.status == 429:
                    await asyncio.sleep(min(_RETRY_AFTER_CAP_S, _seconds(resp.headers.get("Retry-After"))))
                    continue
                return resp.status, resp.content_type, text
        except aiohttp.ClientConnectorCertificateError as exc:
            raise TargetError(_certificate_message(target, exc.certificate_error)) from None
        except aiohttp.ClientSSLError as exc:
            raise TargetError(handshake_problem(target.url, exc)) from None
        except aiohttp.ClientConnectorError as exc:
            error = exc.os_error
            if error.errno and error.errno > 0:
                reason = os.strerror(error.errno).lower()
            else:
                reason = (error.strerror or str(error)).lower()
            raise TargetError(f"cannot reach {target.url}: {reason}") from None
        except TimeoutError:
            raise TargetError(f"cannot reach {target.url}: no answer within {_TIMEOUT.total:g} s") from None
        except aiohttp.ServerDisconnectedError:
            hint = " (an https:// URL for a plain-HTTP server?)" if target.url.startswith("https://") else ""
            raise TargetError(f"{target.url} closed the connection without answering{hint}") from None
        except aiohttp.ClientError as exc:
            raise TargetError(f"cannot talk to {target.url}: {type(exc).__name__}: {exc}") from None
    raise TargetError(f"{target.url} answered GET {path} with 429 rate_limited {_RATE_LIMIT_RETRIES} times in a row")


def _seconds(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0


def _certificate_message(target: Target, error: Exception) -> str:
    """One line naming the problem (expired, another host's, an untrusted CA) and what to do about it."""
    problem = certificate_problem(error)
    hint = {
        "untrusted": " — pass the CA that issued it with --ca-bundle FILE",
        "host_mismatch": " — use a host name the certificate names, or reissue it for this one",
        "expired": " — the server needs a renewed certificate",
    }.get(problem.reason, "")
    return describe(target.url, problem, target.ca_bundle) + hint


async def _probe_key(session: aiohttp.ClientSession, target: Target, key: str, name: str) -> None:
    status, content_type, text = await _get(session, target, "/v1/pools", {"Authorization": f"Bearer {key}"})
    if status in (401, 403):
        raise TargetError(f"{target.url} rejected the API key in {name}: GET /v1/pools answered {status}")
    if status in (301, 302, 303, 307, 308):
        raise TargetError(f"{target.url} redirects GET /v1/pools ({status}): give the API's own base URL")
    if status == 400 and target.url.startswith("http://") and "https" in text.lower():
        raise TargetError(f"{target.url} expects TLS: use https://")
    if status >= 500:
        return  # the target is unwell, not untestable: the suites will say how
    if status != 200 or content_type != "application/json" or '"pools"' not in text:
        said = f"{status} {content_type or 'with no content type'}"
        raise TargetError(f"{target.url} is not a HostedAI API: GET /v1/pools answered {said}, not JSON pools")


async def _probe_control_plane(session: aiohttp.ClientSession, target: Target) -> None:
    status, content_type, _ = await _get(session, target, "/_admin/state", {"X-Admin-Token": target.admin_token or ""})
    if status == 404:
        raise TargetError(f"{target.url} has no control plane (GET /_admin/state answered 404): drop --admin-token-env")
    if status in (401, 403):
        raise TargetError(
            f"{target.url} rejected the admin token (--admin-token-env): GET /_admin/state answered {status}"
        )
    if status != 200 or content_type != "application/json":
        raise TargetError(f"{target.url}'s control plane answered GET /_admin/state with {status} {content_type}")
