"""HTTPS in the mock: certificate files, the one-flag self-signed mode that writes its CA for clients,
the embedded mock, and one-line errors for TLS settings that cannot work."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from mock_server import MockHostedAI
from mock_server.cli import main
from tests.certificates import make_certificates, write_pair
from tests.conftest import config_with


async def _health(url: str, ca_bundle: str | None) -> int:
    trust = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as http,
        http.get(f"{url}/health") as resp,
    ):
        return resp.status


def _written(path: str) -> str | None:
    """The file's text; None once it is gone."""
    file = Path(path)
    return file.read_text() if file.exists() else None


async def test_the_embedded_self_signed_mock_serves_https_to_a_client_trusting_its_ca() -> None:
    async with MockHostedAI(clock="manual", tls=True) as mock:
        assert mock.url.startswith("https://127.0.0.1:")
        assert mock.ca_bundle is not None
        assert await _health(mock.url, mock.ca_bundle) == 200
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await _health(mock.url, None)  # the system's CAs never issued it
        ca_file = mock.ca_bundle
        written = _written(ca_file)
        # Only the CA's certificate is written, never a private key.
        assert written is not None
        assert written.count("BEGIN CERTIFICATE") == 1
        assert "PRIVATE KEY" not in written
    assert _written(ca_file) is None  # the embedded mock's CA directory is its own, removed on stop


async def test_certificate_files_from_the_config_are_served(tmp_path: Path) -> None:
    made = make_certificates(tmp_path)
    cert, key = write_pair(tmp_path, made.server)
    config = config_with(server=lambda s: {**s, "tls_cert": str(cert), "tls_key": str(key)})
    async with MockHostedAI(config, clock="manual") as mock:
        assert mock.url.startswith("https://")
        assert mock.ca_bundle is None  # a certificate you made: you know its CA
        assert await _health(mock.url, made.ca_bundle) == 200


def test_the_self_signed_flag_serves_https_and_names_the_ca_file(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mock_server", "--port", "0", "--clock", "manual", "--tls-self-signed", str(ca_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("HostedAI mock listening on https://127.0.0.1:")
        assert f"clients trust {ca_dir / 'ca.pem'}" in line
        url = line.split()[4]
        trust = ssl.create_default_context(cafile=str(ca_dir / "ca.pem"))
        with urllib.request.urlopen(f"{url}/health", timeout=10, context=trust) as resp:
            assert json.load(resp)["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tls-cert", "server.pem"], "tls_cert and tls_key go together"),
        (["--tls-name", "mock"], "tls_names are names for the self-signed certificate"),
        (["--tls-cert", "nope.pem", "--tls-key", "nope-key.pem"], "TLS: cannot read nope.pem: no such file"),
    ],
)
def test_tls_settings_that_cannot_work_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("hostedai-mock: error: ")
    assert message in err


def test_a_key_that_is_not_the_certificates_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = make_certificates(tmp_path)
    cert, _ = write_pair(tmp_path, made.server)
    other_key = tmp_path / "other-key.pem"
    other_key.write_bytes(made.authority.key_pem)
    assert main(["--tls-cert", str(cert), "--tls-key", str(other_key)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"TLS: cannot use {cert} with {other_key}: the key is not the certificate's" in err
