"""`harpoon-service`: run Harpoon's `/v2/process` service.

Bad flags or a bad config file: one line on stderr and exit code 2, as every command of the kit does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiohttp import web

from harness.argparsing import OneLineParser
from harness.connector import ConnectorConfigError
from harness.resources import HARPOON_CONFIG
from harness.service import serving
from harness.service.app import create_service_app
from harness.service.config import HarpoonConfig, ServiceConfigError, load_service_config
from harness.service.logs import AccessLog, configure_logging
from harness.service.middleware import request_id_for
from harness.service.problems import Problem, render
from harness.service.serving import ConnectionLimits

PROG = "harpoon-service"
# Shipped in the package (pyproject force-includes it), so the command starts anywhere, not only in a checkout.
DEFAULT_CONFIG = str(HARPOON_CONFIG)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="Harpoon's /v2/process service, running requests on HostedAI.")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config (default: the packaged harpoon.yaml)")
    parser.add_argument("--host", help="address to listen on (default: the config's, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: the config's, 8080; 0 picks one)")
    parser.add_argument(
        "--hostedai-url",
        metavar="URL",
        help="the HostedAI (or mock) to call (default: the config's hosted_ai.base_url, http://127.0.0.1:8000)",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def connection_limits(config: HarpoonConfig) -> ConnectionLimits:
    service = config.service
    return ConnectionLimits(
        idle_timeout_s=service.idle_timeout_secs,
        header_timeout_s=service.header_timeout_secs,
        body_timeout_s=service.body_timeout_secs,
        max_connections=service.max_connections,
        shutdown_timeout_s=service.shutdown_timeout_secs,
    )


def render_protocol_problem(status: int) -> web.Response:
    """The answer to a request aiohttp could not parse: problem+json that quotes none of the input."""
    if status >= 500:
        problem = Problem("internal_error", "The service failed to handle the request.")
    else:
        problem = Problem("invalid_request", "The request is not well-formed HTTP/1.1 (request line, headers or body).")
    return render(problem, request_id_for(None))


async def serve(app: web.Application, config: HarpoonConfig) -> None:
    def started(url: str) -> None:
        print(f"harpoon-service listening on {url}  (HostedAI {config.hosted_ai.base_url})", flush=True)

    await serving.serve(
        app,
        host=config.service.host,
        port=config.service.port,
        limits=connection_limits(config),
        render_problem=render_protocol_problem,
        access_log=AccessLog,
        started=started,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_service_config(args.config).with_listen(args.host, args.port).with_upstream(args.hostedai_url)
    except ServiceConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    stop_logging = configure_logging(args.log_level, secrets(config))
    try:
        asyncio.run(serve(create_service_app(config), config))
    except OSError as exc:
        print(
            f"{PROG}: error: cannot listen on {config.service.host}:{config.service.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    finally:
        stop_logging()
    return 0


def secrets(config: HarpoonConfig) -> list[str]:
    """What no log line may show: the HostedAI API key (as resolved now; a rotated one is caught by the
    `Authorization`/`Bearer` patterns)."""
    try:
        return [config.hosted_ai.resolve_api_key()]
    except ConnectorConfigError:
        return []


if __name__ == "__main__":
    sys.exit(main())
