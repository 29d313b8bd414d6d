"""Where the harness finds the contracts: inside the package when installed from a wheel (pyproject
force-includes them), else in the checkout's `contracts/`."""

from __future__ import annotations

from pathlib import Path

_PACKAGED = Path(__file__).resolve().parent / "_contracts"
CONTRACTS_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parents[1] / "contracts"
HOSTEDAI_CONTRACT = CONTRACTS_DIR / "hostedai.v1.yaml"
HARPOON_CONTRACT = CONTRACTS_DIR / "harpoon.v2.yaml"
