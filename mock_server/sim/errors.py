"""Domain errors. Each carries the problem `code` of the wire contract; the HTTP layer maps codes to
statuses in one table and renders them, so the domain never knows about HTTP."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldProblem:
    path: str
    """A JSON pointer into the request, e.g. `/body/requirements/tflops`."""
    message: str


class SimError(Exception):
    code = "internal_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(SimError):
    code = "not_found"


class InvalidInput(SimError):
    """Well-formed but impossible: requirements no GPU could hold, max_tokens above the model's limit."""

    code = "validation_failed"

    def __init__(self, detail: str, errors: list[FieldProblem]) -> None:
        super().__init__(detail)
        self.errors = errors


class AllocationNotActive(SimError):
    code = "allocation_not_active"

    def __init__(self, detail: str, state: str) -> None:
        super().__init__(detail)
        self.state = state


class IdempotencyConflict(SimError):
    code = "idempotency_conflict"


class QuotaExceeded(SimError):
    code = "quota_exceeded"


class PoolNotPermitted(SimError):
    """The pool exists but does not serve the tenant's tier (pool segregation)."""

    code = "pool_not_permitted"


class _RetryLater(SimError):
    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class CapacityExhausted(_RetryLater):
    code = "capacity_exhausted"


class RateLimited(_RetryLater):
    code = "rate_limited"


class Unavailable(_RetryLater):
    """A model server that cannot take the request now (its waiting queue is full)."""

    code = "unavailable"


class NotReady(Unavailable):
    """The allocation is still provisioning: its model server is not up yet."""
