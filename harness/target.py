"""Where the suites send their requests: a `Target`, made from a URL or from a mock the harness starts.

`--target mock` starts `hostedai-mock` as a separate process on a free loopback port (manual clock,
strict, a fresh admin token) and stops it afterwards; with `tls=True` it serves HTTPS with a CA it
makes at start-up, and the target trusts exactly that CA (`ca_bundle`). The harness never imports the mock: it talks to
that process over HTTP, exactly as it talks to a live HostedAI. (The in-process mock of
`mock_server.MockHostedAI` is the *embedded* mock; this one is a *mock process*.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

MOCK_API_KEY = "dev-key"
MOCK_SECOND_API_KEY = "team-b-key"
_READY = "HostedAI mock listening on "
_START_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Target:
    """Where the suites send their requests."""

    url: str
    api_key: str
    api_key_env: str = "HOSTED_AI_API_KEY"
    admin_token: str | None = None
    """The mock's control-plane token; None for a live HostedAI, which has no control plane."""
    second_api_key: str | None = None
    """A key of another tenant, for isolation checks (the mock's `team-b-key`; live: optional)."""
    ca_bundle: str | None = None
    """An absolute path to a PEM file of CAs to trust, or None for the system's."""
    label: str = "mock"
    """How reports name the target: `mock` or the URL."""

    @property
    def has_control_plane(self) -> bool:
        return self.admin_token is not None

    @property
    def is_mock_process(self) -> bool:
        """Started by the harness for this run alone (so it may be reset and its pools checked exactly)."""
        return self.label == "mock"

    def without_control_plane(self) -> Target:
        """The same server seen as a live HostedAI: only the public API (the self-test uses it)."""
        return replace(self, admin_token=None, label=self.url)


class TargetError(Exception):
    """The target cannot be used (a one-line message for the CLI)."""


def url_target(
    url: str,
    *,
    api_key_env: str,
    second_api_key_env: str | None = None,
    admin_token_env: str | None = None,
    ca_bundle: str | None = None,
) -> Target:
    """A target by URL: a live HostedAI, or a remote mock when its admin token is given."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetError(f"--target must be `mock` or an http(s) URL such as https://api.hosted.ai, not {url!r}")
    if parts.query or parts.fragment:
        raise TargetError(f"--target must be a base URL without a query or fragment, not {url!r}")
    key = os.environ.get(api_key_env)
    if not key:
        raise TargetError(f"environment variable {api_key_env} (--api-key-env) is not set")
    admin = os.environ.get(admin_token_env) if admin_token_env else None
    if admin_token_env and not admin:
        raise TargetError(f"environment variable {admin_token_env} (--admin-token-env) is not set")
    second = os.environ.get(second_api_key_env) if second_api_key_env else None
    if second_api_key_env and not second:
        raise TargetError(f"environment variable {second_api_key_env} (--second-api-key-env) is not set")
    if second is not None and second == key:
        raise TargetError(f"{second_api_key_env} holds the same key as {api_key_env}: isolation needs another tenant")
    return Target(
        url=url.rstrip("/"),
        api_key=key,
        api_key_env=api_key_env,
        admin_token=admin,
        second_api_key=second,
        ca_bundle=ca_bundle_path(ca_bundle),
        label=url.rstrip("/"),
    )


def ca_bundle_path(path: str | None) -> str | None:
    """An existing PEM file, as an absolute path (relative paths are the caller's working directory)."""
    if path is None:
        return None
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise TargetError(f"--ca-bundle {path}: no such file")
    return str(resolved)


# ---- the mock as a process -------------------------------------------------------------------------


def _mock_argv(seed: int, admin_token: str, extra_args: Sequence[str]) -> list[str]:
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
        # One word: a token_urlsafe may start with "-", which argparse would take for a flag.
        f"--admin-token={admin_token}",
        "--log-level",
        "WARNING",
        *extra_args,
    ]


_CA_FILE = "ca.pem"
"""Where `hostedai-mock --tls-self-signed DIR` writes its CA certificate, in DIR."""


def _tls_args(ca_dir: str | None) -> list[str]:
    return ["--tls-self-signed", ca_dir] if ca_dir is not None else []


def _mock_target(ready_line: str, admin_token: str, log_tail: str, ca_dir: str | None = None) -> Target:
    if not ready_line.startswith(_READY):
        said = (ready_line.strip() or log_tail.strip()).splitlines()
        raise TargetError(f"the mock process did not start: {said[-1][:300] if said else 'it exited silently'}")
    return Target(
        url=ready_line[len(_READY) :].split()[0],
        api_key=MOCK_API_KEY,
        admin_token=admin_token,
        second_api_key=MOCK_SECOND_API_KEY,
        ca_bundle=str(Path(ca_dir) / _CA_FILE) if ca_dir is not None else None,
        label="mock",
    )


def _tail(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read()[-2000:].decode(errors="replace")


@contextlib.asynccontextmanager
async def mock_process(seed: int, extra_args: Sequence[str] = (), *, tls: bool = False) -> AsyncIterator[Target]:
    """Start `hostedai-mock` (default config, manual clock, strict) for one run and stop it afterwards;
    `tls`: over HTTPS, its CA written to a temporary directory the target's `ca_bundle` points into.

    Its log goes to a temporary file, not a pipe nobody reads: a chatty mock can never block on a full
    pipe in a long run."""
    token = secrets.token_urlsafe(16)
    with tempfile.TemporaryFile() as log, _ca_directory(tls) as ca_dir:
        process = await asyncio.create_subprocess_exec(
            *_mock_argv(seed, token, [*extra_args, *_tls_args(ca_dir)]), stdout=asyncio.subprocess.PIPE, stderr=log
        )
        try:
            assert process.stdout is not None
            try:
                line = (await asyncio.wait_for(process.stdout.readline(), timeout=_START_TIMEOUT_S)).decode()
            except TimeoutError:
                line = ""
            yield _mock_target(line, token, _tail(log), ca_dir)
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), timeout=10)
                except TimeoutError:
                    process.kill()
                    await process.wait()


@contextlib.contextmanager
def _ca_directory(tls: bool) -> Iterator[str | None]:
    if not tls:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="hostedai-harness-ca-") as directory:
        yield directory


@dataclass(slots=True)
class MockProcess:
    """A mock process for synchronous callers (the pytest plugin): `with MockProcess(seed) as target:`."""

    seed: int = 0
    extra_args: Sequence[str] = ()
    tls: bool = False
    """Serve HTTPS with a CA made at start-up; the target's `ca_bundle` is its certificate."""
    _process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None
    _ca_dir: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> Target:
        token = secrets.token_urlsafe(16)
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        ca_dir = None
        if self.tls:
            self._ca_dir = tempfile.TemporaryDirectory(prefix="hostedai-harness-ca-")
            ca_dir = self._ca_dir.name
        self._process = subprocess.Popen(
            _mock_argv(self.seed, token, [*self.extra_args, *_tls_args(ca_dir)]),
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().decode()
        try:
            return _mock_target(line, token, _tail(self._log), ca_dir)
        except TargetError:
            self.stop()
            raise

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._ca_dir is not None:
            self._ca_dir.cleanup()
            self._ca_dir = None

    @contextlib.contextmanager
    def running(self) -> Iterator[Target]:
        target = self.start()
        try:
            yield target
        finally:
            self.stop()
