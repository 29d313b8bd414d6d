"""`MockHostedAI`: the mock server in-process, on a free loopback port, for anyone's test suite.

async with MockHostedAI() as mock:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {mock.api_key}"}) as s:
        await s.get(f"{mock.url}/v1/pools")
    mock.sim.allocations  # the simulator's state, to assert on

From sync code the same object serves from a background thread (`mock_server/background.py`):
`with MockHostedAI() as mock:`, or `@mock` on a function.
`MockHostedAI(tls=True)` serves HTTPS with a CA made for it; `mock.ca_bundle` is that CA's certificate,
for the client to trust. `tls=` also takes an `ssl.SSLContext` (a test's own, even a broken, certificate).
"""

from __future__ import annotations

import shutil
import ssl
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Literal

from aiohttp import web

from mock_server.api.app import create_app
from mock_server.api.state import STATE, ServerState
from mock_server.background import SyncEmbedding
from mock_server.config import MockConfig, load_config
from mock_server.sim.clock import Clock, ManualClock
from mock_server.sim.simulator import Simulator
from mock_server.tls import CA_FILE, context_for


class MockHostedAI(SyncEmbedding):
    def __init__(
        self,
        config: MockConfig | str | Path | None = None,
        *,
        strict: bool = True,
        clock: Literal["real", "manual"] | None = None,
        seed: int | None = None,
        time_scale: float | None = None,
        tenant: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool | ssl.SSLContext = False,
    ) -> None:
        """Strict by default: a response that breaks the contract is a loud 500, not a silent lie.
        `tenant` picks whose key `api_key` is (default: the first tenant of the config).
        `tls`: True serves HTTPS with a self-signed CA (`ca_bundle`), a context serves with it; False
        follows the config (plain HTTP unless its `server.tls_*` keys say otherwise)."""
        base = config if isinstance(config, MockConfig) else load_config(config)
        self.config = base.with_overrides(
            server={"strict": strict, "host": host, "port": port},
            simulation={"clock": clock, "seed": seed, "time_scale": time_scale},
        )
        self.tenant = tenant or next(iter(self.config.tenants))
        if self.tenant not in self.config.tenants:
            raise ValueError(f"no tenant {self.tenant!r} in the config")
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._app: web.Application | None = None
        self._tls = tls
        self._ca_dir: str | None = None
        self.ca_bundle: str | None = None
        """The CA certificate to trust when the mock made its own (tls=True, or the config's self-signed
        mode); None otherwise."""

    async def __aenter__(self) -> MockHostedAI:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        self._app = create_app(self.config)
        ssl_context = self._ssl_context()
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.server.host, self.config.server.port, ssl_context=ssl_context)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self._url = f"{'https' if ssl_context is not None else 'http'}://{host}:{port}"

    def _ssl_context(self) -> ssl.SSLContext | None:
        if isinstance(self._tls, ssl.SSLContext):
            return self._tls
        server = self.config.server
        if self._tls:
            self._ca_dir = tempfile.mkdtemp(prefix="hostedai-mock-ca-")
            server = server.model_copy(update={"tls_self_signed": self._ca_dir, "tls_cert": None, "tls_key": None})
        context = context_for(server)
        if server.tls_self_signed is not None:
            self.ca_bundle = str(Path(server.tls_self_signed) / CA_FILE)
        return context

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None
        if self._ca_dir is not None:
            shutil.rmtree(self._ca_dir, ignore_errors=True)
            self._ca_dir = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the mock is not running; use `async with MockHostedAI() as mock:`")
        return self._url

    @property
    def api_key(self) -> str:
        return self.config.tenants[self.tenant].api_keys[0]

    def api_key_for(self, tenant: str) -> str:
        return self.config.tenants[tenant].api_keys[0]

    @property
    def admin_token(self) -> str | None:
        return self.config.server.admin_token

    @property
    def state(self) -> ServerState:
        if self._app is None:
            raise RuntimeError("the mock is not running")
        return self._app[STATE]

    @property
    def sim(self) -> Simulator:
        return self.state.sim

    @property
    def clock(self) -> Clock:
        return self.state.clock

    def advance(self, seconds: float) -> float:
        """Move the manual clock forward: leases expire, and requests waiting on simulated time
        (an allocate with `wait_seconds`) look again. Returns the new simulated time."""
        clock = self.clock
        if not isinstance(clock, ManualClock):
            raise RuntimeError("advance() needs the manual clock: MockHostedAI(clock='manual')")

        def move() -> float:
            now = clock.advance(seconds)
            self.sim.tick()
            self.state.waiters.notify()
            return now

        return self.run_on_loop(move)  # from sync code, on the server's thread
