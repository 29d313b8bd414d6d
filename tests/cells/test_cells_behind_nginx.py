"""Two cells, the fan-out and a real nginx with the shipped config, all on loopback: a tenant sticks to
one cell, tenants spread over both, one fault reaches every cell, and the merged leak report tells a
clean load run from one that left an allocation held."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benchmarks.cells import cell_processes, fanout_process, host_port, nginx, nginx_binary
from tests.loadtests.conftest import LAX_SLO, LOCUSTFILE, run_locust

pytestmark = pytest.mark.skipif(
    nginx_binary() is None, reason="nginx is not installed (.ci/run installs Debian's nginx-light)"
)

# configs/cells.yaml's tenants that may use every pool (team-b, tier standard, may not use gpu-pool-1,
# where the load test allocates): fifteen keys, so both cells get some whatever ports the cells have.
KEYS = ["dev-key", *(f"tenant-{n:02d}-key" for n in range(1, 15))]
GEMMA = {"pool_id": "gpu-pool-2", "requirements": {"tflops": 5, "vram_mb": 2048, "model": "gemma-270m"}}


@dataclass(frozen=True)
class Deployment:
    proxy: str
    token: str

    def call(self, method: str, path: str, *, key: str | None = None, body: Any = None) -> tuple[int, Any]:
        headers = {"X-Admin-Token": self.token} if path.startswith("/_admin/") else {}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.proxy + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def cell_of(self, key: str) -> str:
        status, health = self.call("GET", "/health", key=key)
        assert status == 200
        return str(health["cell"])


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    token = secrets.token_urlsafe(16)
    with (
        cell_processes(["a", "b"], admin_token=token) as cells,
        fanout_process(cells) as fanout,
        nginx(cells.addresses, host_port(fanout)) as proxy,
    ):
        yield Deployment(proxy, token)


@pytest.fixture(autouse=True)
def clean(deployment: Deployment) -> Iterator[None]:
    yield
    assert deployment.call("POST", "/_admin/reset")[0] == 200


def _keys_by_cell(deployment: Deployment) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key in KEYS:
        found.setdefault(deployment.cell_of(key), []).append(key)
    return found


def test_an_allocation_made_through_the_proxy_is_released_through_it_on_the_same_cell(
    deployment: Deployment,
) -> None:
    key = "tenant-03-key"
    cell = deployment.cell_of(key)
    assert {deployment.cell_of(key) for _ in range(5)} == {cell}
    status, allocation = deployment.call("POST", "/v1/allocate", key=key, body=GEMMA)
    assert status == 201
    assert allocation["allocation_id"].startswith(f"alloc_{cell}_")
    assert deployment.call("DELETE", f"/v1/allocate/{allocation['allocation_id']}", key=key)[0] == 204
    _, journal = deployment.call("GET", f"/_admin/journal?allocation_id={allocation['allocation_id']}")
    assert [(e["operation"], e["status"], e["cell"]) for e in journal["entries"]] == [
        ("allocate", 201, cell),
        ("release", 204, cell),
    ]


def test_different_tenants_land_on_different_cells_and_both_cells_serve(deployment: Deployment) -> None:
    by_cell = _keys_by_cell(deployment)
    assert sorted(by_cell) == ["a", "b"]
    for keys in by_cell.values():
        status, allocation = deployment.call("POST", "/v1/allocate", key=keys[0], body=GEMMA)
        assert status == 201
        assert deployment.call("DELETE", f"/v1/allocate/{allocation['allocation_id']}", key=keys[0])[0] == 204
    _, journal = deployment.call("GET", "/_admin/journal?operation=allocate")
    assert sorted(e["cell"] for e in journal["entries"]) == ["a", "b"]


def test_a_fault_applied_once_reaches_every_cell(deployment: Deployment) -> None:
    one_per_cell = [keys[0] for keys in _keys_by_cell(deployment).values()]
    assert len(one_per_cell) == 2
    rule = {"match": {"operation": "pools"}, "action": {"type": "quota"}}
    status, added = deployment.call("POST", "/_admin/faults", body=rule)
    assert status == 201
    assert [deployment.call("GET", "/v1/pools", key=k)[0] for k in one_per_cell] == [403, 403]
    _, listed = deployment.call("GET", "/_admin/faults")
    assert [(r["id"], r["fired"]) for r in listed["rules"]] == [(added["id"], 2)]
    assert deployment.call("DELETE", f"/_admin/faults/{added['id']}")[0] == 204
    assert [deployment.call("GET", "/v1/pools", key=k)[0] for k in one_per_cell] == [200, 200]


def test_the_merged_leak_report_is_empty_after_a_load_run_and_names_a_held_allocation(
    deployment: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_cell = _keys_by_cell(deployment)
    # Users take the keys in turn: a tenant of each cell, so the run loads both.
    monkeypatch.setenv("HOSTED_AI_API_KEYS", f"{by_cell['a'][0]},{by_cell['b'][0]}")
    run = run_locust(
        tmp_path,
        *("-f", str(LOCUSTFILE), "-u", "4", "-r", "4", "-t", "3s", "--host", deployment.proxy),
        *("--slo-file", str(LAX_SLO), "--only-summary"),
    )
    assert run.returncode == 0, run.stdout
    _, journal = deployment.call("GET", "/_admin/journal?operation=allocate&limit=100000")
    assert {e["cell"] for e in journal["entries"]} == {"a", "b"}
    assert deployment.call("GET", "/_admin/leaks") == (200, {"leaks": []})

    held_by = by_cell["b"][0]
    _, allocation = deployment.call("POST", "/v1/allocate", key=held_by, body=GEMMA)
    _, report = deployment.call("GET", "/_admin/leaks")
    assert [(leak["allocation_id"], leak["cell"], leak["reason"]) for leak in report["leaks"]] == [
        (allocation["allocation_id"], "b", "still_active")
    ]
