"""A team's first hour, for real: a plain `pip install .` into a virtualenv of its own (`make tools` makes
it in .tools/fresh: not editable, no dev extra, no pytest-asyncio), and every command run from a
directory outside the checkout, so only what the wheel ships is there to be found."""

from __future__ import annotations

import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FRESH = ROOT / ".tools" / "fresh"
ASYNCIO_PLUGIN = ROOT / ".tools" / "fresh-asyncio"
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def fresh_bin() -> Path:
    if not (FRESH / ".installed").is_file():
        pytest.fail(f"{FRESH} is missing: run `make tools` (make test does)", pytrace=False)
    return FRESH / "bin"


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A user's project directory: no configs/, contracts/ or loadtests/ beside it."""
    project = tmp_path / "team-project"
    project.mkdir()
    return project


def _env(**extra: str) -> dict[str, str]:
    # Nothing from this checkout's virtualenv or source tree may leak in.
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PATH": f"{FRESH / 'bin'}:/usr/bin:/bin", **extra}


def _run(argv: list[str], cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=timeout)


def test_the_packages_come_from_the_installed_wheel(fresh_bin: Path, elsewhere: Path) -> None:
    code = "import harness, mock_server; print(harness.__file__); print(mock_server.__file__)"
    result = _run([str(fresh_bin / "python"), "-c", code], elsewhere)
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        assert str(FRESH) in line
        assert "site-packages" in line


def test_hostedai_harness_verify_passes(fresh_bin: Path, elsewhere: Path) -> None:
    argv = [str(fresh_bin / "hostedai-harness"), "verify", "--examples", "5", "--report-dir", "reports"]
    result = _run(argv, elsewhere)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^load\s+\d+", result.stdout, re.M), "the load suite ran"
    assert (elsewhere / "reports" / "junit.xml").is_file()


@pytest.fixture
def harpoon(fresh_bin: Path, elsewhere: Path) -> Iterator[str]:
    process = subprocess.Popen(
        [str(fresh_bin / "harpoon-service"), "--port", "0"],  # the packaged configuration
        cwd=elsewhere,
        env=_env(HOSTED_AI_API_KEY="dev-key"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    try:
        found = re.search(r"listening on (http://\S+)", line)
        assert found, f"{line!r} {process.stderr.read() if process.poll() is not None and process.stderr else ''}"
        yield found.group(1)
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()
        if process.stderr is not None:
            process.stderr.close()


def test_harpoon_service_starts_with_its_packaged_defaults(harpoon: str) -> None:
    with urllib.request.urlopen(f"{harpoon}/health", timeout=10) as answer:
        assert answer.status == 200


def _examples(doc: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / doc).read_text(), re.S)


def test_the_docs_pytest_examples_pass_without_an_asyncio_plugin_and_in_strict_mode(
    fresh_bin: Path, elsewhere: Path
) -> None:
    sync_example, async_example = _examples("harness.md")
    (elsewhere / "test_sync_example.py").write_text(sync_example)
    plain = _run([str(fresh_bin / "python"), "-m", "pytest", "-p", "no:cacheprovider", "-q"], elsewhere)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "3 passed" in plain.stdout
    # The same project once its team adds pytest-asyncio, in strict mode (its default).
    (elsewhere / "test_async_example.py").write_text(async_example)
    (elsewhere / "pytest.ini").write_text("[pytest]\nasyncio_mode = strict\n")
    strict = _run(
        [str(fresh_bin / "python"), "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        elsewhere,
        PYTHONPATH=str(ASYNCIO_PLUGIN),
    )
    assert strict.returncode == 0, strict.stdout + strict.stderr
    assert "5 passed" in strict.stdout


def test_the_control_plane_guide_runs(fresh_bin: Path, elsewhere: Path) -> None:
    for example in _examples("control-plane.md")[1:]:
        result = _run([str(fresh_bin / "python"), "-c", example], elsewhere, timeout=120)
        assert result.returncode == 0, result.stderr
