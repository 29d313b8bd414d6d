"""The typed keys of what the service shares between requests."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry

from harness.connector import HostedAiConnector
from harness.orchestrator import Orchestrator
from harness.service.config import HarpoonConfig
from harness.service.contract import ProcessContract
from harness.service.metrics import ServiceMetrics

CONFIG = web.AppKey("config", HarpoonConfig)
REGISTRY = web.AppKey("registry", CollectorRegistry)
METRICS = web.AppKey("metrics", ServiceMetrics)
CONTRACT = web.AppKey("contract", ProcessContract)
# Set on start-up by the app's cleanup context, which owns their lifetime.
CONNECTOR = web.AppKey("connector", HostedAiConnector)
ORCHESTRATOR = web.AppKey("orchestrator", Orchestrator)

REQUEST_ID = web.RequestKey("request_id", str)
