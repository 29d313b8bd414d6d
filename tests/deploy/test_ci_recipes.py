"""The CI recipes teams copy (action.yml, examples/ci/, examples/testcontainers/) are valid and say what
the code does. No CI service or Docker engine is reachable here, so: the GitHub workflow, the action and
the GitLab job are validated against SchemaStore's schemas as check-jsonschema ships them (offline), every
command they run parses with the real parser, and the Testcontainers example runs against a stand-in
that starts the image's command as a local process."""

from __future__ import annotations

import importlib.util
import inspect
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import pytest
import yaml
from testcontainers.core.container import DockerContainer
from testcontainers.core.waiting_utils import wait_for_logs

from harness.cli import build_parser
from harness.control_plane import SyncControlPlane
from tests.deploy.files import PYPROJECT, ROOT

ACTION = ROOT / "action.yml"
WORKFLOW = ROOT / "examples" / "ci" / "github-actions.yml"
GITLAB = ROOT / "examples" / "ci" / "gitlab-ci.yml"
TESTCONTAINERS = ROOT / "examples" / "testcontainers" / "test_hostedai_container.py"
SCHEMAS = {ACTION: "vendor.github-actions", WORKFLOW: "vendor.github-workflows", GITLAB: "vendor.gitlab-ci"}
REPOSITORY = PYPROJECT["project"]["urls"]["Repository"]


