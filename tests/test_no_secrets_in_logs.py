"""A full run of both servers, as programs, at DEBUG: the mock (`hostedai-mock`) and Harpoon's service in
front of it (`harpoon-service`), with real traffic, malformed requests carrying credentials, wrong
admin tokens, and a client stalled mid-body when SIGTERM comes. Afterwards no API key, admin token or
`Authorization` value is anywhere in either server's output, and both stopped within their drain bound."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from mock_server.config import default_config

ROOT = Path(__file__).resolve().parents[1]
TENANT_KEY = "sk-tenant-4b1d9e7a2c"
OTHER_KEY = "sk-tenant-b-93f0c1"
ADMIN_TOKEN = "adm-6e2f8a0d5b"
SECRETS = (TENANT_KEY, OTHER_KEY, ADMIN_TOKEN)
# Drain bound given to both servers, and what the test allows on top for start-up of the clean-up.
SHUTDOWN_S = 1.0
EXIT_WITHIN_S = SHUTDOWN_S + 8


class Server:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url
        host, port = url.removeprefix("http://").split(":")
        self.address = (host, int(port))

    def stop(self) -> tuple[str, float]:
        """SIGTERM; everything it wrote, and how long it took to exit."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        return out + err, time.monotonic() - started


@contextmanager
def program(argv: list[str], env: dict[str, str]) -> Iterator[Server]:
    proc = subprocess.Popen(
        [sys.executable, *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"listening on (http://\S+)", line)
        assert found, f"no start-up line: {line!r}"
        yield Server(proc, found.group(1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _request(url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _raw(address: tuple[str, int], head: bytes) -> bytes:
    """Sends a request head as is (plus `Connection: close`), and reads until the server closes."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(head + b"Connection: close\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def _mock_config(tmp_path: Path) -> Path:
    data = default_config().model_dump()
    data["tenants"]["dev"]["api_keys"] = [TENANT_KEY]
    data["tenants"]["team-b"]["api_keys"] = [OTHER_KEY]
    data["server"]["shutdown_timeout_s"] = SHUTDOWN_S
    path = tmp_path / "mock.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _harpoon_config(tmp_path: Path, mock_url: str) -> Path:
    data = yaml.safe_load((ROOT / "configs" / "harpoon.yaml").read_text())
    data["hosted_ai"]["base_url"] = mock_url
    data["service"] = {"host": "127.0.0.1", "port": 0, "shutdown_timeout_secs": SHUTDOWN_S}
    data["models"] = str(ROOT / "configs" / "models.yaml")
    path = tmp_path / "harpoon.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _exercise_the_mock(mock: Server) -> None:
    bearer = {"Authorization": f"Bearer {TENANT_KEY}"}
    assert _request(mock.url + "/v1/pools", headers=bearer) == 200
    assert _request(mock.url + "/v1/pools", headers={"Authorization": f"Bearer {TENANT_KEY}x"}) == 401
    assert _request(mock.url + "/_admin/state", headers={"X-Admin-Token": ADMIN_TOKEN}) == 200
    assert _request(mock.url + "/_admin/state", headers={"X-Admin-Token": ADMIN_TOKEN + "x"}) == 401
    allocate = {"pool_id": "gpu-pool-1", "requirements": {"tflops": 5, "vram_mb": 2048, "model": "gemma-270m"}}
    assert _request(mock.url + "/v1/allocate", "POST", allocate, bearer) == 201
    malformed = [
        b"GET /v1/pools HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TENANT_KEY.encode() + b"\x00\r\n",
        b"GET /_admin/state HTTP/1.1\r\nHost: x\r\nX-Admin-Token: " + ADMIN_TOKEN.encode() + b"\x01\r\n",
        b"GET /v1/pools HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe" + OTHER_KEY.encode() + b"\r\n",
        b"GET /v1/pools HTTP/1.1\r\nAuthorization " + TENANT_KEY.encode() + b"\r\n",
    ]
    for data in malformed:
        answer = _raw(mock.address, data)
        assert answer.startswith(b"HTTP/1."), answer[:100]
        assert not any(secret.encode() in answer for secret in SECRETS), answer


def test_a_full_run_of_both_servers_logs_no_secret_and_stops_within_its_bound(tmp_path: Path) -> None:
    mock_env = {"HOSTEDAI_ADMIN_TOKEN": ADMIN_TOKEN}
    mock_argv = ["-m", "mock_server", "--config", str(_mock_config(tmp_path)), "--port", "0", "--clock", "manual"]
    with program([*mock_argv, "--log-level", "DEBUG"], mock_env) as mock:
        harpoon_argv = ["-m", "harness.service.cli", "--config", str(_harpoon_config(tmp_path, mock.url))]
        with program([*harpoon_argv, "--log-level", "DEBUG"], {"HOSTED_AI_API_KEY": TENANT_KEY}) as harpoon:
            _exercise_the_mock(mock)
            process = {"text": "Summarise this, please.", "deployment": "HostedAI"}
            assert _request(harpoon.url + "/v2/process", "POST", process) == 200
            assert _request(harpoon.url + "/health") == 200
            answer = _raw(
                harpoon.address,
                b"POST /v2/process HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + TENANT_KEY.encode()
                + b"\x00\r\n\r\n",
            )
            assert not any(secret.encode() in answer for secret in SECRETS)
            # A client stalled mid-body on each server while they are told to stop.
            stalled = [socket.create_connection(server.address, timeout=10) for server in (mock, harpoon)]
            stalled[0].sendall(b"POST /v1/allocate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ")
            stalled[0].sendall(
                TENANT_KEY.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: 99\r\n\r\n{"
            )
            stalled[1].sendall(b"POST /v2/process HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n{")
            time.sleep(0.3)
            harpoon_log, harpoon_took = harpoon.stop()
        mock_log, mock_took = mock.stop()
        for sock in stalled:
            sock.close()
    assert harpoon_took < EXIT_WITHIN_S, harpoon_log[-2000:]
    assert mock_took < EXIT_WITHIN_S, mock_log[-2000:]
    assert harpoon.proc.returncode == 0
    assert mock.proc.returncode == 0
    for name, output in (("hostedai-mock", mock_log), ("harpoon-service", harpoon_log)):
        assert "DEBUG" in output, f"{name} did not log at DEBUG: the grep would prove nothing"
        for secret in SECRETS:
            assert secret not in output, f"{name} logged a secret: ...{_around(output, secret)}..."
        unredacted = re.search(r"(?i)bearer\s+(?!\[redacted\])\S+", output)
        assert unredacted is None, f"{name} logged a bearer value: {unredacted.group(0)!r}"
    assert "refused a malformed request" in mock_log


def _around(text: str, secret: str) -> str:
    at = text.index(secret)
    return text[max(0, at - 80) : at + 80].replace(secret, "<SECRET>")
