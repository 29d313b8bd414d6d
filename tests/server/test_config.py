"""Configuration: the packaged default, validation with one-line errors, environment expansion."""

from __future__ import annotations

from pathlib import Path

import pytest

from mock_server.config import ConfigError, default_config, load_config, parse_config


def test_default_config_has_the_documented_pools_models_and_tenants() -> None:
    config = default_config()
    pools = {p.id: p for p in config.pools}
    assert (pools["gpu-pool-1"].gpu_type, pools["gpu-pool-1"].gpus, pools["gpu-pool-1"].overcommit_ratio) == (
        "H100-80GB",
        8,
        2,
    )
    assert pools["gpu-pool-1"].vram_mb_per_gpu == 81920
    assert (pools["gpu-pool-2"].gpus, pools["gpu-pool-2"].overcommit_ratio) == (4, 4)
    assert pools["gpu-pool-2"].price_per_tflops_hour < pools["gpu-pool-1"].price_per_tflops_hour
    assert set(config.models) == {"gemma-270m", "qwen-30b"}
    assert config.tenants["dev"].api_keys == ["dev-key"]
    assert config.tenants["team-b"].api_keys == ["team-b-key"]
    assert config.server.admin_token == "dev-admin"
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8000)
    # Pool segregation: dev (enterprise) may use both pools, team-b (standard) only the cheaper one.
    assert (config.tenants["dev"].tier, config.tenants["team-b"].tier) == ("enterprise", "standard")
    assert (pools["gpu-pool-1"].tiers, pools["gpu-pool-2"].tiers) == (["enterprise"], ["enterprise", "standard"])


def test_without_tiers_every_tenant_may_use_every_pool() -> None:
    data = _data()
    for pool in data["pools"]:
        pool.pop("tiers")
    for tenant in data["tenants"].values():
        tenant.pop("tier")
    config = parse_config(data)
    assert {t.tier for t in config.tenants.values()} == {"standard"}
    assert all(p.tiers is None for p in config.pools)


def _data() -> dict:  # type: ignore[type-arg]
    return default_config().model_dump()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["pools"][0].update(gpus=0), "config key pools.0.gpus: Input should be greater than or equal to 1"),
        (lambda d: d["server"].update(prot=1), "config key server.prot: Extra inputs are not permitted"),
        (lambda d: d["pools"][1].update(placement="random"), "config key pools.1.placement: Input should be"),
        (lambda d: d["models"]["qwen-30b"].update(pools=["nope"]), "models.qwen-30b.pools names unknown pool 'nope'"),
        (lambda d: d["tenants"]["team-b"].update(api_keys=["dev-key"]), "is also a key of tenant 'dev'"),
        (lambda d: d.update(tenants={}), "config key tenants:"),
        (lambda d: d["tenants"]["dev"].update(tier="gold"), "tenants.dev.tier 'gold' is served by no pool"),
        (lambda d: d["pools"][0].update(tiers=["no spaces"]), "config key pools.0.tiers.0: String should match"),
    ],
)
def test_invalid_config_is_one_line_naming_the_key(mutate: object, message: str) -> None:
    data = _data()
    mutate(data)  # type: ignore[operator]
    with pytest.raises(ConfigError) as err:
        parse_config(data, "test.yaml")
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("test.yaml: ")
    assert message in text


def test_environment_variables_are_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _data()
    data["tenants"]["dev"]["api_keys"] = ["${DEV_KEY}"]
    monkeypatch.setenv("DEV_KEY", "from-env")
    assert parse_config(data).tenants["dev"].api_keys == ["from-env"]
    monkeypatch.delenv("DEV_KEY")
    with pytest.raises(ConfigError, match=r"tenants\.dev\.api_keys\[0\]: environment variable DEV_KEY is not set"):
        parse_config(data)


def test_unreadable_or_invalid_yaml_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("pools: [\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(scalar)
