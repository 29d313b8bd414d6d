"""`hostedai-mock fanout`: one control plane for N cells (docs/cells.md).

hostedai-mock fanout --cell a=http://127.0.0.1:8001 --cell b=http://127.0.0.1:8002 --port 8009
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from aiohttp import web

from mock_server import serving
from mock_server.api.problems import ApiError, render
from mock_server.cells.app import create_fanout_app
from mock_server.cells.topology import Cell, parse_cells
from mock_server.logs import AccessLog, configure_logging
from mock_server.serving import ConnectionLimits
from mock_server.version import __version__

# The cells from the environment, comma-separated `NAME=URL`s, for a container whose command line is
# fixed (compose, a Deployment).
CELLS_ENV = "HOSTEDAI_CELLS"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hostedai-mock fanout",
        description="The control plane (/_admin) of several mock cells at one URL: each call goes to every cell.",
    )
    parser.add_argument(
        "--cell",
        action="append",
        default=[],
        metavar="NAME=URL",
        help=f"a cell's name and base URL (repeatable; default: ${CELLS_ENV}, comma-separated)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8009, help="port to listen on (default 8009; 0 picks a free one)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a cell has to answer (default 30)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def resolve_cells(args: argparse.Namespace) -> list[Cell]:
    specs = args.cell or [s.strip() for s in os.environ.get(CELLS_ENV, "").split(",") if s.strip()]
    return parse_cells(specs)


def _protocol_problem(status: int) -> web.Response:
    code = "internal_error" if status >= 500 else "invalid_request"
    return render(ApiError(code, "The request is not well-formed HTTP/1.1.", status=status), "req_unparsed")


def main(argv: list[str] | None = None, *, started: Callable[[str], None] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cells = resolve_cells(args)
    except ValueError as exc:
        print(f"hostedai-mock fanout: error: {exc}", file=sys.stderr)
        return 2
    if args.timeout <= 0:
        print("hostedai-mock fanout: error: --timeout must be above 0", file=sys.stderr)
        return 2
    app = create_fanout_app(cells, timeout_s=args.timeout)
    names = ", ".join(f"{c.name} {c.url}" for c in cells)

    def banner(url: str) -> None:
        print(f"HostedAI fan-out listening on {url}  (cells {names})", flush=True)

    # It holds no token (callers send theirs to the cells), so it may listen anywhere the cells may be reached.
    stop_logging = configure_logging(args.log_level, [])
    try:
        asyncio.run(
            serving.serve(
                app,
                host=args.host,
                port=args.port,
                limits=ConnectionLimits(),
                render_problem=_protocol_problem,
                access_log=AccessLog,
                started=started
                or (lambda url: print(f"HostedAI fan-out listening on {url}  (cells {names})", flush=True)),
            )
        )
    except OSError as exc:
        print(f"hostedai-mock fanout: error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    finally:
        stop_logging()
    return 0
