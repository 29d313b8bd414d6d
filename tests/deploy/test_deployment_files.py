"""docker-compose.yml, the Dockerfiles and deploy/ agree with the code: the servers' real flags, ports and
health endpoints, the variables the service config reads, the modules loadtests/ imports, and files that
exist. No Docker engine or cluster is needed; `docker-compose config` and `kubectl kustomize` run when
their binaries are on PATH (skipped otherwise)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from harness.service import ServiceConfigError, load_service_config, parse_service_config
from harness.service.config import ServiceSettings
from mock_server.cli import ADMIN_TOKEN_ENV
from mock_server.config import default_config
from tests.deploy.files import (
    COMPOSE_CONFIG,
    COMPOSE_FILE,
    OUR_SERVICES,
    PROMETHEUS_FILE,
    PYPROJECT,
    ROOT,
    command,
    config_variables,
    container_port,
    copies,
    dockerfile_stages,
    dockerignored,
    exec_form,
    host_path,
    interpolate,
    k8s_applied,
    k8s_documents,
    k8s_object,
    load_yaml,
    only_container,
    parse_command,
    published,
    services,
)

MOCK_PORT = default_config().server.port
HARPOON_PORT = ServiceSettings.model_fields["port"].default
LISTEN_PORTS = {"mock": MOCK_PORT, "harpoon": HARPOON_PORT}
K8S_DEPLOYMENTS = {"mock": "hostedai-mock", "harpoon": "harpoon-hostedai"}
GUIDE_SECRET_REF = {"name": "hostedai-credentials", "key": "api-key"}
MOCK_ADMIN_SECRET_REF = {"name": "hostedai-mock-admin", "key": "admin-token"}
HEALTH_URL = re.compile(r"http://127\.0\.0\.1:(\d+)/health\b")
LOADTESTS = ROOT / "loadtests"
LOCUST_DOCKERFILE = ROOT / "deploy" / "locust" / "Dockerfile"


def _final_stage_uid() -> int:
    final = dockerfile_stages()[-1]
    user = final.last("USER").split(":")[0]
    return int(user)


# ---- docker-compose.yml -----------------------------------------------------------------------------


def test_the_listening_ports_are_the_servers_defaults() -> None:
    assert (MOCK_PORT, HARPOON_PORT) == (8000, 8080)


@pytest.mark.parametrize("name", sorted(OUR_SERVICES))
def test_our_services_build_this_repository(name: str) -> None:
    service = services()[name]
    context = ROOT / service["build"]["context"]
    assert context.resolve() == ROOT
    assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file()


def test_every_build_context_exists() -> None:
    for name, service in services().items():
        if "build" in service:
            build = service["build"]
            context = ROOT / (build if isinstance(build, str) else build["context"])
            assert context.is_dir(), f"{name}: build context {context}"


@pytest.mark.parametrize(
    ("name", "volume"),
    [(name, volume) for name, service in services().items() for volume in service.get("volumes", [])],
)
def test_every_mounted_path_exists(name: str, volume: str) -> None:
    source = volume.split(":")[0]
    assert source.startswith("./"), f"{name}: mount {source} from outside the repository"
    path = ROOT / source
    assert path.exists(), f"{name}: {source} does not exist"


@pytest.mark.parametrize("name", sorted(OUR_SERVICES))
def test_commands_use_the_real_flags_and_defaults(name: str) -> None:
    words = command(services()[name])
    assert words[0] == OUR_SERVICES[name]
    args = parse_command(words)  # the script's own parser: an unknown or malformed flag fails here
    assert (args.host, args.port) == ("0.0.0.0", LISTEN_PORTS[name])


def test_harpoon_runs_the_compose_config_that_the_image_ships() -> None:
    args = parse_command(command(services()["harpoon"]))
    final = dockerfile_stages()[-1]
    workdir = PurePosixPath(final.last("WORKDIR"))
    config = workdir / args.config
    assert (["configs/"], "configs/") in copies(final), "the image must ship configs/ in its WORKDIR"
    assert ROOT / config.relative_to(workdir) == COMPOSE_CONFIG


@pytest.mark.parametrize("name", sorted(services()))
def test_ports_are_published_on_loopback_only(name: str) -> None:
    for address, _, _ in published(services()[name]):
        assert address == "127.0.0.1", f"{name} publishes on {address}"


@pytest.mark.parametrize("name", sorted(OUR_SERVICES))
def test_published_ports_are_the_listening_ports(name: str) -> None:
    assert published(services()[name]) == [("127.0.0.1", LISTEN_PORTS[name], LISTEN_PORTS[name])]


@pytest.mark.parametrize("name", sorted(OUR_SERVICES))
def test_healthchecks_hit_health_on_the_listening_port(name: str) -> None:
    test = services()[name]["healthcheck"]["test"]
    assert test[0] == "CMD", "slim has no shell tools worth a CMD-SHELL"
    assert test[1] == "python", "slim has no curl: the check is python's urllib"
    (port,) = HEALTH_URL.findall(" ".join(test))
    assert int(port) == LISTEN_PORTS[name]


def test_harpoon_gets_every_variable_its_config_reads() -> None:
    harpoon = services()["harpoon"]
    needed = config_variables(load_yaml(COMPOSE_CONFIG))
    assert needed == {"HOSTED_AI_BASE_URL", "HOSTED_AI_API_KEY"}
    environment = harpoon["environment"]
    assert needed <= set(environment)
    assert environment["HOSTED_AI_API_KEY"] == "${HOSTED_AI_API_KEY:-dev-key}"
    # The Dockerfile's own HEALTHCHECK reads HEALTH_PORT: right even where compose's is not used.
    assert int(environment["HEALTH_PORT"]) == HARPOON_PORT


def test_compose_gives_the_mock_its_admin_token_from_the_environment_and_no_default() -> None:
    mock = services()["mock"]
    assert parse_command(command(mock)).host == "0.0.0.0"  # inside its container
    assert mock["environment"] == {ADMIN_TOKEN_ENV: "${" + ADMIN_TOKEN_ENV + ":-}"}
    assert interpolate(mock["environment"][ADMIN_TOKEN_ENV]) == ""  # unset: the mock refuses to start


def test_the_default_api_key_is_one_the_mock_accepts() -> None:
    key = interpolate(services()["harpoon"]["environment"]["HOSTED_AI_API_KEY"])
    assert any(key in tenant.api_keys for tenant in default_config().tenants.values())


def test_harpoon_talks_to_the_mock_service() -> None:
    harpoon = services()["harpoon"]
    url = urlsplit(harpoon["environment"]["HOSTED_AI_BASE_URL"])
    assert (url.scheme, url.hostname, url.port) == ("http", "mock", MOCK_PORT)
    assert harpoon["depends_on"]["mock"]["condition"] == "service_healthy"


def test_prometheus_scrapes_every_server_by_service_name_and_port() -> None:
    scraped = set()
    for job in load_yaml(PROMETHEUS_FILE)["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, port = target.split(":")
                assert host in services(), f"{job['job_name']}: no compose service {host}"
                assert int(port) == LISTEN_PORTS[host]
                scraped.add(host)
    assert scraped == set(OUR_SERVICES)


def test_prometheus_reads_the_mounted_config() -> None:
    prometheus = services()["prometheus"]
    (flag,) = [word for word in command(prometheus) if word.startswith("--config.file=")]
    assert host_path(prometheus, flag.split("=", 1)[1]) == PROMETHEUS_FILE


def _option(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1]


def test_locust_master_and_workers_form_one_distributed_run() -> None:
    master, worker = services()["locust-master"], services()["locust-worker"]
    assert master["profiles"] == worker["profiles"] == ["load"]
    master_words, worker_words = command(master), command(worker)
    assert {"--master", "--headless", "--expect-workers"} <= set(master_words)
    assert "--worker" in worker_words
    assert _option(worker_words, "--master-host") == "locust-master"
    assert _option(master_words, "--locustfile") == _option(worker_words, "--locustfile")
    # `--scale locust-worker=N` needs workers without a fixed name or host port; a headless master
    # serves no web UI to publish.
    assert "container_name" not in worker
    assert "ports" not in worker
    assert "ports" not in master
    target = urlsplit(_option(master_words, "--host"))
    assert target.hostname in services()
    assert target.port == LISTEN_PORTS[str(target.hostname)]


@pytest.mark.parametrize("name", ["locust-master", "locust-worker"])
def test_locust_runs_the_mounted_locustfile(name: str) -> None:
    service = services()[name]
    assert "HOSTED_AI_API_KEY" in service["environment"]
    # The working directory stands for the repository's root: locust puts it on sys.path, and
    # `--locustfile loadtests/…` means what it means in the repository.
    workdir = PurePosixPath(service["working_dir"])
    assert host_path(service, str(workdir / "loadtests")) == LOADTESTS
    locustfiles = [
        host_path(service, str(workdir / path)) for path in _option(command(service), "--locustfile").split(",")
    ]
    assert locustfiles == [LOADTESTS / "locustfile.py"]
    assert (LOADTESTS / "locustfile.py").is_file()


def _third_party_imports(directory: Path) -> set[str]:
    local = {path.stem for path in directory.glob("*.py")} | {directory.name}
    modules: set[str] = set()
    for path in directory.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    return modules - local - set(sys.stdlib_module_names) - {"__future__"}


def _distribution(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_locust_image_brings_every_module_loadtests_imports() -> None:
    # locust is a dev dependency, so its metadata is always there.
    locust_requires = importlib.metadata.requires("locust") or []
    image = dockerfile_stages(LOCUST_DOCKERFILE)[-1]
    assert image.base.startswith("locustio/locust:")
    installed = [
        word.split("=")[0].split(">")[0].split("<")[0].strip("\"'")
        for run in image.all("RUN")
        for word in run.split("pip install", 1)[-1].split()
        if not word.startswith("-")
    ]
    provided = {"locust"} | {
        _distribution(re.split(r"[ ;<>=!~\[]", req)[0]) for req in locust_requires if ";" not in req
    }
    provided |= {_distribution(name) for name in installed}
    owners = importlib.metadata.packages_distributions()
    for module in sorted(_third_party_imports(LOADTESTS)):
        distributions = {_distribution(name) for name in owners.get(module, [])}
        assert distributions, f"loadtests/ imports {module}, which is not installed here"
        assert distributions & provided, f"loadtests/ imports {module} ({distributions}): add it to {LOCUST_DOCKERFILE}"


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not on PATH")
def test_docker_compose_accepts_the_file() -> None:
    check = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "config", "-q"], cwd=ROOT, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    listed = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "config", "--services"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert set(listed.stdout.split()) == set(services())


# ---- Dockerfile -------------------------------------------------------------------------------------


def test_every_stage_is_python_slim() -> None:
    for stage in dockerfile_stages():
        assert stage.base == "python:3.11-slim"
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_the_image_installs_the_project_from_what_it_copies() -> None:
    build = dockerfile_stages()[0]
    assert any("pip install ." in run for run in build.all("RUN"))
    copied = {source.rstrip("/") for sources, _ in copies(build) for source in sources}
    # hatchling reads the readme, and the wheel force-includes contracts and configs/models.yaml.
    wheel = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"], *wheel["packages"]}
    needed |= {source.split("/")[0] for source in wheel["force-include"]}
    assert needed <= copied


def test_every_copied_path_exists_and_reaches_the_build_context() -> None:
    for stage in dockerfile_stages():
        for sources, _ in copies(stage):
            for source in sources:
                assert (ROOT / source).exists(), source
                assert not dockerignored(source), f".dockerignore drops {source}, which the Dockerfile copies"


def test_dockerignore_keeps_local_state_out() -> None:
    for path in (".venv", ".git", "reports", "tests", ".env"):
        assert dockerignored(path), path


def test_the_image_runs_as_a_non_root_user_it_creates() -> None:
    final = dockerfile_stages()[-1]
    uid = _final_stage_uid()
    assert uid != 0
    assert any(f"--uid {uid}" in run for run in final.all("RUN")), "USER names a uid no RUN creates"
    # USER comes after the last RUN: nothing after it runs as root.
    names = [name for name, _ in final.instructions]
    assert max(i for i, name in enumerate(names) if name == "RUN") < names.index("USER")


def test_the_image_exposes_both_servers() -> None:
    exposed = {int(port) for args in dockerfile_stages()[-1].all("EXPOSE") for port in args.split()}
    assert exposed == set(LISTEN_PORTS.values())


def test_the_default_command_is_the_compose_mock() -> None:
    cmd = exec_form(dockerfile_stages()[-1].last("CMD"))
    assert cmd == command(services()["mock"])


def test_the_image_healthcheck_hits_health() -> None:
    final = dockerfile_stages()[-1]
    healthcheck = final.last("HEALTHCHECK")
    assert "urllib.request" in healthcheck
    assert "/health" in healthcheck
    assert f"os.environ.get('HEALTH_PORT', '{MOCK_PORT}')" in healthcheck
    assert any(f"HEALTH_PORT={MOCK_PORT}" in env for env in final.all("ENV"))


# ---- configs/harpoon.compose.yaml -------------------------------------------------------------------


def test_the_compose_config_loads_with_its_variables_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTED_AI_BASE_URL", "http://mock:8000")
    monkeypatch.setenv("HOSTED_AI_API_KEY", "dev-key")
    config = load_service_config(COMPOSE_CONFIG)
    assert config.hosted_ai.base_url == "http://mock:8000"
    assert config.hosted_ai.resolve_api_key() == "dev-key"
    assert (config.service.host, config.service.port) == ("0.0.0.0", HARPOON_PORT)


def test_the_compose_config_needs_the_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSTED_AI_BASE_URL", raising=False)
    monkeypatch.setenv("HOSTED_AI_API_KEY", "dev-key")
    with pytest.raises(ServiceConfigError, match="HOSTED_AI_BASE_URL is not set"):
        load_service_config(COMPOSE_CONFIG)


def test_the_compose_config_is_the_shipped_one_but_for_where_hostedai_and_harpoon_are() -> None:
    shipped, compose = load_yaml(ROOT / "configs" / "harpoon.yaml"), load_yaml(COMPOSE_CONFIG)
    assert {**shipped["hosted_ai"], "base_url": "${HOSTED_AI_BASE_URL}"} == compose["hosted_ai"]
    assert {**shipped["service"], "host": "0.0.0.0"} == compose["service"]
    assert shipped["models"] == compose["models"]
    assert shipped["batching"] == compose["batching"]


# ---- deploy/k8s -------------------------------------------------------------------------------------


def _configmap_config() -> tuple[str, dict[str, Any]]:
    harpoon = k8s_object("Deployment", K8S_DEPLOYMENTS["harpoon"])
    args = parse_command(only_container(harpoon)["command"])
    path = PurePosixPath(args.config)
    (mount,) = [m for m in only_container(harpoon)["volumeMounts"] if path.is_relative_to(m["mountPath"])]
    (volume,) = [v for v in harpoon["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    configmap = k8s_object("ConfigMap", volume["configMap"]["name"])
    text: str = configmap["data"][str(path.relative_to(mount["mountPath"]))]
    return text, yaml.safe_load(text)


def test_kustomization_applies_existing_files_and_never_the_example_secret() -> None:
    (kustomization,) = k8s_documents("kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (ROOT / "deploy" / "k8s" / resource).is_file(), resource
    assert "secret.example.yaml" not in kustomization["resources"]
    assert not [doc for doc in k8s_applied() if doc["kind"] == "Secret"]


def test_every_manifest_opens_with_a_comment() -> None:
    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        assert path.read_text("utf-8").startswith("# "), path.name


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
def test_kustomize_renders_the_manifests() -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "deploy" / "k8s")], capture_output=True, text=True, check=False
    )
    assert rendered.returncode == 0, rendered.stderr
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in yaml.safe_load_all(rendered.stdout) if doc}
    assert names == {(doc["kind"], doc["metadata"]["name"]) for doc in k8s_applied()}


def test_the_example_secrets_are_what_the_manifests_read_with_placeholders() -> None:
    secrets = {doc["metadata"]["name"]: doc for doc in k8s_documents("secret.example.yaml")}
    assert set(secrets) == {GUIDE_SECRET_REF["name"], MOCK_ADMIN_SECRET_REF["name"]}
    for ref in (GUIDE_SECRET_REF, MOCK_ADMIN_SECRET_REF):
        secret = secrets[ref["name"]]
        assert secret["kind"] == "Secret"
        assert set(secret["stringData"]) == {ref["key"]}
        assert "REPLACE" in secret["stringData"][ref["key"]]


def test_the_mock_reads_its_admin_token_from_a_secret_not_the_built_in_one() -> None:
    mock = only_container(k8s_object("Deployment", K8S_DEPLOYMENTS["mock"]))
    args = parse_command(mock["command"])
    assert args.host == "0.0.0.0"  # where the built-in token is refused: the Secret is required
    assert args.admin_token is None
    env = {var["name"]: var for var in mock["env"]}
    assert env[ADMIN_TOKEN_ENV] == {"name": ADMIN_TOKEN_ENV, "valueFrom": {"secretKeyRef": MOCK_ADMIN_SECRET_REF}}


def test_only_harpoon_and_labelled_clients_may_reach_the_mock() -> None:
    (policy,) = [doc for doc in k8s_applied() if doc["kind"] == "NetworkPolicy"]
    mock = k8s_object("Deployment", K8S_DEPLOYMENTS["mock"])
    harpoon = k8s_object("Deployment", K8S_DEPLOYMENTS["harpoon"])
    mock_labels = mock["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= mock_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    allowed = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
    assert all(set(peer) == {"podSelector"} for peer in rule["from"])  # this namespace's pods only
    assert any(labels.items() <= harpoon["spec"]["template"]["metadata"]["labels"].items() for labels in allowed)
    assert {"hostedai-testkit/mock-client": "true"} in allowed
    (port,) = rule["ports"]
    assert container_port(only_container(mock), port["port"]) == MOCK_PORT


def test_harpoon_reads_its_key_from_the_guides_secret() -> None:
    harpoon = k8s_object("Deployment", K8S_DEPLOYMENTS["harpoon"])
    assert only_container(harpoon)["name"] == "harpoon"  # the guide's Deployment, word for word
    env = {var["name"]: var for var in only_container(harpoon)["env"]}
    assert env["HOSTED_AI_API_KEY"] == {
        "name": "HOSTED_AI_API_KEY",
        "valueFrom": {"secretKeyRef": GUIDE_SECRET_REF},
    }


def test_harpoon_gets_every_variable_its_configmap_config_reads() -> None:
    harpoon = k8s_object("Deployment", K8S_DEPLOYMENTS["harpoon"])
    _, config = _configmap_config()
    provided = {var["name"] for var in only_container(harpoon)["env"]}
    assert config_variables(config) <= provided


def test_the_configmap_config_is_the_compose_config_with_the_images_models(monkeypatch: pytest.MonkeyPatch) -> None:
    text, config = _configmap_config()
    compose = load_yaml(COMPOSE_CONFIG)
    assert {**config, "models": compose["models"]} == compose
    workdir = PurePosixPath(dockerfile_stages()[-1].last("WORKDIR"))
    models = PurePosixPath(config["models"])
    assert models.is_relative_to(workdir / "configs")
    local_models = ROOT / models.relative_to(workdir)
    monkeypatch.setenv("HOSTED_AI_BASE_URL", "http://hostedai-mock:8000")
    monkeypatch.setenv("HOSTED_AI_API_KEY", "dev-key")
    parse_service_config({**yaml.safe_load(text), "models": str(local_models)}, "configmap")


def test_harpoon_talks_to_the_mock_service_in_the_cluster() -> None:
    harpoon = k8s_object("Deployment", K8S_DEPLOYMENTS["harpoon"])
    env = {var["name"]: var.get("value") for var in only_container(harpoon)["env"]}
    url = urlsplit(env["HOSTED_AI_BASE_URL"])
    service = k8s_object("Service", url.hostname or "")
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == url.port]
    mock = k8s_object("Deployment", K8S_DEPLOYMENTS["mock"])
    assert service["spec"]["selector"].items() <= mock["spec"]["template"]["metadata"]["labels"].items()
    assert container_port(only_container(mock), port["targetPort"]) == MOCK_PORT


@pytest.mark.parametrize("name", sorted(K8S_DEPLOYMENTS))
def test_deployments_run_the_servers_on_their_ports(name: str) -> None:
    container = only_container(k8s_object("Deployment", K8S_DEPLOYMENTS[name]))
    args = parse_command(container["command"])
    assert container["command"][0] == OUR_SERVICES[name]
    assert (args.host, args.port) == ("0.0.0.0", LISTEN_PORTS[name])
    assert [p["containerPort"] for p in container["ports"]] == [LISTEN_PORTS[name]]
    assert container["image"] == services()[name]["image"]


@pytest.mark.parametrize("name", sorted(K8S_DEPLOYMENTS))
def test_services_select_their_deployment_and_port(name: str) -> None:
    deployment = k8s_object("Deployment", K8S_DEPLOYMENTS[name])
    service = k8s_object("Service", K8S_DEPLOYMENTS[name])
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == LISTEN_PORTS[name]
    assert container_port(only_container(deployment), port["targetPort"]) == LISTEN_PORTS[name]


@pytest.mark.parametrize("name", sorted(K8S_DEPLOYMENTS))
@pytest.mark.parametrize("probe", ["readinessProbe", "livenessProbe"])
def test_probes_hit_health_on_the_listening_port(name: str, probe: str) -> None:
    container = only_container(k8s_object("Deployment", K8S_DEPLOYMENTS[name]))
    check = container[probe]["httpGet"]
    assert check["path"] == "/health"
    assert container_port(container, check["port"]) == LISTEN_PORTS[name]
    # harpoon's /health waits up to health_timeout_secs for HostedAI before it answers.
    assert container[probe]["timeoutSeconds"] > ServiceSettings.model_fields["health_timeout_secs"].default


@pytest.mark.parametrize("name", sorted(K8S_DEPLOYMENTS))
def test_deployments_are_non_root_and_bounded(name: str) -> None:
    deployment = k8s_object("Deployment", K8S_DEPLOYMENTS[name])
    pod = deployment["spec"]["template"]["spec"]
    container = only_container(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == _final_stage_uid()
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    for bound in ("requests", "limits"):
        assert set(container["resources"][bound]) == {"cpu", "memory"}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == LISTEN_PORTS[name]


def test_manifests_reference_no_missing_files() -> None:
    # Every path the manifests name inside the image exists in what the image copies.
    workdir = PurePosixPath(dockerfile_stages()[-1].last("WORKDIR"))
    for value in _strings(k8s_applied()):
        for found in re.findall(rf"{re.escape(str(workdir))}/\S+", value):
            assert (ROOT / PurePosixPath(found).relative_to(workdir)).exists(), found


def _strings(data: Any) -> list[str]:
    if isinstance(data, str):
        return [data]
    values = data.values() if isinstance(data, dict) else data if isinstance(data, list) else []
    return [string for value in values for string in _strings(value)]
