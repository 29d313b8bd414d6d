"""The harness against HTTPS targets: it passes with the right `--ca-bundle` (or with `--tls`, a mock
process serving a CA made for the run), and each certificate a client must refuse ends the run with
exit code 2 and one line that names the problem."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from harness.cli import main
from harness.preflight import preflight
from harness.target import MockProcess, TargetError
from mock_server import MockHostedAI
from tests.certificates import Certificates, make_certificates

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def serving(request: pytest.FixtureRequest, certificates: Certificates) -> AsyncIterator[MockHostedAI]:
    context: ssl.SSLContext = getattr(certificates, request.param)
    async with MockHostedAI(clock="manual", tls=context) as mock:
        yield mock


async def _harness(argv: list[str]) -> int:
    """The CLI runs its own event loop: in a thread, while the mock serves on this one."""

    def run() -> int:
        try:
            return main(argv)
        except SystemExit as exited:
            return int(exited.code or 0)

    return await asyncio.to_thread(run)


def _url_args(mock: MockHostedAI, ca_bundle: str) -> list[str]:
    return ["--target", mock.url, "--api-key-env", "TLS_TEST_KEY", "--ca-bundle", ca_bundle]


@pytest.mark.parametrize("serving", ["good"], indirect=True)
async def test_the_harness_passes_against_an_https_mock_with_its_ca_bundle(
    serving: MockHostedAI, certificates: Certificates, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TLS_TEST_KEY", serving.api_key)
    monkeypatch.setenv("TLS_TEST_ADMIN", serving.admin_token or "")
    argv = ["stateful", *_url_args(serving, certificates.ca_bundle), "--admin-token-env", "TLS_TEST_ADMIN"]
    assert await _harness([*argv, "--examples", "2", "--report-dir", str(tmp_path)]) == 0
    assert '"failed": 0' in (tmp_path / "summary.json").read_text()


@pytest.mark.parametrize(
    ("serving", "says", "hint"),
    [
        ("other_ca", "presented a certificate from a CA the client does not trust", "pass the CA that issued it"),
        ("expired", "presented an expired certificate (certificate has expired)", "needs a renewed certificate"),
        ("wrong_host", "presented a certificate issued for another host name", "use a host name the certificate"),
    ],
    indirect=["serving"],
)
async def test_a_certificate_the_client_must_refuse_is_exit_2_with_one_line(
    serving: MockHostedAI,
    certificates: Certificates,
    says: str,
    hint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TLS_TEST_KEY", serving.api_key)
    assert await _harness(["contract", *_url_args(serving, certificates.ca_bundle)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"hostedai-harness: error: TLS: {serving.url} {says}")
    assert f"the client trusts the CA bundle {certificates.ca_bundle}" in err
    assert hint in err
    assert "Traceback" not in err


def test_a_tls_mock_process_serves_https_and_its_target_trusts_exactly_its_ca() -> None:
    with MockProcess(seed=0, tls=True).running() as target:
        assert target.url.startswith("https://127.0.0.1:")
        assert target.ca_bundle is not None
        assert Path(target.ca_bundle).is_file()
        asyncio.run(preflight(target))
        with pytest.raises(TargetError, match="presented a certificate from a CA the client does not trust"):
            asyncio.run(preflight(replace(target, ca_bundle=None)))
    assert not Path(target.ca_bundle).exists()  # the run's CA goes with the run


def test_the_tls_flag_runs_the_suites_against_an_https_mock_process(tmp_path: Path) -> None:
    assert main(["stateful", "--tls", "--examples", "2", "--report-dir", str(tmp_path)]) == 0
    assert '"failed": 0' in (tmp_path / "summary.json").read_text()


def test_tls_is_refused_for_a_url_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contract", "--tls", "--target", "https://api.hosted.ai"]) == 2
    assert "--tls is for --target mock" in capsys.readouterr().err


PLUGIN_TESTS = """
from harness.connector import Requirements


async def test_allocate_over_https(hostedai_mock, hostedai_connector):
    assert hostedai_connector.config.base_url.startswith("https://")
    async with hostedai_connector.allocation(Requirements(model="gemma-270m", tflops=5, vram_mb=2048)):
        pass
"""


def test_the_pytest_plugin_serves_its_mock_over_https_on_request(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_team=PLUGIN_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--hostedai-tls")
    result.assert_outcomes(passed=1)
