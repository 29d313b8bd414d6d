"""A pytest plugin for teams' own suites (entry point `pytest11`), documented in docs/harness.md.

It works in any project: with pytest-asyncio in strict mode (its default) or auto mode, and with no
asyncio plugin at all. Every fixture but `hostedai_connector` is synchronous, so sync tests (requests,
httpx, urllib) need nothing else; the mock is a separate process, so it answers while a sync test blocks.

Fixtures (`pytest --fixtures` shows their docstrings):
- `hostedai_target` (session): where HostedAI is: a mock process started once per session, or the URL
  of `--hostedai-target URL`, its key read from `--hostedai-api-key-env` (default HOSTED_AI_API_KEY)
  and its private CA, if any, from `--hostedai-ca-bundle`. `--hostedai-tls` serves the mock processes
  over HTTPS (a CA made for the session, which the target trusts).
- `hostedai_mock`: the mock's target, reset before each test and prepared as the test's
  `@pytest.mark.hostedai(...)` asks; skipped against a live target, which has no control plane.
- `hostedai_admin`: a `SyncControlPlane` for that mock: faults, scenarios, clock, journal, leaks.
- `hostedai_connector` (async): a `HostedAiConnector` pointed at the target, closed after the test.

The marker, `@pytest.mark.hostedai(scenario=..., seed=..., clock=..., time_scale=..., faults=...)`: a
marked test always gets a freshly reset mock prepared as it asks, whichever fixtures it uses.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

import pytest
from prometheus_client import CollectorRegistry

from harness.connector import ConnectorMetrics, HostedAiConnector, parse_connector_config
from harness.control_plane import ControlPlaneError, SyncControlPlane
from harness.target import MockProcess, Target, TargetError, url_target

_F = TypeVar("_F", bound=Callable[..., Any])


def _async_fixture(function: _F) -> _F:
    """An async fixture that works in pytest-asyncio's strict mode (its default), which runs only the
    fixtures declared through it, and in auto mode; without pytest-asyncio, a plain async fixture for
    whichever async plugin runs the test."""
    try:
        import pytest_asyncio
    except ImportError:
        return cast(_F, pytest.fixture(function))
    return cast(_F, pytest_asyncio.fixture(function))


MARKER = "hostedai"
_MARKER_HELP = (
    "hostedai(scenario=None, seed=None, clock='manual', time_scale=0.01, faults=()): run the test against a "
    "freshly reset mock HostedAI with these named scenarios applied, this seed, this clock ('manual': time "
    "moves only with hostedai_admin.advance(); 'real': scaled by time_scale) and these fault rules"
)
_DEFAULT_REAL_TIME_SCALE = 0.01


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hostedai", "HostedAI harness")
    group.addoption("--hostedai-target", default="mock", help="`mock` (a mock process, default) or a base URL")
    group.addoption("--hostedai-api-key-env", default="HOSTED_AI_API_KEY", help="variable holding the API key")
    group.addoption("--hostedai-seed", type=int, default=0, help="the mock's seed (default 0)")
    group.addoption("--hostedai-ca-bundle", help="a live target's private CA (PEM file); TLS is always verified")
    group.addoption("--hostedai-tls", action="store_true", help="serve the mock over HTTPS with a CA made for it")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER_HELP)


@dataclass(frozen=True, slots=True)
class MockPreset:
    """What a test's `@pytest.mark.hostedai(...)` asks of the mock."""

    scenarios: tuple[str, ...] = ()
    seed: int | None = None
    clock: Literal["manual", "real"] = "manual"
    time_scale: float = _DEFAULT_REAL_TIME_SCALE
    faults: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_marker(cls, marker: pytest.Mark | None) -> MockPreset:
        if marker is None:
            return cls()
        if marker.args:
            raise _usage("takes keyword arguments only (scenario=, seed=, clock=, time_scale=, faults=)")
        kwargs = dict(marker.kwargs)
        unknown = sorted(set(kwargs) - {"scenario", "seed", "clock", "time_scale", "faults"})
        if unknown:
            raise _usage(f"unknown argument {unknown[0]!r} (known: scenario, seed, clock, time_scale, faults)")
        scenario = kwargs.get("scenario") or ()
        scenarios = (scenario,) if isinstance(scenario, str) else tuple(scenario)
        clock = kwargs.get("clock", "manual")
        if clock not in ("manual", "real"):
            raise _usage(f"clock must be 'manual' or 'real', not {clock!r}")
        if "time_scale" in kwargs and clock != "real":
            raise _usage("time_scale needs clock='real' (the manual clock moves only when advanced)")
        seed = kwargs.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise _usage(f"seed must be a whole number ≥ 0, not {seed!r}")
        time_scale = kwargs.get("time_scale", _DEFAULT_REAL_TIME_SCALE)
        if not isinstance(time_scale, int | float) or time_scale <= 0:
            raise _usage(f"time_scale must be a number > 0, not {time_scale!r}")
        faults = kwargs.get("faults") or ()
        faults = (faults,) if isinstance(faults, Mapping) else tuple(faults)
        return cls(scenarios, seed, clock, float(time_scale), faults)

    @property
    def process_key(self) -> tuple[str, float]:
        return ("manual", 0.0) if self.clock == "manual" else ("real", self.time_scale)


class MarkerError(ValueError):
    """A `hostedai` marker the plugin cannot follow (the test fails with this one line)."""


def _usage(message: str) -> MarkerError:
    return MarkerError(f"@pytest.mark.{MARKER}: {message}")


