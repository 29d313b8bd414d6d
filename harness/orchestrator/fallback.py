"""The answer when HostedAI's circuit is open: informative, clearly marked, and free.

The integration guide asks for "mock responses with informative error messages" while the breaker is
open. The fallback never pretends to be a model's answer: `fallback` is true, `output` says what
happened and when to try again, and nothing was allocated or billed.
"""

from __future__ import annotations

from harness.orchestrator.accounting import Cost
from harness.orchestrator.classifier import Classification
from harness.orchestrator.result import ProcessResult


def _when(retry_in_s: float | None, recovery_timeout_s: float) -> str:
    if retry_in_s is None:
        # Known only as a bound: the breaker does not say when it opened (see the connector report).
        return f"within {recovery_timeout_s:g} s"
    return f"in {max(0.0, retry_in_s):.1f} s"


def circuit_open_result(
    *,
    classification: Classification,
    model: str,
    tenant: str,
    retry_in_s: float | None,
    recovery_timeout_s: float,
    cost: Cost | None = None,
) -> ProcessResult:
    """`retry_in_s`: seconds until the breaker lets a probe through, when known.
    `cost`: what an allocation held before the circuit opened mid-request cost (usually nothing)."""
    when = _when(retry_in_s, recovery_timeout_s)
    reason = f"circuit_open: HostedAI failed repeatedly, so its circuit breaker is open; it retries {when}"
    output = (
        "This request was not processed: HostedAI, the GPU provider that runs the models, is failing, and "
        f"Harpoon has stopped sending it requests for a while. It will try HostedAI again {when}; please "
        f"resend the request then. (It would have run on {model} as a {classification.label} request.)"
    )
    return ProcessResult(
        output=output,
        fallback=True,
        reason=reason,
        classification=classification,
        model=model,
        pool_id=None,
        allocation_id=None,
        usage=None,
        cost=cost or Cost(),
        timings=None,
        tenant=tenant,
    )
