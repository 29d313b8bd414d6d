"""Locust load tests for HostedAI and for Harpoon's `/v2/process` service (docs/load.md).

A locust project of its own: it talks to its target over HTTP only and imports neither `harness` nor
`mock_server` (tests/loadtests/test_boundaries.py pins it). Locust loads `locustfile.py`,
`harpoon_locustfile.py` and `shapes.py`; the `_`-prefixed modules beside them are their helpers (locust
skips `_` files when given this directory), importable as `loadtests._slo` and so on by tests.
"""
