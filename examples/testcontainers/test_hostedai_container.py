"""The mock HostedAI in a container, for a test suite that should not run it in-process: Testcontainers
starts the project's image (`docker build -t hostedai-testkit:local .` in the testkit's checkout), waits
for the mock's ready line, and the tests talk to it over the mapped port.

    pip install hostedai-testkit testcontainers requests
    pytest examples/testcontainers/test_hostedai_container.py

The control plane's token comes from the environment, so nothing secret is on the command line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import requests
from testcontainers.core.container import DockerContainer
from testcontainers.core.waiting_utils import wait_for_logs

from harness.control_plane import SyncControlPlane

IMAGE = "hostedai-testkit:local"
PORT = 8000
ADMIN_TOKEN = "ci-admin"
READY = "HostedAI mock listening on"  # the first line hostedai-mock prints
COMMAND = ["hostedai-mock", "--host", "0.0.0.0", "--port", str(PORT), "--clock", "manual", "--seed", "7"]
GEMMA = {"pool_id": "gpu-pool-2", "requirements": {"tflops": 5, "vram_mb": 2048, "model": "gemma-270m"}}


@contextlib.contextmanager
def hostedai_mock_container() -> Iterator[str]:
    """The mock in a container; yields its base URL as seen from this process."""
    container = (
        DockerContainer(IMAGE)
        .with_command(COMMAND)
        .with_env("HOSTEDAI_ADMIN_TOKEN", ADMIN_TOKEN)
        .with_exposed_ports(PORT)
    )
    with container:
        wait_for_logs(container, READY, timeout=60)
        yield f"http://{container.get_container_host_ip()}:{container.get_exposed_port(PORT)}"


@pytest.fixture(scope="session")
def hostedai_url() -> Iterator[str]:
    with hostedai_mock_container() as url:
        yield url


@pytest.fixture
def admin(hostedai_url: str) -> SyncControlPlane:
    control_plane = SyncControlPlane(hostedai_url, ADMIN_TOKEN)
    control_plane.reset()
    return control_plane


def test_allocate_infer_release(hostedai_url: str, admin: SyncControlPlane) -> None:
    http = requests.Session()
    http.headers["Authorization"] = "Bearer dev-key"
    allocation = http.post(f"{hostedai_url}/v1/allocate", json=GEMMA, timeout=30).json()
    answer = http.post(
        f"{hostedai_url}/v1/inference",
        json={"allocation_id": allocation["allocation_id"], "prompt": "Hello", "max_tokens": 8},
        timeout=30,
    )
    assert answer.status_code == 200
    assert http.delete(f"{hostedai_url}/v1/allocate/{allocation['allocation_id']}", timeout=30).status_code == 204
    assert admin.leaks() == []


def test_a_lost_allocate_answer_is_in_the_journal(hostedai_url: str, admin: SyncControlPlane) -> None:
    admin.add_fault({"match": {"operation": "allocate"}, "phase": "after", "times": 1, "action": {"type": "reset"}})
    with pytest.raises(requests.ConnectionError):
        requests.post(
            f"{hostedai_url}/v1/allocate", json=GEMMA, headers={"Authorization": "Bearer dev-key"}, timeout=30
        )
    (entry,) = admin.journal(operation="allocate")
    assert entry["fault_action"] == "reset"
    assert [leak["reason"] for leak in admin.leaks()] == ["still_active"]  # the work was done
