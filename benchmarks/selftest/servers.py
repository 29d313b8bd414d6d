"""Servers for the self-test: the mock, clean or with one defect, served in this process on loopback, and
nginx as a transparent reverse proxy in front of any of them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from benchmarks.processes import free_port, nginx_binary, stop
from benchmarks.selftest.defects import Defect
from mock_server.api.app import create_app
from mock_server.config import default_config, parse_config

# aiohttp logs, with a traceback, every request its parser refuses (schemathesis sends a NUL byte in a
# header on purpose); the mock answers it with a 400, and that is all the self-test needs to know.
logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)


def _merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@contextlib.asynccontextmanager
async def served_mock(defect: Defect | None = None, seed: int = 0) -> AsyncIterator[str]:
    """The mock (default config, manual clock, strict unless broken) on a free loopback port; its URL.

    A broken mock is not strict, so its defect reaches the wire instead of becoming strict mode's 500."""
    data = default_config().model_dump()
    data["server"].update(host="127.0.0.1", port=0, strict=defect is None)
    data["simulation"].update(seed=seed, clock="manual")
    if defect is not None and defect.config:
        data = _merged(data, defect.config)
    app = create_app(parse_config(data, "self-test config"))
    if defect is not None and defect.middleware is not None:
        app.middlewares.insert(0, defect.middleware)  # outermost: it rewrites what the mock answered
    with pytest.MonkeyPatch.context() as mp:
        if defect is not None and defect.patch is not None:
            defect.patch(mp)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            yield f"http://{host}:{port}"
        finally:
            await runner.cleanup()


NGINX_CONF = """\
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  client_max_body_size 4m;
  # Bodies stay in memory: nginx's workers (another user when started as root) could not write the
  # temporary directory's body files, and a body over 16 KB came back as nginx's own 500.
  client_body_buffer_size 4m;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass {upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 300s;
    }}
  }}
}}
"""


@contextlib.contextmanager
def nginx_proxy(upstream: str) -> Iterator[str]:
    """nginx (Debian's package) forwarding everything to `upstream`; its URL. Raises when not installed."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx-light)")
    with tempfile.TemporaryDirectory(prefix="selftest-nginx-") as tmp:
        port = free_port()
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=tmp, port=port, upstream=upstream))
        process = subprocess.Popen([binary, "-c", str(conf), "-p", tmp], stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
                if process.poll() is not None:
                    raise RuntimeError(f"nginx exited: {process.stderr.read().decode() if process.stderr else ''}")
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(process)


async def wait_until_listening(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    for _ in range(100):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            return
        await asyncio.sleep(0.05)
