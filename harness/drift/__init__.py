"""Keeping the mock honest against the real HostedAI (docs/drift.md).

`record` runs a bounded, seeded probe script through the real connector against a HostedAI and writes
a trace (`trace.py`, validated against `contracts/drift-trace.v1.schema.json`); `drift` replays the same
probe against a mock process and compares the two, aspect by aspect (`compare.py`, with the statistics
of `stats.py`).
One job per module: `probe` (what is asked), `recorder` (what is kept of each request), `shape` (a body
reduced to its key paths and types), `operations` (a request's contract operationId), `commands` (the
I/O of the two commands), `cli` (their flags and exit codes).
"""
