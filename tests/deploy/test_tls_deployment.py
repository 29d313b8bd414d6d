"""The HTTPS overlays agree with the code: docker-compose.tls.yml merged over docker-compose.yml, and
deploy/k8s-tls/ rendered over deploy/k8s/. The mock's real flags serve TLS, every client trusts the CA
that issued its certificate (and no client gets the key), and the certificate names the host the
clients use. No Docker engine or cluster: `docker-compose config` and `kubectl kustomize` render them
(skipped when not on PATH)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.files import (
    COMPOSE_FILE,
    ROOT,
    command,
    dockerfile_stages,
    host_path,
    interpolate,
    load_yaml,
    only_container,
    parse_command,
)

TLS_OVERLAY = ROOT / "docker-compose.tls.yml"
K8S_TLS = ROOT / "deploy" / "k8s-tls"
PROMETHEUS_TLS = ROOT / "deploy" / "prometheus" / "prometheus.tls.yml"


def _render(argv: list[str]) -> list[dict[str, Any]]:
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not on PATH")
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def merged() -> dict[str, Any]:
    (config,) = _render(["docker-compose", "-f", str(COMPOSE_FILE), "-f", str(TLS_OVERLAY), "config"])
    services: dict[str, Any] = config["services"]
    return services


def _named_volume(service: dict[str, Any], path: str) -> str | None:
    """The named volume a compose service mounts at `path` (or a directory above it)."""
    for volume in service.get("volumes", []):
        source, mount, *_ = volume.split(":") if isinstance(volume, str) else (volume["source"], volume["target"])
        if not source.startswith((".", "/")) and PurePosixPath(path).is_relative_to(mount):
            return str(source)
    return None


def test_the_compose_mock_serves_tls_with_a_ca_written_to_a_shared_volume(merged: dict[str, Any]) -> None:
    mock = merged["mock"]
    args = parse_command(command(mock))  # hostedai-mock's own parser: the flags are real
    assert (args.host, args.port) == ("0.0.0.0", 8000)
    assert args.tls_name == ["mock"]  # the service name the other containers use
    ca_file = str(PurePosixPath(args.tls_self_signed) / "ca.pem")
    assert _named_volume(mock, ca_file) == "hostedai-ca"
    health = " ".join(mock["healthcheck"]["test"])
    assert "https://127.0.0.1:8000/health" in health
    assert f"cafile='{ca_file}'" in health
    # The image makes the volume's directory the server's own, so the non-root mock can write there.
    assert f"install -d -o 10001 -g 10001 {args.tls_self_signed}" in dockerfile_stages()[-1].all("RUN")


def test_compose_clients_trust_exactly_that_ca(merged: dict[str, Any]) -> None:
    ca_file = str(PurePosixPath(parse_command(command(merged["mock"])).tls_self_signed) / "ca.pem")
    harpoon = merged["harpoon"]
    url = urlsplit(harpoon["environment"]["HOSTED_AI_BASE_URL"])
    assert (url.scheme, url.hostname, url.port) == ("https", "mock", 8000)
    assert harpoon["environment"]["SSL_CERT_FILE"] == ca_file
    assert _named_volume(harpoon, ca_file) == "hostedai-ca"
    master = command(merged["locust-master"])
    assert master[master.index("--ca-bundle") + 1] == ca_file
    assert urlsplit(master[master.index("--host") + 1]).scheme == "https"
    for name in ("locust-master", "locust-worker", "prometheus"):
        assert _named_volume(merged[name], ca_file) == "hostedai-ca", name
    prometheus = merged["prometheus"]
    assert host_path({"volumes": prometheus["volumes"]}, "/etc/prometheus/prometheus.yml") == PROMETHEUS_TLS
    (mock_job,) = [j for j in load_yaml(PROMETHEUS_TLS)["scrape_configs"] if j["job_name"] == "hostedai-mock"]
    assert (mock_job["scheme"], mock_job["tls_config"]["ca_file"]) == ("https", ca_file)


def test_the_compose_overlay_keeps_the_rest_of_the_plain_file(merged: dict[str, Any]) -> None:
    plain = load_yaml(COMPOSE_FILE)["services"]
    assert set(merged) == set(plain)
    assert interpolate(merged["harpoon"]["environment"]["HOSTED_AI_API_KEY"]) == "dev-key"
    assert merged["harpoon"]["command"] == plain["harpoon"]["command"]


# ---- deploy/k8s-tls ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return _render(["kubectl", "kustomize", str(K8S_TLS)])


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _secret_mount(deployment: dict[str, Any], path: str) -> dict[str, Any]:
    """The secret volume a container path is in: its `secret` section."""
    container = only_container(deployment)
    (mount,) = [m for m in container["volumeMounts"] if PurePosixPath(path).is_relative_to(m["mountPath"])]
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    secret: dict[str, Any] = volume["secret"]
    return {**secret, "relative": str(PurePosixPath(path).relative_to(mount["mountPath"]))}


def test_the_k8s_mock_serves_the_certificate_cert_manager_issues(rendered: list[dict[str, Any]]) -> None:
    mock = _one(rendered, "Deployment", "hostedai-mock")
    args = parse_command(only_container(mock)["command"])
    certificate = _one(rendered, "Certificate", "hostedai-mock-tls")
    for path, key in ((args.tls_cert, "tls.crt"), (args.tls_key, "tls.key")):
        secret = _secret_mount(mock, path)
        assert (secret["secretName"], secret["relative"]) == (certificate["spec"]["secretName"], key)
    container = only_container(mock)
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert container["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert mock["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scheme"] == "https"


def test_k8s_harpoon_trusts_only_the_issuing_ca_and_names_a_host_the_certificate_covers(
    rendered: list[dict[str, Any]],
) -> None:
    harpoon = _one(rendered, "Deployment", "harpoon-hostedai")
    env = {e["name"]: e.get("value") for e in only_container(harpoon)["env"]}
    url = urlsplit(env["HOSTED_AI_BASE_URL"])
    certificate = _one(rendered, "Certificate", "hostedai-mock-tls")
    assert url.scheme == "https"
    assert url.hostname in certificate["spec"]["dnsNames"]
    secret = _secret_mount(harpoon, env["SSL_CERT_FILE"])
    assert secret["secretName"] == certificate["spec"]["secretName"]
    assert secret["items"] == [{"key": "ca.crt", "path": secret["relative"]}]  # the CA only, never the key
    # The mock's certificate comes from a CA Issuer, so the secret carries that CA as ca.crt.
    issuer = _one(rendered, "Issuer", certificate["spec"]["issuerRef"]["name"])
    ca = _one(rendered, "Certificate", issuer["spec"]["ca"]["secretName"])
    assert ca["spec"]["isCA"] is True


def test_the_k8s_overlay_changes_nothing_else(rendered: list[dict[str, Any]]) -> None:
    plain = _render(["kubectl", "kustomize", str(ROOT / "deploy" / "k8s")])
    assert {(d["kind"], d["metadata"]["name"]) for d in plain} <= {(d["kind"], d["metadata"]["name"]) for d in rendered}
    configmap = _one(rendered, "ConfigMap", "harpoon-config")
    assert configmap == _one(plain, "ConfigMap", "harpoon-config")