@dataclass(slots=True)
class _MockProcesses:
    """The session's mock processes, one per clock, started on first use and stopped at the end."""

    seed: int
    tls: bool = False
    _running: dict[tuple[str, float], Target] = field(default_factory=dict)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def get(self, key: tuple[str, float]) -> Target:
        if key not in self._running:
            clock, scale = key
            extra = () if clock == "manual" else ("--clock", "real", "--time-scale", repr(scale))
            self._running[key] = self._stack.enter_context(MockProcess(self.seed, extra, tls=self.tls).running())
        return self._running[key]

    def close(self) -> None:
        self._stack.close()


@pytest.fixture(scope="session")
def _hostedai_processes(request: pytest.FixtureRequest) -> Iterator[_MockProcesses | None]:
    if request.config.getoption("--hostedai-target") != "mock":
        yield None
        return
    processes = _MockProcesses(request.config.getoption("--hostedai-seed"), request.config.getoption("--hostedai-tls"))
    try:
        yield processes
    finally:
        processes.close()


@pytest.fixture(scope="session")
def hostedai_target(request: pytest.FixtureRequest, _hostedai_processes: _MockProcesses | None) -> Target:
    """Where HostedAI is, for the whole session: `.url`, `.api_key` (and for the mock `.admin_token`).

    By default a mock process (`hostedai-mock`, manual clock, strict, seeded by `--hostedai-seed`)
    started once per session; with `--hostedai-target URL` a live HostedAI, its key read from the
    variable `--hostedai-api-key-env` names (default HOSTED_AI_API_KEY). Not reset between tests: ask
    for `hostedai_mock` for that."""
    if _hostedai_processes is None:
        try:
            return url_target(
                request.config.getoption("--hostedai-target"),
                api_key_env=request.config.getoption("--hostedai-api-key-env"),
                ca_bundle=request.config.getoption("--hostedai-ca-bundle"),
            )
        except TargetError as exc:
            pytest.fail(f"--hostedai-target: {exc}", pytrace=False)
    return _hostedai_processes.get(MockPreset().process_key)


@pytest.fixture
def hostedai_mock(request: pytest.FixtureRequest, _hostedai_processes: _MockProcesses | None) -> Iterator[Target]:
    """The mock's target, reset before the test (no allocations, usage, journal or extra faults; the
    seed of `--hostedai-seed`), then prepared as the test's `@pytest.mark.hostedai(...)` asks: its
    `scenario` (a name or a list) and `faults` applied, its `seed`, and its `clock` (`real` runs a
    second mock process whose clock is scaled by `time_scale`).

    Has `.url`, `.api_key` and `.admin_token`. Its fault rules are cleared after the test, so they never
    reach a later test. The test is skipped against a live target, which has no control plane."""
    try:
        preset = MockPreset.from_marker(request.node.get_closest_marker(MARKER))
    except MarkerError as exc:
        pytest.fail(str(exc), pytrace=False)
    if _hostedai_processes is None:
        pytest.skip("needs the mock's control plane (--hostedai-target is a live URL)")
    target = _hostedai_processes.get(preset.process_key)
    admin = _admin(target)
    try:
        admin.reset(preset.seed)
        for name in preset.scenarios:
            admin.apply_scenario(name)
        for rule in preset.faults:
            admin.add_fault(rule)
    except ControlPlaneError as exc:
        pytest.fail(f"@pytest.mark.{MARKER}: the mock refused it: {exc}", pytrace=False)
    yield target
    try:
        admin.clear_faults()
    except ControlPlaneError as exc:
        pytest.fail(f"hostedai_mock: could not clear the test's faults: {exc}", pytrace=False)


@pytest.fixture
def hostedai_admin(hostedai_mock: Target) -> SyncControlPlane:
    """A `harness.control_plane.SyncControlPlane` for `hostedai_mock` (reset, prepared): add faults,
    apply scenarios, advance the manual clock, read the journal, the leaks and the state. Synchronous,
    so it serves sync and async tests alike."""
    return _admin(hostedai_mock)


def _admin(target: Target) -> SyncControlPlane:
    """The control plane of a mock process, trusting the CA it was started with (under --hostedai-tls)."""
    trust = ssl.create_default_context(cafile=target.ca_bundle) if target.ca_bundle else None
    return SyncControlPlane(target.url, target.admin_token or "", ssl_context=trust)


@pytest.fixture(autouse=True)
def _hostedai_marked(request: pytest.FixtureRequest) -> None:
    """A test marked `hostedai` gets the prepared mock whichever fixtures it asks for (or is skipped)."""
    if request.node.get_closest_marker(MARKER) is not None:
        request.getfixturevalue("hostedai_mock")


@pytest.fixture
def _hostedai_test_target(request: pytest.FixtureRequest, hostedai_target: Target) -> Target:
    """The session's target, or for a test marked `hostedai` the mock prepared as it asks."""
    if request.node.get_closest_marker(MARKER) is not None:
        target: Target = request.getfixturevalue("hostedai_mock")
        return target
    return hostedai_target


@_async_fixture
async def hostedai_connector(_hostedai_test_target: Target) -> AsyncIterator[HostedAiConnector]:
    """A `HostedAiConnector` (the resilient client: retries, circuit breaker, idempotent allocate)
    pointed at the target, with metrics of its own, closed after the test (anything it still holds is
    released). Async: it needs pytest-asyncio (strict or auto mode) or another asyncio test runner; a
    test marked `hostedai` gets it pointed at the freshly prepared mock."""
    target = _hostedai_test_target
    config = parse_connector_config(
        {"hosted_ai": {"base_url": target.url, "api_key": target.api_key, "ca_bundle": target.ca_bundle}}
    )
    async with HostedAiConnector(config, metrics=ConnectorMetrics(CollectorRegistry())) as connector:
        yield connector
