"""Where the mock finds the files it ships: the contracts, the default configuration and the dashboard.

Installed from a wheel, the contracts live inside the package (`_contracts/`, force-included by
pyproject); in a checkout they are read from the repository's `contracts/`. This is the only module
that knows the difference.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_PACKAGED_CONTRACTS = _PACKAGE / "_contracts"
CONTRACTS_DIR = _PACKAGED_CONTRACTS if _PACKAGED_CONTRACTS.is_dir() else _PACKAGE.parent / "contracts"
HOSTEDAI_CONTRACT = CONTRACTS_DIR / "hostedai.v1.yaml"
ADMIN_CONTRACT = CONTRACTS_DIR / "admin.v1.yaml"
TRACE_SCHEMA = CONTRACTS_DIR / "drift-trace.v1.schema.json"
"""What `hostedai-harness record` writes and `hostedai-mock calibrate` reads."""
DEFAULT_CONFIG = _PACKAGE / "default_config.yaml"
SERVING_PROFILES = _PACKAGE / "serving_profiles.yaml"
DASHBOARD_STATIC = _PACKAGE / "dashboard" / "static"
