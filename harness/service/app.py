"""`create_service_app`: the aiohttp application of Harpoon's `/v2/process` service.

One HostedAI connector (one `ClientSession`) is shared by every request: created on start-up in the
app's cleanup context and closed on shutdown, after its pending releases. A connector passed in
(tests, embedding) is used as is and left open: whoever made it closes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from harness.connector import ConnectorMetrics, HostedAiConnector
from harness.orchestrator import Orchestrator
from harness.service import handlers
from harness.service.config import HarpoonConfig
from harness.service.contract import PROCESS_PATH, ProcessContract
from harness.service.inputs import MAX_BODY_BYTES
from harness.service.keys import CONFIG, CONNECTOR, CONTRACT, METRICS, ORCHESTRATOR, REGISTRY
from harness.service.metrics import ServiceMetrics
from harness.service.middleware import COUNTED_ROUTE, request_middleware


def _hosted_ai(injected: HostedAiConnector | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        config = app[CONFIG]
        connector = injected or HostedAiConnector(config.hosted_ai, metrics=ConnectorMetrics(app[REGISTRY]))
        app[CONNECTOR] = connector
        app[ORCHESTRATOR] = Orchestrator(connector, config.classes, batching=config.batching)
        try:
            yield
        finally:
            if injected is None:
                await connector.close()

    return context


def create_service_app(
    config: HarpoonConfig,
    *,
    connector: HostedAiConnector | None = None,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    """The service's app. `registry` is where `/metrics` reads from and the service's metrics (and the
    connector's, when the app builds it) are registered. Default: an injected connector's registry,
    else a fresh one."""
    if registry is None:
        registry = connector.metrics.registry if connector is not None else CollectorRegistry()
    app = web.Application(middlewares=[request_middleware], client_max_size=MAX_BODY_BYTES)
    app[CONFIG] = config
    app[REGISTRY] = registry
    app[METRICS] = ServiceMetrics(registry)
    app[CONTRACT] = ProcessContract.load()
    app.cleanup_ctx.append(_hosted_ai(connector))
    app.router.add_post(PROCESS_PATH, handlers.process, name=COUNTED_ROUTE)
    app.router.add_get("/health", handlers.health, name="health", allow_head=False)
    app.router.add_get("/metrics", handlers.metrics, name="metrics", allow_head=False)
    return app
