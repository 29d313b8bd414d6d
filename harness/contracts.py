"""Where the harness finds its contracts and shipped configs: inside the package when installed from a
wheel (pyproject force-includes them), else in the checkout's `contracts/` and `configs/`."""

from __future__ import annotations

from pathlib import Path

_PACKAGED = Path(__file__).resolve().parent / "_contracts"
CONTRACTS_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parents[1] / "contracts"
HOSTEDAI_CONTRACT = CONTRACTS_DIR / "hostedai.v1.yaml"
HARPOON_CONTRACT = CONTRACTS_DIR / "harpoon.v2.yaml"

_PACKAGED_CONFIGS = Path(__file__).resolve().parent / "_configs"
CONFIGS_DIR = _PACKAGED_CONFIGS if _PACKAGED_CONFIGS.is_dir() else Path(__file__).resolve().parents[1] / "configs"
MODELS_FILE = CONFIGS_DIR / "models.yaml"
