"""The compose commands start the real servers, and the health checks of docker-compose.yml and of the
Dockerfile pass against them: what a container would run, run here as processes (loopback, free ports,
the repository's root standing for the image's WORKDIR). No Docker engine is involved."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from tests.deploy.files import (
    ROOT,
    command,
    dockerfile_stages,
    entry_point,
    exec_form,
    interpolate,
    services,
)

_LISTENING = re.compile(r"listening on http://([^\s/]+):(\d+)")
_BIN = str(Path(sys.executable).parent)  # `python` of the health checks is this interpreter


def _listen_locally(args: list[str]) -> list[str]:
    """The command's arguments, listening on loopback and a free port instead of 0.0.0.0 and a fixed one."""
    result = list(args)
    for flag, value in (("--host", "127.0.0.1"), ("--port", "0")):
        result[result.index(flag) + 1] = value
    return result


@asynccontextmanager
async def _running(
    name: str, tmp_path: Path, environment: Mapping[str, str] | None = None
) -> AsyncIterator[tuple[str, int]]:
    """A compose service's command, run through its console script's entry point; yields (host, port)."""
    words = command(services()[name])
    module, function = entry_point(words[0]).split(":")
    env = {**os.environ, **(environment or {})}
    log = tmp_path / f"{name}.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            f"import sys; from {module} import {function}; sys.exit({function}())",
            *_listen_locally(words[1:]),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        found = _LISTENING.search(line)
        assert found, f"{name} did not start: {line!r} {log.read_text()}"
        yield found.group(1), int(found.group(2))
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _run(argv: list[str], env: Mapping[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        env={**os.environ, "PATH": f"{_BIN}:{os.environ.get('PATH', '')}", **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def _compose_healthcheck(name: str, port: int) -> tuple[int, str]:
    """The service's compose healthcheck, aimed at the port the process really listens on."""
    kind, program, *args = services()[name]["healthcheck"]["test"]
    assert (kind, program) == ("CMD", "python")
    listen = int(command(services()[name])[command(services()[name]).index("--port") + 1])
    return await _run([sys.executable, *(arg.replace(f":{listen}/", f":{port}/") for arg in args)])


async def _image_healthcheck(port: int) -> tuple[int, str]:
    """The Dockerfile's HEALTHCHECK, with HEALTH_PORT as a container running that server would set it."""
    healthcheck = dockerfile_stages()[-1].last("HEALTHCHECK")
    argv = exec_form(healthcheck[healthcheck.index("CMD") + len("CMD") :].strip())
    return await _run(argv, {"HEALTH_PORT": str(port)})


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _get(url: str, headers: Mapping[str, str] | None = None) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        text = await response.text()
        return response.status, response.content_type, text


def _compose_environment(name: str, **set_variables: str) -> dict[str, str]:
    """A compose service's `environment`, rendered with `set_variables` set and every other variable unset."""
    rendered = {}
    for key, value in services()[name].get("environment", {}).items():
        for variable, given in set_variables.items():
            value = str(value).replace("${" + variable + ":-}", given)
        rendered[key] = interpolate(str(value))
    return rendered


ADMIN_TOKEN = "compose-admin-3f1c9d"


async def test_the_compose_mock_refuses_to_start_on_every_interface_without_a_token() -> None:
    words = command(services()["mock"])
    module, function = entry_point(words[0]).split(":")
    env = {k: v for k, v in os.environ.items() if k != "HOSTEDAI_ADMIN_TOKEN"} | _compose_environment("mock")
    # As written (0.0.0.0): refused before anything listens, so nothing leaves loopback here.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        f"import sys; from {module} import {function}; sys.exit({function}())",
        *words[1:],
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2, err
    assert out == b""
    (line,) = err.decode().splitlines()
    assert "built-in admin token" in line
    assert "HOSTEDAI_ADMIN_TOKEN" in line


async def test_the_compose_services_start_and_pass_their_health_checks(tmp_path: Path) -> None:
    mock_env = _compose_environment("mock", HOSTEDAI_ADMIN_TOKEN=ADMIN_TOKEN)
    async with _running("mock", tmp_path, mock_env) as (mock_host, mock_port):
        harpoon_env = {key: interpolate(str(value)) for key, value in services()["harpoon"]["environment"].items()}
        # Only the address differs: the compose network's `mock` is this process's loopback port.
        harpoon_env["HOSTED_AI_BASE_URL"] = f"http://{mock_host}:{mock_port}"
        async with _running("harpoon", tmp_path, harpoon_env) as (harpoon_host, harpoon_port):
            for name, port in (("mock", mock_port), ("harpoon", harpoon_port)):
                assert await _compose_healthcheck(name, port) == (0, ""), name
                assert await _image_healthcheck(port) == (0, ""), name

            status, _, body = await _get(f"http://{harpoon_host}:{harpoon_port}/health")
            assert status == 200
            assert '"status":"ok"' in body
            assert '"hostedai_reachable":true' in body

            # What Prometheus scrapes.
            for host, port in ((mock_host, mock_port), (harpoon_host, harpoon_port)):
                status, content_type, _ = await _get(f"http://{host}:{port}/metrics")
                assert (status, content_type) == (200, "text/plain")

            # The control plane takes the token from the environment, not the built-in one.
            mock_url = f"http://{mock_host}:{mock_port}"
            assert (await _get(f"{mock_url}/_admin/state", {"X-Admin-Token": ADMIN_TOKEN}))[0] == 200
            assert (await _get(f"{mock_url}/_admin/state", {"X-Admin-Token": "dev-admin"}))[0] == 401

            # The compose default key is one the mock accepts.
            key = harpoon_env["HOSTED_AI_API_KEY"]
            status, _, _ = await _get(f"http://{mock_host}:{mock_port}/v1/pools", {"Authorization": f"Bearer {key}"})
            assert status == 200


async def test_the_health_checks_fail_when_nothing_listens() -> None:
    port = _closed_port()
    assert (await _image_healthcheck(port))[0] != 0
    for name in ("mock", "harpoon"):
        assert (await _compose_healthcheck(name, port))[0] != 0
