"""Grafana for compose users (deploy/grafana/): the provisioning files are valid and wired into
docker-compose.yml, and every PromQL query of the dashboard names only metrics that the two servers
really export, read from their live /metrics (not from a list kept by hand), and covers all of them."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from harness.service import create_service_app
from mock_server import MockHostedAI
from tests.deploy.files import PROMETHEUS_FILE, ROOT, host_path, load_yaml, published, services
from tests.service.conftest import harpoon_config

GRAFANA = ROOT / "deploy" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "hostedai.yml"
DASHBOARD = GRAFANA / "dashboards" / "hostedai-testkit.json"
PROVISIONING_IN_CONTAINER = PurePosixPath("/etc/grafana/provisioning")  # Grafana's default (GF_PATHS_PROVISIONING)

# The series names a Prometheus metric family of each type is queried by.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "unknown": ("",),
}
# Words of PromQL that are neither functions nor metric names (grouping, matching, set operators).
_PROMQL_WORDS = frozenset(("by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"))
_PROMQL_WORDS |= {"and", "or", "unless"}


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text("utf-8"))
    return data


def _queries() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in _dashboard()["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left once strings, label matchers,
    ranges, grouping clauses, function calls, keywords and numbers are taken out."""
    assert expr.count("(") == expr.count(")"), expr
    assert expr.count("{") == expr.count("}"), expr
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        followed_by_call = text[match.end() :].lstrip().startswith("(")
        if not followed_by_call and word not in _PROMQL_WORDS:
            names.add(word)
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le, model) (rate(a_bucket{job="x", le=~"1.*"}[$__rate_interval]))', {"a_bucket"}),
        ("histogram_quantile(0.95, sum without (pod) (rate(b_bucket[5m])))", {"b_bucket"}),
        ("c_total / on (pool) group_left (gpu_type) d", {"c_total", "d"}),
        ('max(e{name="sum by (x) f"}) > bool 2', {"e"}),
    ],
)
def test_metric_names_are_read_out_of_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def _series(exposition: str) -> dict[str, set[str]]:
    """Metric family name -> the series names it can be queried by, from a /metrics answer."""
    return {
        family.name: {family.name + suffix for suffix in _SUFFIXES[family.type]}
        for family in text_string_to_metric_families(exposition)
    }


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTED_AI_API_KEY", "dev-key")


@pytest.fixture
async def exported(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> AsyncIterator[dict[str, dict[str, set[str]]]]:
    """The metric families each server exports, scraped live: the mock as `hostedai-mock` runs, and the
    Harpoon service (with its connector's metrics) as `harpoon-service` builds it."""
    async with MockHostedAI(clock="manual") as mock:
        service = await aiohttp_client(create_service_app(harpoon_config(mock.url), registry=CollectorRegistry()))
        harpoon = await (await service.get("/metrics")).text()
        mock_metrics = await (await service.session.get(f"{mock.url}/metrics")).text()
        yield {"hostedai-mock": _series(mock_metrics), "harpoon": _series(harpoon)}


def _job_of(expr: str) -> str:
    (job,) = set(re.findall(r'job="([^"]+)"', expr))
    return job


async def test_every_query_names_metrics_its_server_exports(exported: dict[str, dict[str, set[str]]]) -> None:
    jobs = {job["job_name"] for job in load_yaml(PROMETHEUS_FILE)["scrape_configs"]}
    assert set(exported) == jobs
    unknown = []
    for title, expr in _queries():
        job = _job_of(expr)  # every query says which server it is about
        known = set().union(*exported[job].values())
        unknown += [f"{title}: {name} ({job})" for name in sorted(metric_names(expr) - known)]
    assert unknown == []


async def test_every_exported_metric_is_on_the_dashboard(exported: dict[str, dict[str, set[str]]]) -> None:
    queried = {(_job_of(expr), name) for _, expr in _queries() for name in metric_names(expr)}
    missing = [
        f"{job}: {family}"
        for job, families in exported.items()
        for family, names in families.items()
        # A counter's creation time (`_created`, a family of its own in the text format) needs no panel.
        if not family.endswith("_created") and not any((job, name) in queried for name in names)
    ]
    assert missing == []


def test_the_dashboard_is_a_grafana_dashboard_with_a_sound_layout() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "hostedai-testkit"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel["type"] in {"row", "timeseries"}, panel["title"]
        assert panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        columns, lines = range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])
        covered = {(x, y) for x in columns for y in lines}
        assert not covered & cells, f"{panel['title']} overlaps another panel"
        cells |= covered
        if panel["type"] != "row":
            assert panel["targets"]
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


def test_every_panel_reads_the_provisioned_prometheus() -> None:
    (source,) = load_yaml(DATASOURCES)["datasources"]
    for panel in _dashboard()["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": source["type"], "uid": source["uid"]}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]


def test_the_datasource_is_the_compose_prometheus() -> None:
    provisioning = load_yaml(DATASOURCES)
    assert provisioning["apiVersion"] == 1
    (source,) = provisioning["datasources"]
    assert (source["type"], source["access"]) == ("prometheus", "proxy")
    host, port = source["url"].removeprefix("http://").split(":")
    assert host in services()
    assert [container for _, _, container in published(services()[host])] == [int(port)]


def test_grafana_in_compose_mounts_the_provisioning_and_the_dashboards() -> None:
    grafana = services()["grafana"]
    assert grafana["image"].startswith("grafana/grafana-oss:")
    assert ":latest" not in grafana["image"]
    assert published(grafana) == [("127.0.0.1", 3000, 3000)]
    assert "prometheus" in grafana["depends_on"]
    for path in (DATASOURCES, PROVIDERS):
        inside = PROVISIONING_IN_CONTAINER / path.relative_to(GRAFANA / "provisioning").as_posix()
        assert host_path(grafana, str(inside)) == path
    (provider,) = load_yaml(PROVIDERS)["providers"]
    assert load_yaml(PROVIDERS)["apiVersion"] == 1
    assert provider["type"] == "file"
    folder = host_path(grafana, provider["options"]["path"])
    assert folder == DASHBOARD.parent
    assert sorted(p.name for p in Path(folder).iterdir()) == [DASHBOARD.name]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path(grafana, home) == DASHBOARD
