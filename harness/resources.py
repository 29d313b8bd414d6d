"""Where the harness finds the files it ships: contracts, configs and the locust project.

Installed from a wheel they live inside the package (`_contracts/`, `_configs/`, `_loadtests/`,
force-included by pyproject); in a checkout they are read from the repository's `contracts/`,
`configs/` and `loadtests/`. This is the only module that knows the difference.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent


def _packaged_or_checkout(packaged: str, checkout: str) -> Path:
    inside = _PACKAGE / packaged
    return inside if inside.is_dir() else _CHECKOUT / checkout


CONTRACTS_DIR = _packaged_or_checkout("_contracts", "contracts")
HOSTEDAI_CONTRACT = CONTRACTS_DIR / "hostedai.v1.yaml"
HARPOON_CONTRACT = CONTRACTS_DIR / "harpoon.v2.yaml"

CONFIGS_DIR = _packaged_or_checkout("_configs", "configs")
MODELS_FILE = CONFIGS_DIR / "models.yaml"
"""The integration guide's request classes (the orchestrator's default)."""
HARPOON_CONFIG = CONFIGS_DIR / "harpoon.yaml"
"""harpoon-service's default configuration."""

LOADTESTS_DIR = _packaged_or_checkout("_loadtests", "loadtests")
TRACE_SCHEMA = CONTRACTS_DIR / "drift-trace.v1.schema.json"
"""The JSON Schema of a drift trace's lines: written by `record`, read by `drift` and `hostedai-mock calibrate`."""
