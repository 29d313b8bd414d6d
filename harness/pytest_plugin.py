"""A pytest plugin for teams' own suites (entry point `pytest11`), documented in docs/harness.md.

Fixtures:
- `hostedai_target` (session): where HostedAI is. With `--hostedai-target mock` (the default) an
  embedded mock process, started once per session; with `--hostedai-target URL` a live HostedAI,
  its key read from `--hostedai-api-key-env` (default HOSTED_AI_API_KEY) and its private CA, if any,
  from `--hostedai-ca-bundle`. `--hostedai-tls` serves the mock process over HTTPS (a CA made for the
  session, which the target trusts).
- `hostedai_mock`: the embedded mock's target, reset (`POST /_admin/reset`) before each test; a test
  that asks for it is skipped against a live target, which has no control plane.
- `hostedai_connector`: a `HostedAiConnector` pointed at the target, closed after the test.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator

import pytest
from prometheus_client import CollectorRegistry

from harness.connector import ConnectorMetrics, HostedAiConnector, parse_connector_config
from harness.control_plane import SyncControlPlane
from harness.target import MockProcess, Target, url_target


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hostedai", "HostedAI harness")
    group.addoption("--hostedai-target", default="mock", help="`mock` (embedded, default) or a HostedAI base URL")
    group.addoption("--hostedai-api-key-env", default="HOSTED_AI_API_KEY", help="variable holding the API key")
    group.addoption("--hostedai-seed", type=int, default=0, help="the embedded mock's seed")
    group.addoption("--hostedai-ca-bundle", help="a live target's private CA (PEM file); TLS is always verified")
    group.addoption("--hostedai-tls", action="store_true", help="serve the mock over HTTPS with a CA made for it")


@pytest.fixture(scope="session")
def hostedai_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    where = request.config.getoption("--hostedai-target")
    if where != "mock":
        yield url_target(
            where,
            api_key_env=request.config.getoption("--hostedai-api-key-env"),
            ca_bundle=request.config.getoption("--hostedai-ca-bundle"),
        )
        return
    mock = MockProcess(request.config.getoption("--hostedai-seed"), tls=request.config.getoption("--hostedai-tls"))
    with mock.running() as target:
        yield target


@pytest.fixture
def hostedai_mock(hostedai_target: Target) -> Target:
    if not hostedai_target.has_control_plane:
        pytest.skip("needs the embedded mock's control plane (--hostedai-target is a live URL)")
    trust = ssl.create_default_context(cafile=hostedai_target.ca_bundle) if hostedai_target.ca_bundle else None
    SyncControlPlane(hostedai_target.url, hostedai_target.admin_token or "", ssl_context=trust).reset()
    return hostedai_target


@pytest.fixture
async def hostedai_connector(hostedai_target: Target) -> AsyncIterator[HostedAiConnector]:
    config = parse_connector_config(
        {
            "hosted_ai": {
                "base_url": hostedai_target.url,
                "api_key": hostedai_target.api_key,
                "ca_bundle": hostedai_target.ca_bundle,
            }
        }
    )
    async with HostedAiConnector(config, metrics=ConnectorMetrics(CollectorRegistry())) as connector:
        yield connector