def _check_jsonschema(schema: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema", schema, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("path", list(SCHEMAS), ids=lambda path: path.name)
def test_each_recipe_is_valid_against_its_schemastore_schema(path: Path) -> None:
    result = _check_jsonschema(SCHEMAS[path], path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_broken_recipe(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "run-on:"))
    assert _check_jsonschema(SCHEMAS[WORKFLOW], broken).returncode != 0


def _harness_commands(text: str) -> list[list[str]]:
    return [shlex.split(line)[1:] for line in re.findall(r"hostedai-harness [^\n\"]+", text)]


def test_every_harness_command_of_the_gitlab_job_parses() -> None:
    commands = _harness_commands(GITLAB.read_text())
    assert len(commands) == 2
    for argv in commands:
        build_parser().parse_args(argv)  # exits 2 on a flag that does not exist


def test_the_workflow_gives_the_action_only_inputs_it_has_and_commands_that_exist() -> None:
    inputs = yaml.safe_load(ACTION.read_text())["inputs"]
    owner_repo = REPOSITORY.removeprefix("https://github.com/")
    steps = [
        step
        for job in yaml.safe_load(WORKFLOW.read_text())["jobs"].values()
        for step in job["steps"]
        if step.get("uses", "").startswith(f"{owner_repo}@")
    ]
    assert len(steps) == 2
    for step in steps:
        given = step["with"]
        assert set(given) <= set(inputs)
        build_parser().parse_args([given["command"], "--target", given.get("target", "mock")])


def test_the_action_runs_the_harness_with_its_inputs_and_keeps_the_reports() -> None:
    action = yaml.safe_load(ACTION.read_text())
    inputs = action["inputs"]
    steps = action["runs"]["steps"]
    text = ACTION.read_text()
    used = set(re.findall(r"inputs\.([a-z-]+)", text))
    assert used == set(inputs), "every input is used, and only inputs that exist"
    (run,) = [step for step in steps if "hostedai-harness" in step.get("run", "")]
    env = {name: str(value) for name, value in run["env"].items()}
    defaults = {f"${{{{ inputs.{name} }}}}": str(spec.get("default", "")) for name, spec in inputs.items()}
    values = {name: defaults.get(value, value) for name, value in env.items()}
    argv = [
        values["COMMAND"],
        "--target",
        values["TARGET"],
        "--seed",
        values["SEED"],
        "--examples",
        values["EXAMPLES"],
        "--report-dir",
        values["REPORT_DIR"],
    ]
    assert (
        '"$COMMAND" --target "$TARGET" --seed "$SEED" --examples "$EXAMPLES" --report-dir "$REPORT_DIR"' in run["run"]
    )
    args = build_parser().parse_args(argv)
    assert (args.command, args.target, args.report_dir) == ("verify", "mock", "hostedai-reports")
    assert run["env"]["HOSTED_AI_API_KEY"] == "${{ inputs.api-key }}"  # --api-key-env's default variable
    (upload,) = [step for step in steps if step.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["with"]["path"] == "${{ inputs.report-dir }}"


def test_recipes_install_the_testkit_from_the_repository_pyproject_declares() -> None:
    owner_repo = REPOSITORY.removeprefix("https://github.com/")
    workflow = WORKFLOW.read_text()
    assert f"uses: {owner_repo}@v" in workflow
    assert f"git+{REPOSITORY}@v" in workflow
    assert f"git+{REPOSITORY}@v" in GITLAB.read_text()


def test_gitlab_publishes_the_junit_report_the_harness_writes() -> None:
    jobs = yaml.safe_load(GITLAB.read_text())
    for name in ("hostedai-harness", "hostedai-live-contract"):
        (command,) = _harness_commands("\n".join(jobs[name]["script"]))
        report_dir = build_parser().parse_args(command).report_dir
        assert jobs[name]["artifacts"]["reports"]["junit"] == f"{report_dir}/junit.xml"


# ---- the Testcontainers example ---------------------------------------------------------------------


class LocalContainer:
    """What the example asks of `DockerContainer`, done by running the image's command as a local process
    (loopback, a free port). Each method has the real one's name and parameters (checked below)."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.command: list[str] = []
        self.env: dict[str, str] = {}
        self.ports: tuple[str | int, ...] = ()
        self.first_line = ""
        self._process: subprocess.Popen[str] | None = None
        self._port = 0

    def with_command(self, command: str | list[str]) -> LocalContainer:
        self.command = shlex.split(command) if isinstance(command, str) else list(command)
        return self

    def with_env(self, key: str, value: str) -> LocalContainer:
        self.env[key] = value
        return self

    def with_exposed_ports(self, *ports: str | int) -> LocalContainer:
        self.ports = ports
        return self

    def __enter__(self) -> LocalContainer:
        program, *args = self.command
        assert program in PYPROJECT["project"]["scripts"], f"{program} is not a command of the image"
        args[args.index("--host") + 1] = "127.0.0.1"
        args[args.index("--port") + 1] = "0"
        self._process = subprocess.Popen(
            [sys.executable, "-m", "mock_server", *args],
            env={**self.env, "PATH": str(Path(sys.executable).parent)},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self._process.stdout is not None
        self.first_line = self._process.stdout.readline()
        self._port = int(re.findall(r":(\d+)", self.first_line)[0])
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            if self._process.stdout is not None:
                self._process.stdout.close()

    def get_container_host_ip(self) -> str:
        return "127.0.0.1"

    def get_exposed_port(self, port: int) -> int:
        assert port in self.ports
        return self._port


def local_wait_for_logs(container: LocalContainer, predicate: str, timeout: float = 120.0) -> float:
    assert predicate in container.first_line, container.first_line
    return 0.0


def test_the_stand_in_matches_the_real_testcontainers_api() -> None:
    for name in ("with_command", "with_env", "with_exposed_ports", "get_container_host_ip", "get_exposed_port"):
        ours = list(inspect.signature(getattr(LocalContainer, name)).parameters)
        theirs = list(inspect.signature(getattr(DockerContainer, name)).parameters)
        assert ours == theirs, name
    ours = list(inspect.signature(local_wait_for_logs).parameters)
    assert ours == list(inspect.signature(wait_for_logs).parameters)[: len(ours)]


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("hostedai_testcontainers_example", TESTCONTAINERS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "DockerContainer", LocalContainer)
    monkeypatch.setattr(module, "wait_for_logs", local_wait_for_logs)
    return module


def test_the_testcontainers_example_runs_its_tests_against_the_images_command(example: Any) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert example.COMMAND[:1] == compose["services"]["mock"]["command"][:1]
    tests = [value for name, value in vars(example).items() if name.startswith("test_")]
    assert len(tests) == 2
    with example.hostedai_mock_container() as url:
        for test in tests:
            admin = SyncControlPlane(url, example.ADMIN_TOKEN)
            admin.reset()  # what the example's `admin` fixture does
            test(url, admin)
