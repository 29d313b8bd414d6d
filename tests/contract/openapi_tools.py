"""Where the OpenAPI tools the contract tests run are: npm's (Redocly, Spectral, Prism) in `.tools/`,
installed by `make tools` (and by `make test` before it runs pytest) at the versions tools/package.json
pins; Python's (openapi-python-client, openapi-generator-cli) in the dev extra."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = sorted((ROOT / "contracts").glob("*.yaml"))
NPM_BIN = ROOT / ".tools" / "node_modules" / ".bin"
# Quiet and offline: no update checks, no telemetry.
QUIET = {"NO_UPDATE_NOTIFIER": "1", "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"}


def npm_tool(name: str) -> Path:
    path = NPM_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is not installed: run `make tools` (make test does)", pytrace=False)
    return path


def python_tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'", pytrace=False)
    return str(path)


def environment() -> dict[str, str]:
    return {**os.environ, **QUIET, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}


def java_present() -> bool:
    return shutil.which("java") is not None
