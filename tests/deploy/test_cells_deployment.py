"""The cells' deployment files agree with the code and with each other: docker-compose.yml's `cells`
profile, deploy/k8s-cells/ and the nginx template both render (docs/cells.md). No Docker engine or
cluster: `docker-compose config` and `kubectl kustomize` run when their binaries are on PATH."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from benchmarks.cells import render_cells_conf
from mock_server import fanout
from mock_server.cli import CELL_ENV
from tests.deploy.files import (
    COMPOSE_FILE,
    ROOT,
    command,
    container_port,
    copies,
    dockerfile_stages,
    host_path,
    parse_command,
    published,
    services,
)

TEMPLATE = ROOT / "deploy" / "cells" / "cells.conf.template"
K8S_CELLS = ROOT / "deploy" / "k8s-cells"
CELL_SERVICES = ("mock-a", "mock-b")
_SERVER = re.compile(r"server ([a-z0-9.\-]+:\d+);")


def _cells_profile() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services().items() if "cells" in s.get("profiles", [])}


def _fanout_args(words: list[str]) -> Any:
    assert words[:2] == ["hostedai-mock", "fanout"]
    return fanout.build_parser().parse_args(words[2:])


def test_the_k8s_template_is_the_compose_one_byte_for_byte() -> None:
    # kustomize reads only files below its directory, so deploy/k8s-cells/ keeps a twin.
    assert (K8S_CELLS / "cells.conf.template").read_bytes() == TEMPLATE.read_bytes()


def test_the_template_hashes_the_key_consistently_and_sends_the_control_plane_to_the_fan_out() -> None:
    conf = render_cells_conf(["a:1", "b:2"], "f:3", "8090")
    assert "hash $http_authorization consistent;" in conf
    assert "server a:1; server b:2;" in conf
    admin = conf.split("location /_admin/ {")[1].split("}")[0]
    assert "proxy_pass http://hostedai_fanout;" in admin
    assert "proxy_pass http://hostedai_cells;" in conf.split("location / {")[1]
    assert "${" not in conf, "every variable of the template is set"


# ---- docker-compose.yml -------------------------------------------------------------------------------


def test_the_cells_profile_runs_two_cells_a_fan_out_and_nginx() -> None:
    assert set(_cells_profile()) == {*CELL_SERVICES, "cells-fanout", "cells-nginx"}


@pytest.mark.parametrize("name", CELL_SERVICES)
def test_each_cell_runs_the_cells_config_under_its_own_name(name: str) -> None:
    args = parse_command(command(services()[name]))
    assert args.cell == name.removeprefix("mock-")
    assert (args.host, args.port) == ("0.0.0.0", 8000)
    final = dockerfile_stages()[-1]
    assert (["configs/"], "configs/") in copies(final)
    assert (ROOT / args.config).is_file()
    assert not published(services()[name]), "cells are reached through nginx only"
    assert services()[name]["environment"]["HOSTEDAI_ADMIN_TOKEN"] == "${HOSTEDAI_ADMIN_TOKEN:-}"


def test_the_fan_out_reaches_every_cell_service_on_its_port() -> None:
    args = _fanout_args(command(services()["cells-fanout"]))
    cells = fanout.resolve_cells(args)
    expected = {(name.removeprefix("mock-"), name, 8000) for name in CELL_SERVICES}
    found = {(c.name, urlsplit(c.url).hostname, urlsplit(c.url).port) for c in cells}
    assert found == expected
    assert f"127.0.0.1:{args.port}/health" in " ".join(services()["cells-fanout"]["healthcheck"]["test"])


def test_nginx_renders_the_template_with_every_cell_and_the_fan_out() -> None:
    nginx = services()["cells-nginx"]
    env = nginx["environment"]
    (volume,) = nginx["volumes"]
    assert host_path(nginx, volume.split(":")[1]) == TEMPLATE
    assert PurePosixPath(volume.split(":")[1]).parent == PurePosixPath("/etc/nginx/templates")
    assert set(_SERVER.findall(env["CELL_SERVERS"])) == {f"{name}:8000" for name in CELL_SERVICES}
    fanout_port = _fanout_args(command(services()["cells-fanout"])).port
    assert env["FANOUT_ADDRESS"] == f"cells-fanout:{fanout_port}"
    assert published(nginx) == [("127.0.0.1", int(env["LISTEN_PORT"]), int(env["LISTEN_PORT"]))]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not on PATH")
def test_docker_compose_accepts_the_cells_profile() -> None:
    check = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "--profile", "cells", "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"HOSTEDAI_ADMIN_TOKEN": "x", "PATH": "/usr/bin:/bin"},
    )
    assert check.returncode == 0, check.stderr


# ---- deploy/k8s-cells ----------------------------------------------------------------------------------


def _k8s() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S_CELLS / "kustomization.yaml").read_text())
    return [
        doc for name in kustomization["resources"] for doc in yaml.safe_load_all((K8S_CELLS / name).read_text()) if doc
    ]


def _object(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in _k8s() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = container
    return result


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _cell_addresses() -> list[str]:
    """What the StatefulSet makes: each pod's DNS name through its headless Service, and port."""
    cells = _object("StatefulSet", "hostedai-mock-cell")
    service = _object("Service", cells["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    port = container_port(_container(cells), "http")
    name, headless = cells["metadata"]["name"], service["metadata"]["name"]
    return [f"{name}-{i}.{headless}:{port}" for i in range(cells["spec"]["replicas"])]


def test_each_k8s_cell_is_named_after_its_pod() -> None:
    container = _container(_object("StatefulSet", "hostedai-mock-cell"))
    assert _env(container)[CELL_ENV] == {"fieldRef": {"fieldPath": "metadata.name"}}
    args = parse_command(container["command"])
    assert (ROOT / args.config).is_file()


def test_the_k8s_fan_out_reaches_every_pod_of_the_stateful_set() -> None:
    container = _container(_object("Deployment", "hostedai-cells-fanout"))
    args = _fanout_args(container["command"])
    assert args.port == container_port(container, "http")
    specs = _env(container)[fanout.CELLS_ENV].split(",")
    cells = fanout.parse_cells(specs)
    assert [f"{urlsplit(c.url).hostname}:{urlsplit(c.url).port}" for c in cells] == _cell_addresses()
    assert [c.name for c in cells] == [a.split(".")[0] for a in _cell_addresses()], "named as the pods name themselves"


def test_k8s_nginx_renders_the_twin_template_with_every_pod_and_the_fan_out() -> None:
    nginx = _object("Deployment", "hostedai-cells")
    container = _container(nginx)
    env = _env(container)
    assert _SERVER.findall(env["CELL_SERVERS"]) == _cell_addresses()
    fanout_service = _object("Service", "hostedai-cells-fanout")
    assert env["FANOUT_ADDRESS"] == f"hostedai-cells-fanout:{fanout_service['spec']['ports'][0]['port']}"
    assert container_port(container, "http") == int(env["LISTEN_PORT"])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in nginx["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts["/etc/nginx/templates"]]["configMap"]["name"] == "hostedai-cells-nginx"
    kustomization = yaml.safe_load((K8S_CELLS / "kustomization.yaml").read_text())
    (generator,) = kustomization["configMapGenerator"]
    assert generator["files"] == ["default.conf.template=cells.conf.template"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
def test_kustomize_renders_the_cells() -> None:
    rendered = subprocess.run(["kubectl", "kustomize", str(K8S_CELLS)], capture_output=True, text=True, check=False)
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert config_map["data"]["default.conf.template"] == TEMPLATE.read_text()
    nginx = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "hostedai-cells")
    volumes = nginx["spec"]["template"]["spec"]["volumes"]
    assert config_map["metadata"]["name"] in {v.get("configMap", {}).get("name") for v in volumes}
