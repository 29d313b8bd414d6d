"""configs/harpoon.yaml in the guide's shape, and harpoon-service's one-line errors with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.connector import Requirements
from harness.orchestrator import load_model_classes
from harness.resources import HARPOON_CONFIG, MODELS_FILE
from harness.service import ServiceConfigError, load_service_config
from harness.service.cli import build_parser, main
from tests.orchestrator.support import ROOT

SHIPPED = ROOT / "configs" / "harpoon.yaml"


def test_the_shipped_config_is_the_guides_shape() -> None:
    config = load_service_config(SHIPPED)  # HOSTED_AI_API_KEY is set by the autouse fixture
    hosted_ai = config.hosted_ai
    assert (hosted_ai.base_url, hosted_ai.api_key, hosted_ai.pool) == (
        "http://127.0.0.1:8000",
        "${HOSTED_AI_API_KEY}",  # kept as a template, so a rotated key is re-read
        "gpu-pool-1",
    )
    assert hosted_ai.resolve_api_key() == "dev-key"
    assert (hosted_ai.overcommit, hosted_ai.timeout_secs, hosted_ai.max_retries) == (True, 30, 3)
    assert (hosted_ai.circuit_breaker.failure_threshold, hosted_ai.circuit_breaker.recovery_timeout) == (5, 60)
    assert (config.service.host, config.service.port) == ("127.0.0.1", 8080)
    # `models: models.yaml` is read relative to the config file.
    assert config.classes.for_label("complex").requirements() == Requirements(
        model="qwen-30b", tflops=30, vram_mb=20480, max_tokens=1024
    )
    # Request batching: simple requests share allocations, 8 at most, waiting 25 ms at most.
    assert config.batching.model_dump() == {"enabled": True, "max_size": 8, "max_wait_ms": 25, "classes": ["simple"]}


def test_the_api_key_variable_must_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSTED_AI_API_KEY")
    with pytest.raises(ServiceConfigError, match="environment variable HOSTED_AI_API_KEY is not set"):
        load_service_config(SHIPPED)


def _config_with(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load(SHIPPED.read_text("utf-8"))
    data["models"] = str(ROOT / "configs" / "models.yaml")
    data.update(changes)
    path = tmp_path / "harpoon.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"service": {"port": 70000}}, "service.port: Input should be less than or equal to 65535"),
        ({"service": {"listen": "0.0.0.0"}}, "service.listen: Extra inputs are not permitted"),
        ({"hosted_ai": {"base_url": "ftp://x", "api_key": "k"}}, "hosted_ai.base_url: Value error"),
        ({"models": "nowhere.yaml"}, "nowhere.yaml: cannot read the models file"),
        ({"workers": 4}, "unknown key workers"),
        ({"batching": {"max_size": 0}}, "batching.max_size: Input should be greater than or equal to 1"),
        ({"batching": {"classes": ["tiny"]}}, "batching.classes.0: Input should be 'simple' or 'complex'"),
    ],
)
def test_bad_configs_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict[str, object], message: str
) -> None:
    assert main(["--config", str(_config_with(tmp_path, **changes))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("harpoon-service: error: ")
    assert message in err
    assert err.count("\n") == 1


def test_unreadable_and_invalid_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: cannot read the config file" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosted_ai: [")
    assert main(["--config", str(bad)]) == 2
    assert "bad.yaml: not valid YAML" in capsys.readouterr().err


def test_the_default_config_is_the_packaged_one_and_loads_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/ here: a user's project, not this checkout
    default = build_parser().parse_args([]).config
    assert Path(default) == HARPOON_CONFIG
    assert load_service_config(default) == load_service_config(SHIPPED)


def test_a_config_with_only_the_guides_section_uses_the_shipped_model_table(tmp_path: Path) -> None:
    path = tmp_path / "harpoon.yaml"
    path.write_text('hosted_ai:\n  base_url: "https://api.hosted.ai"\n  api_key: "${HOSTED_AI_API_KEY}"\n')
    config = load_service_config(path)
    assert config.classes == load_model_classes(MODELS_FILE)
    assert config.classes.for_label("simple").requirements().model == "gemma-270m"


def test_a_missing_api_key_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("HOSTED_AI_API_KEY")
    assert main(["--config", str(SHIPPED)]) == 2
    assert "HOSTED_AI_API_KEY is not set" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--port", "eighty"], ["--bogus"]])
def test_bad_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("harpoon-service: error: ")
    assert err.count("\n") == 1


def test_an_out_of_range_port_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(SHIPPED), "--port", "-1"]) == 2
    assert "command line: service.port: Input should be greater than or equal to 0" in capsys.readouterr().err


def test_hostedai_url_points_the_service_at_another_hostedai() -> None:
    config = load_service_config(SHIPPED).with_upstream("http://127.0.0.1:8123/")
    assert config.hosted_ai.base_url == "http://127.0.0.1:8123"
    assert config.hosted_ai.api_key == load_service_config(SHIPPED).hosted_ai.api_key  # the rest is the config's
    assert load_service_config(SHIPPED).with_upstream(None).hosted_ai.base_url == "http://127.0.0.1:8000"


def test_a_hostedai_url_that_is_not_http_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(SHIPPED), "--hostedai-url", "ftp://mock:8000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("harpoon-service: error: --hostedai-url: hosted_ai.base_url")
    assert err.count("\n") == 1
