"""The suites that verify a HostedAI integration (the harness's *verifying* half, with cli.py).

Each suite is an object with a `name`, a `needs_control_plane` flag and an async `run(target, options)`
that returns a `SuiteResult` (`base.py`); suites never print. `contract` runs schemathesis and the
behaviour probes, `stateful` a Hypothesis state machine over the connector, `chaos` the orchestrator
through the mock's fault scenarios, `load` locust with SLO gates. They gather evidence first and judge
it in pure functions (`leaks.py` holds the leak check they share).
"""
