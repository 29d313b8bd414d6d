"""The connector over HTTPS: a trusted certificate works; one from another CA, an expired one and one
for another host name each raise the typed `TlsError` naming why, at once (never retried); and a
client that turns verification off says so in its log."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from harness.connector import ConnectorMetrics, HostedAiConnector, TlsError, TransportError, parse_connector_config
from mock_server import MockHostedAI
from tests.certificates import Certificates, make_certificates
from tests.orchestrator.support import SleepRecorder


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("pki"))


def _connector(url: str, sleeps: SleepRecorder, **hosted_ai: Any) -> HostedAiConnector:
    config = parse_connector_config({"hosted_ai": {"base_url": url, "api_key": "dev-key", **hosted_ai}})
    return HostedAiConnector(config, metrics=ConnectorMetrics(CollectorRegistry()), sleep=sleeps)


@pytest.fixture
async def serving(request: pytest.FixtureRequest, certificates: Certificates) -> AsyncIterator[MockHostedAI]:
    """The mock serving the certificate the test is parametrized with."""
    context: ssl.SSLContext = getattr(certificates, request.param)
    async with MockHostedAI(clock="manual", tls=context) as mock:
        yield mock


@pytest.mark.parametrize("serving", ["good"], indirect=True)
async def test_a_certificate_from_the_trusted_ca_is_accepted(serving: MockHostedAI, certificates: Certificates) -> None:
    async with _connector(serving.url, SleepRecorder(), ca_bundle=certificates.ca_bundle) as connector:
        assert [p.pool_id for p in await connector.list_pools()] == ["gpu-pool-1", "gpu-pool-2"]


@pytest.mark.parametrize(
    ("serving", "reason", "says"),
    [
        ("other_ca", "untrusted", "a certificate from a CA the client does not trust"),
        ("expired", "expired", "an expired certificate (certificate has expired)"),
        ("wrong_host", "host_mismatch", "a certificate issued for another host name"),
    ],
    indirect=["serving"],
)
async def test_a_certificate_that_does_not_verify_is_a_typed_tls_error_never_retried(
    serving: MockHostedAI, certificates: Certificates, reason: str, says: str
) -> None:
    sleeps = SleepRecorder()
    async with _connector(serving.url, sleeps, ca_bundle=certificates.ca_bundle) as connector:
        with pytest.raises(TlsError) as raised:
            await connector.list_pools()
    error = raised.value
    assert isinstance(error, TransportError)  # still "no usable answer" for callers that catch broadly
    assert error.reason == reason
    assert str(error).startswith(f"TLS: {serving.url} presented {says}")
    assert f"the client trusts the CA bundle {certificates.ca_bundle}" in str(error)
    assert sleeps.delays == []  # a certificate does not get better on a retry
    assert not error.retryable


@pytest.mark.parametrize("serving", ["other_ca"], indirect=True)
async def test_turning_verification_off_is_logged_and_accepts_any_certificate(
    serving: MockHostedAI, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="harness.connector"):
        async with _connector(serving.url, SleepRecorder(), verify_tls=False) as connector:
            assert await connector.list_pools()
    (warning,) = [r for r in caplog.records if "TLS verification is OFF" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert f"for {serving.url} (verify_tls: false)" in warning.getMessage()


async def test_a_verifying_client_logs_no_such_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="harness.connector"):
        async with _connector("https://127.0.0.1:9", SleepRecorder()):
            pass
    assert not [r for r in caplog.records if "TLS verification" in r.getMessage()]


async def test_https_to_a_plain_http_server_is_a_tls_error_saying_so() -> None:
    async with MockHostedAI(clock="manual") as mock:
        https = mock.url.replace("http://", "https://")
        async with _connector(https, SleepRecorder()) as connector:
            with pytest.raises(TlsError) as raised:
                await connector.list_pools()
    assert raised.value.reason == "handshake"
    assert "does not speak TLS; use http://" in str(raised.value)
