"""A stateful mock of HostedAI's GPU-as-a-Service API.

Run it with `hostedai-mock`, or embed it in a test with `MockHostedAI`. The package face imports nothing
heavy: `MockHostedAI` (and with it aiohttp and the HTTP layer) is loaded on first use, so
`import mock_server.sim` stays free of HTTP. ARCHITECTURE.md at the repository root names the layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mock_server.version import __version__

if TYPE_CHECKING:
    from mock_server.embedded import MockHostedAI

__all__ = ["MockHostedAI", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "MockHostedAI":
        from mock_server.embedded import MockHostedAI

        return MockHostedAI
    raise AttributeError(f"module 'mock_server' has no attribute {name!r}")
