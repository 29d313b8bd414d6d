"""The connector's exceptions, one per problem `code` of the HostedAI contract.

    HostedAiError                      anything the connector raises
    ├── ApiError                       HostedAI answered with a problem (status, code, request_id, detail)
    │   ├── InvalidRequest             400 invalid_request, 415 unsupported_media_type
    │   ├── ValidationFailed           422 validation_failed (`errors` lists the fields)
    │   ├── Unauthorized               401 (after one retry with a re-read key)
    │   ├── QuotaExceeded              403 quota_exceeded
    │   ├── PoolNotPermitted           403 pool_not_permitted: the pool does not serve the tenant's tier
    │   ├── NotFound                   404
    │   ├── AllocationNotActive        409 allocation_not_active (`state` says how it ended)
    │   ├── IdempotencyConflict        409 idempotency_conflict
    │   ├── PayloadTooLarge            413
    │   ├── RateLimited                429 (`retry_after`)
    │   └── ServerError                500 internal_error and any other 5xx
    │       ├── NotImplementedByServer 501: never retried, not counted by the breaker
    │       ├── BadGateway             502
    │       ├── Unavailable            503 unavailable (`retry_after`)
    │       │   └── CapacityExhausted  503 capacity_exhausted: retried, not counted by the breaker
    │       └── GatewayTimeout         504
    ├── TransportError                 no usable answer: connection refused/reset, malformed body
    │   ├── RequestTimeout             the allocation or inference timeout ran out
    │   └── TlsError                   the server's certificate could not be verified (`reason`), or no TLS
    │                                  handshake: never retried, counted by the breaker
    └── CircuitOpen                    the circuit breaker refused the call without trying

`retryable` says whether the retry policy may try again; `counts_as_failure` whether the circuit
breaker counts it (only signs that the service is unwell do). Messages never contain the API key.
"""

from __future__ import annotations

from typing import Any, ClassVar


class HostedAiError(Exception):
    retryable: ClassVar[bool] = False
    counts_as_failure: ClassVar[bool] = False
    kind: ClassVar[str] = "error"
    """The `type` label of `hosted_ai_errors_total`."""


class ApiError(HostedAiError):
    code: ClassVar[str] = "error"

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        request_id: str | None = None,
        body: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"HostedAI {status} {code}: {detail} (request {request_id or 'unknown'})")
        self.status = status
        self.code = code  # type: ignore[misc]
        self.detail = detail
        self.request_id = request_id
        self.body = body or {}
        self.retry_after = retry_after


class InvalidRequest(ApiError):
    kind = "invalid_request"


class ValidationFailed(ApiError):
    kind = "validation"

    @property
    def errors(self) -> list[dict[str, str]]:
        return list(self.body.get("errors", []))


class Unauthorized(ApiError):
    kind = "unauthorized"


class QuotaExceeded(ApiError):
    kind = "quota"


class PoolNotPermitted(ApiError):
    kind = "pool_not_permitted"


class NotFound(ApiError):
    kind = "not_found"


class AllocationNotActive(ApiError):
    kind = "not_active"

    @property
    def state(self) -> str | None:
        value = self.body.get("state")
        return str(value) if value is not None else None


class IdempotencyConflict(ApiError):
    kind = "idempotency_conflict"


class PayloadTooLarge(ApiError):
    kind = "payload_too_large"


class RateLimited(ApiError):
    retryable = True
    kind = "rate_limited"


class ServerError(ApiError):
    retryable = True
    counts_as_failure = True
    kind = "server_error"


class NotImplementedByServer(ServerError):
    # 501 says the server will never do it: retrying cannot help, but the service is answering.
    retryable = False
    counts_as_failure = False
    kind = "not_implemented"


class BadGateway(ServerError):
    kind = "bad_gateway"


class Unavailable(ServerError):
    kind = "unavailable"


class CapacityExhausted(Unavailable):
    # No capacity is an answer from a healthy service: retry later, but do not trip the breaker.
    counts_as_failure = False
    kind = "capacity_exhausted"


class GatewayTimeout(ServerError):
    kind = "gateway_timeout"


class TransportError(HostedAiError):
    retryable = True
    counts_as_failure = True
    kind = "connection"


class RequestTimeout(TransportError):
    kind = "timeout"


class TlsError(TransportError):
    # A certificate that fails verification fails it again on a retry; only a fixed configuration helps.
    retryable = False
    kind = "tls"

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
        """`expired`, `not_yet_valid`, `host_mismatch`, `untrusted` (no CA in the bundle issued it),
        `invalid` (another verification failure) or `handshake` (no TLS conversation at all)."""


class CircuitOpen(HostedAiError):
    kind = "circuit_open"

    def __init__(self, base_url: str, retry_in_s: float) -> None:
        super().__init__(f"circuit open for {base_url}; next probe in {retry_in_s:.1f} s")
        self.base_url = base_url
        self.retry_in_s = retry_in_s


_BY_CODE: dict[str, type[ApiError]] = {
    "invalid_request": InvalidRequest,
    "unsupported_media_type": InvalidRequest,
    "validation_failed": ValidationFailed,
    "unauthorized": Unauthorized,
    "quota_exceeded": QuotaExceeded,
    "pool_not_permitted": PoolNotPermitted,
    "not_found": NotFound,
    "allocation_not_active": AllocationNotActive,
    "idempotency_conflict": IdempotencyConflict,
    "payload_too_large": PayloadTooLarge,
    "rate_limited": RateLimited,
    "internal_error": ServerError,
    "bad_gateway": BadGateway,
    "capacity_exhausted": CapacityExhausted,
    "unavailable": Unavailable,
    "gateway_timeout": GatewayTimeout,
}

_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: QuotaExceeded,
    404: NotFound,
    413: PayloadTooLarge,
    415: InvalidRequest,
    422: ValidationFailed,
    429: RateLimited,
    501: NotImplementedByServer,
    502: BadGateway,
    503: Unavailable,
    504: GatewayTimeout,
}


def error_for(status: int, body: dict[str, Any] | None, request_id: str | None, retry_after: float | None) -> ApiError:
    """The one place a wire error becomes a typed exception: by `code` when the body has a known one,
    else by status (a proxy's bare 502 has no problem body)."""
    body = body or {}
    code = str(body.get("code") or f"http_{status}")
    cls = _BY_CODE.get(code)
    if cls is None or (status >= 500 and not issubclass(cls, ServerError)):
        cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    detail = str(body.get("detail") or body.get("title") or "no detail")
    if retry_after is None and isinstance(body.get("retry_after"), int | float):
        retry_after = float(body["retry_after"])
    return cls(status, code, detail, request_id, body, retry_after)
