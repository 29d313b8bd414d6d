"""`hostedai-mock`: run the mock HostedAI server."""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import yaml
from aiohttp import web
from pydantic import ValidationError

from mock_server import serving
from mock_server.api.app import create_app
from mock_server.api.problems import ApiError, render
from mock_server.api.proxy import UPSTREAM
from mock_server.api.state import ARRIVED, STATE
from mock_server.config import ConfigError, MockConfig, load_config, parse_config
from mock_server.logs import AccessLog, configure_logging
from mock_server.serving import ConnectionLimits
from mock_server.serving_profiles import ProfileLibrary
from mock_server.tls import ca_file, context_for
from mock_server.version import __version__


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line and exit code 2, as every command of the kit does on bad input.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    _server_flags(common)
    parser = _Parser(
        prog="hostedai-mock",
        description="A stateful mock of HostedAI's GPU-as-a-Service API.",
        epilog="hostedai-mock fanout --help: one control plane for several mocks run as cells (docs/cells.md).",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="{proxy,calibrate}")
    text = "serve the public API by forwarding to an upstream HostedAI, with the control plane's faults applied"
    proxy = sub.add_parser("proxy", help=text, description=text, parents=[common])
    proxy.add_argument("--upstream", required=True, metavar="URL", help="the HostedAI base URL to forward to")
    proxy.add_argument(
        "--record", metavar="FILE", help="write the upstream's answers as a drift trace (for `calibrate`)"
    )
    text = "fit serving profiles to a trace of `hostedai-harness record`, with their held-out error"
    cal = sub.add_parser("calibrate", help=text, description=text)
    cal.add_argument("trace", help="a trace written by `hostedai-harness record`")
    cal.add_argument("-o", "--out", required=True, help="the profile file to write (the format of --profile)")
    cal.add_argument("--config", help="the mock config whose profiles are the starting point (default: packaged)")
    cal.add_argument(
        "--min-samples", type=int, default=12, help="fewer inferences of a cell than this are refused (default 12)"
    )
    return parser


