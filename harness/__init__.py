"""The client side of a HostedAI integration and the suites that verify it.

It meets the mock only over HTTP and the contract: nothing here imports `mock_server` (a test pins it).

What a team imports (each module on its own: this face loads none of them):
- `harness.connector`: `HostedAiConnector`, the resilient HostedAI client, and its config and errors;
- `harness.orchestrator`: classify → allocate → infer → release, with fail-over and cost per tenant;
- `harness.control_plane`: `ControlPlane` / `SyncControlPlane`, the client of a mock's `/_admin` API;
- `harness.pytest_plugin`: the `hostedai_*` fixtures and `@pytest.mark.hostedai` (loaded by pytest).
"""
