"""`harpoon-service`: run Harpoon's `/v2/process` service.

Bad flags or a bad config file: one line on stderr and exit code 2, as every command of the kit does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from aiohttp import web

from harness.argparsing import OneLineParser
from harness.resources import HARPOON_CONFIG
from harness.service.app import create_service_app
from harness.service.config import HarpoonConfig, ServiceConfigError, load_service_config

PROG = "harpoon-service"
# Shipped in the package (pyproject force-includes it), so the command starts anywhere, not only in a checkout.
DEFAULT_CONFIG = str(HARPOON_CONFIG)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="Harpoon's /v2/process service, running requests on HostedAI.")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config (default: the packaged harpoon.yaml)")
    parser.add_argument("--host", help="address to listen on (default: the config's, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: the config's, 8080; 0 picks one)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


async def serve(app: web.Application, config: HarpoonConfig) -> None:
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.service.host, config.service.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        print(f"harpoon-service listening on http://{host}:{port}  (HostedAI {config.hosted_ai.base_url})", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_service_config(args.config).with_listen(args.host, args.port)
    except ServiceConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(create_service_app(config), config))
    except OSError as exc:
        print(
            f"{PROG}: error: cannot listen on {config.service.host}:{config.service.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
