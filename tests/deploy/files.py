"""The deployment files, parsed: docker-compose.yml, the Dockerfile, .dockerignore, deploy/k8s/ and
Prometheus's config, with what the deploy tests ask of them (a service's command and its parser, where a
container path comes from on the host)."""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S_DIR = ROOT / "deploy" / "k8s"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
COMPOSE_CONFIG = ROOT / "configs" / "harpoon.compose.yaml"
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))

# The services that run this project's image, and the console script each one runs.
OUR_SERVICES = {"mock": "hostedai-mock", "harpoon": "harpoon-service"}

_COMPOSE_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")
_CONFIG_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # harness.connector.config's syntax


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text("utf-8"))


def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE_FILE)
    return data


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


def interpolate(value: str) -> str:
    """A compose value as compose renders it with every variable unset: `${VAR:-default}` → default."""
    return _COMPOSE_VAR.sub(lambda match: match.group(2) or "", value)


def config_variables(data: Any) -> set[str]:
    """The `${VAR}` references in every string value of a parsed config."""
    if isinstance(data, str):
        return set(_CONFIG_VAR.findall(data))
    if isinstance(data, dict):
        return set().union(*(config_variables(value) for value in data.values()))
    if isinstance(data, list):
        return set().union(*(config_variables(value) for value in data))
    return set()


def command(service: dict[str, Any]) -> list[str]:
    value = service["command"]
    words = shlex.split(value) if isinstance(value, str) else [str(word) for word in value]
    return [interpolate(word) for word in words]


def entry_point(script: str) -> str:
    """`module:function` of one of pyproject.toml's console scripts."""
    target: str = PYPROJECT["project"]["scripts"][script]
    return target


def parse_command(words: list[str]) -> argparse.Namespace:
    """A console-script command line parsed by that script's own `build_parser()`: an unknown flag fails."""
    module = importlib.import_module(entry_point(words[0]).split(":")[0])
    parser: argparse.ArgumentParser = module.build_parser()
    return parser.parse_args(words[1:])


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """Where a path seen inside a compose container comes from on the host, through a bind mount."""
    target = PurePosixPath(container_path)
    for volume in service.get("volumes", []):
        source, mount, *_ = volume.split(":")
        if source.startswith((".", "/")) and target.is_relative_to(mount):
            return (ROOT / source / target.relative_to(mount)).resolve()
    return None


def published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each port a compose service publishes."""
    result = []
    for port in service.get("ports", []):
        parts = str(port).split(":")
        address = parts[0] if len(parts) == 3 else "0.0.0.0"  # compose's default: every interface
        result.append((address, int(parts[-2]), int(parts[-1].split("/")[0])))
    return result


# ---- Dockerfile -------------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]

    def last(self, instruction: str) -> str:
        found = self.all(instruction)
        assert found, f"the stage from {self.base} has no {instruction}"
        return found[-1]


def dockerfile_stages(path: Path = DOCKERFILE) -> list[Stage]:
    text = re.sub(r"\\\n", " ", path.read_text("utf-8"))
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction, args = instruction.upper(), args.strip()
        if instruction == "FROM":
            base, *rest = args.split()
            stages.append(Stage(base=base, name=rest[1] if len(rest) == 2 and rest[0].upper() == "AS" else None))
        else:
            assert stages, f"{instruction} before FROM"
            stages[-1].instructions.append((instruction, args))
    return stages


def exec_form(args: str) -> list[str]:
    """CMD/ENTRYPOINT/HEALTHCHECK CMD arguments: JSON exec form, or a shell form run by /bin/sh -c."""
    if args.startswith("["):
        words: list[str] = json.loads(args)
        return words
    return ["/bin/sh", "-c", args]


def copies(stage: Stage) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context (not `--from=`)."""
    result = []
    for args in stage.all("COPY"):
        words = args.split()
        if any(word.startswith("--from") for word in words):
            continue
        paths = [word for word in words if not word.startswith("--")]
        result.append((paths[:-1], paths[-1]))
    return result


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps a top-level path out of the build context (last matching rule wins)."""
    ignored = False
    for raw in DOCKERIGNORE.read_text("utf-8").splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if fnmatch.fnmatchcase(path.rstrip("/"), pattern):
            ignored = not negate
    return ignored


# ---- Kubernetes -------------------------------------------------------------------------------------


def k8s_documents(*names: str) -> list[dict[str, Any]]:
    paths = [K8S_DIR / name for name in names] if names else sorted(K8S_DIR.glob("*.yaml"))
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc]


def k8s_applied() -> list[dict[str, Any]]:
    """What `kubectl apply -k deploy/k8s/` applies: the kustomization's resources."""
    (kustomization,) = k8s_documents("kustomization.yaml")
    return k8s_documents(*kustomization["resources"])


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    (found,) = [doc for doc in k8s_applied() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


def only_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = container
    return result


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port, by number or by the container port's name."""
    for declared in container["ports"]:
        if port in (declared["containerPort"], declared.get("name")):
            number: int = declared["containerPort"]
            return number
    raise AssertionError(f"container {container['name']} declares no port {port}")
