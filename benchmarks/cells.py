"""Cells on loopback: N mock processes, the fan-out, and nginx with the shipped routing config.

The tests (`tests/cells/`) and the `cells` benchmark start the same thing the containers run
(docs/cells.md): `deploy/cells/cells.conf.template` rendered as the nginx image renders it, around it
only what an unprivileged nginx needs (a pid file, logs and temporary paths in a directory of its own).
"""

from __future__ import annotations

import contextlib
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.processes import free_port, nginx_binary, stop
from harness.target import MockProcess, Target

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "cells" / "cells.conf.template"
CELLS_CONFIG = ROOT / "configs" / "cells.yaml"
_START_S = 15.0

MAIN_CONF = """\
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_processes {workers};
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  include {dir}/cells.conf;
}}
"""


def host_port(url: str) -> str:
    return url.removeprefix("http://").rstrip("/")


def render_cells_conf(cells: Sequence[str], fanout: str, listen: str) -> str:
    """The shipped template with its three variables set, as the nginx image's envsubst sets them
    (nginx's own `$variables` are not environment variables, so they stay)."""
    servers = " ".join(f"server {address};" for address in cells)
    return string.Template(TEMPLATE.read_text()).safe_substitute(
        CELL_SERVERS=servers, FANOUT_ADDRESS=fanout, LISTEN_PORT=listen
    )


@contextlib.contextmanager
def nginx(cells: Sequence[str], fanout: str, *, workers: int = 1) -> Iterator[str]:
    """nginx routing to `cells` (host:port each) and `/_admin/` to `fanout`; its URL."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx-light)")
    with tempfile.TemporaryDirectory(prefix="cells-nginx-") as tmp:
        # Run as root, nginx's workers are another user: they must reach the temporary paths in here.
        Path(tmp).chmod(0o755)
        port = free_port()
        Path(tmp, "cells.conf").write_text(render_cells_conf(cells, fanout, f"127.0.0.1:{port}"))
        conf = Path(tmp, "nginx.conf")
        conf.write_text(MAIN_CONF.format(dir=tmp, workers=workers))
        process = subprocess.Popen(
            [binary, "-p", tmp, "-c", str(conf), "-g", "daemon off;"], stderr=subprocess.PIPE, cwd=tmp
        )
        try:
            _wait_listening(port, process, lambda: Path(tmp, "error.log").read_text(errors="replace"))
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(process)


@dataclass(frozen=True)
class Cells:
    """Started cells: each one's name and target (URL, keys), and the token they all share."""

    names: list[str]
    targets: list[Target]
    admin_token: str

    @property
    def addresses(self) -> list[str]:
        return [host_port(t.url) for t in self.targets]


@contextlib.contextmanager
def cell_processes(
    names: Sequence[str], *, admin_token: str, config: Path = CELLS_CONFIG, seed: int = 5, extra: Sequence[str] = ()
) -> Iterator[Cells]:
    """One `hostedai-mock --cell NAME` per name, same config and seed (manual clock, strict), one token."""
    with contextlib.ExitStack() as stack:
        targets = [
            stack.enter_context(
                MockProcess(
                    seed=seed,
                    # After the process's own --admin-token, so it wins: the fan-out relays one token to all.
                    extra_args=["--config", str(config), "--cell", name, f"--admin-token={admin_token}", *extra],
                ).running()
            )
            for name in names
        ]
        yield Cells(list(names), targets, admin_token)


@contextlib.contextmanager
def fanout_process(cells: Cells, *, timeout_s: float = 10.0) -> Iterator[str]:
    """`hostedai-mock fanout` over the cells, on a free loopback port; its URL."""
    specs = [f"--cell={name}={target.url}" for name, target in zip(cells.names, cells.targets, strict=True)]
    argv = [sys.executable, "-m", "mock_server", "fanout", *specs, "--port", "0", "--log-level", "WARNING"]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([*argv, "--timeout", str(timeout_s)], stdout=subprocess.PIPE, stderr=log)
        try:
            assert process.stdout is not None
            line = process.stdout.readline().decode()
            if not line.startswith("HostedAI fan-out listening on "):
                log.seek(0)
                raise RuntimeError(f"the fan-out did not start: {line!r} {log.read()[-500:]!r}")
            yield line.split()[4]
        finally:
            stop(process)


def _wait_listening(port: int, process: subprocess.Popen[bytes], said: object) -> None:
    deadline = time.monotonic() + _START_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {said() if callable(said) else ''}")
        time.sleep(0.05)
    raise RuntimeError(f"nginx did not listen on {port} within {_START_S:g} s")
