"""Targets: the embedded mock (a `hostedai-mock` subprocess on a free loopback port) or a URL.

The harness never imports the mock: it starts it as a program and talks to it over HTTP, exactly as it
talks to a live HostedAI.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence

from harness.suites.base import Target

MOCK_API_KEY = "dev-key"
MOCK_SECOND_API_KEY = "team-b-key"
MOCK_ADMIN_TOKEN = "dev-admin"
_READY = "HostedAI mock listening on "


class TargetError(Exception):
    """The target cannot be used (a one-line message for the CLI)."""


def _mock_argv(seed: int, extra_args: Sequence[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mock_server",
        "--port",
        "0",
        "--clock",
        "manual",
        "--strict",
        "--seed",
        str(seed),
        "--log-level",
        "WARNING",
        *extra_args,
    ]


def _mock_target(ready_line: str) -> Target:
    if not ready_line.startswith(_READY):
        raise TargetError(f"the embedded mock did not start: {ready_line.strip()[:500]}")
    return Target(
        url=ready_line[len(_READY) :].split()[0],
        api_key=MOCK_API_KEY,
        admin_token=MOCK_ADMIN_TOKEN,
        second_api_key=MOCK_SECOND_API_KEY,
        label="mock",
    )


def start_mock_process(seed: int = 0, extra_args: Sequence[str] = ()) -> tuple[subprocess.Popen[str], Target]:
    """The embedded mock for synchronous callers (the pytest plugin): the process and its target."""
    process = subprocess.Popen(_mock_argv(seed, extra_args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    try:
        return process, _mock_target(line + ("" if line else (process.stderr.read() if process.stderr else "")))
    except TargetError:
        process.kill()
        process.wait()
        raise


def stop_mock_process(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.asynccontextmanager
async def embedded_mock(seed: int, extra_args: Sequence[str] = ()) -> AsyncIterator[Target]:
    """Start the mock with its default config (manual clock, strict) and stop it afterwards."""
    process = await asyncio.create_subprocess_exec(
        *_mock_argv(seed, extra_args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=60)).decode()
        if not line and process.stderr is not None:
            line = (await process.stderr.read()).decode()
        yield _mock_target(line)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()


def url_target(
    url: str,
    *,
    api_key_env: str,
    second_api_key_env: str | None = None,
    admin_token_env: str | None = None,
    ca_bundle: str | None = None,
) -> Target:
    """A target by URL: a live HostedAI, or a remote mock when its admin token is given."""
    if not url.startswith(("http://", "https://")):
        raise TargetError(f"--target must be `mock` or an http(s) URL, not {url!r}")
    key = os.environ.get(api_key_env)
    if not key:
        raise TargetError(f"environment variable {api_key_env} (--api-key-env) is not set")
    admin = os.environ.get(admin_token_env) if admin_token_env else None
    if admin_token_env and not admin:
        raise TargetError(f"environment variable {admin_token_env} (--admin-token-env) is not set")
    return Target(
        url=url.rstrip("/"),
        api_key=key,
        api_key_env=api_key_env,
        admin_token=admin,
        second_api_key=os.environ.get(second_api_key_env) if second_api_key_env else None,
        ca_bundle=ca_bundle,
        label=url,
    )
