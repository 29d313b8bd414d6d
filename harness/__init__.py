"""The client side of a HostedAI integration and the suites that verify it.

It meets the mock only over HTTP and the contract: nothing here imports `mock_server` (a test pins it).
"""
