"""Which contract operation a request is: method and path matched against `contracts/hostedai.v1.yaml`.

A trace names operations by the contract's `operationId` (`createAllocation`, `createInference`...), so a
record means the same thing whichever client or server produced it.
"""

from __future__ import annotations

import functools
import re

from harness.resources import HOSTEDAI_CONTRACT
from harness.yamlfile import read_yaml

_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


@functools.cache
def _routes() -> list[tuple[str, re.Pattern[str], str]]:
    contract = read_yaml(HOSTEDAI_CONTRACT, ValueError)
    routes = []
    for template, item in contract["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
        for method in _METHODS:
            if method in item and "operationId" in item[method]:
                routes.append((method.upper(), pattern, item[method]["operationId"]))
    # Literal paths before templated ones: /v1/pools before /v1/pools/{pool_id} never clash, but a
    # literal segment must win wherever a template could also match it.
    routes.sort(key=lambda route: route[1].pattern.count("[^/]+"))
    return routes


def operation_id(method: str, path: str) -> str:
    for route_method, pattern, name in _routes():
        if route_method == method.upper() and pattern.match(path):
            return name
    return "unknown"