def _server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (default: the packaged default config)")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="serving profiles (the format of serving_profiles.yaml, e.g. from `calibrate`) over the config's",
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8000; 0 picks a free one)")
    parser.add_argument("--seed", type=int, help="seed of every random choice (default 0)")
    parser.add_argument("--time-scale", type=float, help="real seconds per simulated second (default 1.0)")
    parser.add_argument("--clock", choices=["real", "manual"], help="real (scaled) time or a manual clock")
    parser.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME",
        help="apply a named fault scenario at start (repeatable; see docs/faults.md)",
    )
    parser.add_argument(
        "--cell",
        metavar="NAME",
        help=f"run as this cell (region) of several: its ids carry the name (default: ${CELL_ENV}; docs/cells.md)",
    )
    parser.add_argument(
        "--strict", action="store_true", default=None, help="validate every response too; a violation is a 500"
    )
    parser.add_argument(
        "--admin-token",
        help=f"the control plane's token (default: ${ADMIN_TOKEN_ENV}, else the config's server.admin_token)",
    )
    parser.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM; with --tls-key)")
    parser.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM)")
    parser.add_argument(
        "--tls-self-signed",
        metavar="DIR",
        help="serve HTTPS with a CA made at start-up; its certificate is written to DIR/ca.pem for clients",
    )
    parser.add_argument(
        "--tls-name",
        action="append",
        default=[],
        metavar="NAME",
        help="another host name the self-signed certificate is valid for (repeatable; e.g. a service name)",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


ADMIN_TOKEN_ENV = "HOSTEDAI_ADMIN_TOKEN"
# A cell's name from the environment, so N replicas of one container spec (a StatefulSet) can each be
# given their own without a command line of their own.
CELL_ENV = "HOSTEDAI_CELL"
# The token the packaged default config ships with: fine on loopback, never on a shared network.
BUILT_IN_ADMIN_TOKEN = "dev-admin"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def resolve_config(args: argparse.Namespace) -> MockConfig:
    config = load_config(args.config)
    admin_token = args.admin_token or os.environ.get(ADMIN_TOKEN_ENV) or None
    config = config.with_overrides(
        server={
            "host": args.host,
            "port": args.port,
            "strict": args.strict,
            "admin_token": admin_token,
            **_tls_overrides(args),
        },
        simulation={
            "seed": args.seed,
            "time_scale": args.time_scale,
            "clock": args.clock,
            "cell": args.cell or os.environ.get(CELL_ENV) or None,
        },
    )
    if args.scenario:
        config = config.model_copy(update={"scenarios": [*config.scenarios, *args.scenario]})
    if args.profile:
        config = with_profiles(config, Path(args.profile))
    server = config.server
    if server.admin_token == BUILT_IN_ADMIN_TOKEN and server.host not in _LOOPBACK:
        raise ConfigError(
            f"refusing to serve the control plane on {server.host} with the built-in admin token; "
            f"set one with --admin-token or ${ADMIN_TOKEN_ENV}"
        )
    return config


def with_profiles(config: MockConfig, path: Path) -> MockConfig:
    """The config with a profile library's profiles over its own (and the packaged ones) of the same name."""
    try:
        profiles = ProfileLibrary.model_validate(yaml.safe_load(path.read_text("utf-8"))).profiles
    except OSError as exc:
        raise ConfigError(f"--profile {path}: cannot read it ({exc.strerror or exc})") from None
    except yaml.YAMLError:
        raise ConfigError(f"--profile {path}: not valid YAML") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(f"--profile {path}: not a serving profile file: {where}: {first['msg']}") from None
    data = config.model_dump()
    data["serving_profiles"] = {**data["serving_profiles"], **{k: v.model_dump() for k, v in profiles.items()}}
    return parse_config(data)


def _tls_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The command line's TLS flags over the config file's (an unset flag keeps the file's value)."""
    names = {"tls_names": args.tls_name} if args.tls_name else {}
    return {"tls_cert": args.tls_cert, "tls_key": args.tls_key, "tls_self_signed": args.tls_self_signed, **names}


def banner(config: MockConfig, url: str, upstream: str | None = None) -> str:
    """The start-up line: where the mock listens and how it runs. It names tenants, never their keys."""
    if upstream is not None:
        control = "control plane on" if config.server.admin_token else "no control plane"
        clock = config.simulation.clock
        return f"HostedAI mock listening on {url}  (fault proxy to {upstream}; {control}; clock {clock})"
    tenants = ", ".join(config.tenants)
    control = "control plane on" if config.server.admin_token else "no control plane"
    ca = ca_file(config.server)
    tls = f"; clients trust {ca}" if ca is not None else ""
    cell = f"cell {config.simulation.cell}; " if config.simulation.cell else ""
    return (
        f"HostedAI mock listening on {url}  ({cell}tenants {tenants}; {control}; clock {config.simulation.clock}, "
        f"{_seeding(config)}{', strict' if config.server.strict else ''}{tls})"
    )


def _seeding(config: MockConfig) -> str:
    seed = config.simulation.seed
    return f"seed {seed}" if seed is not None else "no seed: ids fresh on every start, --seed N replays"


def connection_limits(config: MockConfig) -> ConnectionLimits:
    server = config.server
    return ConnectionLimits(
        idle_timeout_s=server.idle_timeout_s,
        header_timeout_s=server.header_timeout_s,
        body_timeout_s=server.body_timeout_s,
        max_connections=server.max_connections,
        shutdown_timeout_s=server.shutdown_timeout_s,
    )


def protocol_problem(app: web.Application) -> Callable[[int], web.Response]:
    """The answer to a request aiohttp could not parse: problem+json that quotes none of the input."""

    def render_problem(status: int) -> web.Response:
        code = "internal_error" if status >= 500 else "invalid_request"
        detail = "The server failed to handle the request." if status >= 500 else _MALFORMED
        return render(ApiError(code, detail, status=status), app[STATE].request_id(None))

    return render_problem


_MALFORMED = "The request is not well-formed HTTP/1.1 (request line, headers or body framing)."


async def serve(app: web.Application, config: MockConfig, ssl_context: ssl.SSLContext | None = None) -> None:
    upstream = app.get(UPSTREAM)
    await serving.serve(
        app,
        host=config.server.host,
        port=config.server.port,
        limits=connection_limits(config),
        render_problem=protocol_problem(app),
        access_log=AccessLog,
        started=lambda url: print(banner(config, url, upstream.url if upstream else None), flush=True),
        ssl_context=ssl_context,
        arrived_key=ARRIVED,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["fanout"]:
        # `hostedai-mock fanout`: the control plane of several cells (docs/cells.md).
        from mock_server.fanout import main as fanout_main

        return fanout_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "calibrate":
        return _calibrate(args)
    upstream = getattr(args, "upstream", None)
    try:
        if upstream is not None:
            _check_upstream(upstream)
            args.strict = False  # the upstream's answers are what they are: the proxy passes them on
        config = resolve_config(args)
        record = getattr(args, "record", None)
        app = create_app(config, upstream=upstream, record=_writable(record) if record else None)
        ssl_context = context_for(config.server)
    except ConfigError as exc:
        print(f"hostedai-mock: error: {exc}", file=sys.stderr)
        return 2
    stop_logging = configure_logging(args.log_level, secrets(config))
    try:
        asyncio.run(serve(app, config, ssl_context))
    except OSError as exc:
        print(
            f"hostedai-mock: error: cannot listen on {config.server.host}:{config.server.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    finally:
        stop_logging()
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from mock_server.calibrate.command import run  # the simulator's fitting: loaded only when asked for

    if args.min_samples < 3:
        print("hostedai-mock: error: --min-samples must be at least 3 (see --help)", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"hostedai-mock: error: {exc}", file=sys.stderr)
        return 2
    return run(args.trace, args.out, config, args.min_samples)


def _writable(value: str) -> Path:
    path = Path(value).expanduser().resolve()
    if not path.parent.is_dir():
        raise ConfigError(f"--record {value}: no such directory {path.parent}")
    return path


def _check_upstream(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"--upstream must be an http(s) base URL such as https://api.hosted.ai, not {url!r}")


def secrets(config: MockConfig) -> list[str]:
    """What no log line may show: every tenant's API keys and the admin token."""
    keys = [key for tenant in config.tenants.values() for key in tenant.api_keys]
    return [*keys, *([config.server.admin_token] if config.server.admin_token else [])]
