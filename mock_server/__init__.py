"""A stateful mock of HostedAI's GPU-as-a-Service API.

Run it with `hostedai-mock`, or embed it in a test with `MockHostedAI`.
"""

__version__ = "0.1.0"

from mock_server.embedded import MockHostedAI

__all__ = ["MockHostedAI", "__version__"]
