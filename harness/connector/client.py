"""`HostedAiConnector`: the production client of HostedAI's API.

One shared `aiohttp.ClientSession`; every call goes through the circuit breaker, the retry policy and
the metrics, and every wire error becomes a typed exception (`errors.py`). Allocate always sends an
`Idempotency-Key`, reused across its retries, and a label carrying the same key, so an allocation whose
answer was lost can be found and released even on a server without idempotency support.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from harness.connector.breaker import CircuitBreaker, CircuitState
from harness.connector.config import ConnectorConfigError, HostedAiConfig
from harness.connector.errors import (
    AllocationNotActive,
    CapacityExhausted,
    CircuitOpen,
    HostedAiError,
    NotFound,
    RequestTimeout,
    TlsError,
    TransportError,
    Unauthorized,
    error_for,
)
from harness.connector.metrics import ConnectorMetrics
from harness.connector.models import (
    Allocation,
    InferenceRequest,
    InferenceResponse,
    Model,
    Pool,
    Requirements,
    StreamDone,
    StreamToken,
    UsageReport,
)
from harness.connector.retry import RetryPolicy
from harness.connector.tls import certificate_problem, describe, handshake_problem

log = logging.getLogger("harness.connector")

# The label an allocate carries so the allocation can be found again if its answer is lost.
CLIENT_REQUEST_LABEL = "client_request"

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: Any
    headers: dict[str, str]
    attempts: int = 1


class HostedAiConnector:
    """Talks to one HostedAI base URL. Use as an async context manager, or call `close()`."""

    def __init__(
        self,
        config: HostedAiConfig,
        *,
        session: aiohttp.ClientSession | None = None,
        metrics: ConnectorMetrics | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`sleep`, `rng` and `clock` are injectable so tests can record backoff without waiting."""
        self.config = config
        self._api_key = config.resolve_api_key()
        self._own_session = session is None
        self._session = session
        self.metrics = metrics or ConnectorMetrics()
        self.breaker = breaker or CircuitBreaker(
            config.base_url,
            config.circuit_breaker.failure_threshold,
            config.circuit_breaker.recovery_timeout,
            clock=clock,
        )
        self._publish_circuit_state()
        self.retry = RetryPolicy.from_config(config)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clock = clock
        self._background: set[asyncio.Task[None]] = set()
        self._unreleased: set[str] = set()
        """Allocations whose release failed: retried in the background at once, and by `close()`."""
        if not config.verify_tls:
            # Said once, loudly: a client that trusts any certificate must never pass for a verified one.
            log.warning(
                "TLS verification is OFF for %s (verify_tls: false): any certificate is accepted, "
                "so anyone on the path can read and change the traffic, API key included",
                config.base_url,
            )

    # ---- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> HostedAiConnector:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.config.ssl_context()))
        return self._session

    async def close(self) -> None:
        """Finish pending clean-ups (releases after a cancellation, releases being retried), try once
        more the releases that were abandoned, then close the session."""
        if self._background:
            await asyncio.wait(self._background, timeout=self.config.timeout_secs)
        for allocation_id in sorted(self._unreleased):
            if await self._try_release(allocation_id) is None:
                self._settled(allocation_id)
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    @property
    def circuit_state(self) -> CircuitState:
        self._publish_circuit_state()
        return self.breaker.state

    # ---- allocations -------------------------------------------------------------------------------

    async def request_allocation(
        self,
        requirements: Requirements,
        *,
        pool: str | None = None,
        overcommit: bool | None = None,
        priority: int | None = None,
        ttl_seconds: int | None = None,
        wait_seconds: float | None = None,
        labels: dict[str, str] | None = None,
        retry_capacity_exhausted: bool = True,
    ) -> Allocation:
        """Reserve capacity. Retried safely: the same `Idempotency-Key` on every attempt.
        `retry_capacity_exhausted=False` raises CapacityExhausted at once, for a caller that fails
        over to another pool rather than wait for this one."""
        pool_id = pool or self.config.pool
        key = uuid.uuid4().hex
        body: dict[str, Any] = {
            "pool_id": pool_id,
            "requirements": requirements.model_dump(exclude_none=True),
            "overcommit": self.config.overcommit if overcommit is None else overcommit,
            "labels": {**(labels or {}), CLIENT_REQUEST_LABEL: key},
        }
        for name, value in (("priority", priority), ("ttl_seconds", ttl_seconds), ("wait_seconds", wait_seconds)):
            if value is not None:
                body[name] = value
        started = self._clock()
        try:
            answer = await self._call(
                "allocate",
                "POST",
                "/v1/allocate",
                json_body=body,
                headers={"Idempotency-Key": key},
                budget_s=self.config.allocation_timeout_secs,
                not_retried=() if retry_capacity_exhausted else (CapacityExhausted,),
            )
        except (asyncio.CancelledError, HostedAiError):
            # Any attempt may have allocated with its answer lost (a reset, then a 503 or an open
            # circuit on the retry): find whatever carries this call's label and release it.
            self._in_background(self._reclaim(key))
            raise
        allocation = Allocation.model_validate(answer.body)
        if answer.attempts > 1:
            # An earlier attempt may have allocated with its answer lost; a server that honours the
            # Idempotency-Key replayed it, one that ignores it made a second. Release any twin.
            await self._release_twins(key, keep=allocation.allocation_id)
        self.metrics.allocations.labels(allocation.pool_id, allocation.model).inc()
        self.metrics.allocation_seconds.labels(allocation.pool_id).observe(self._clock() - started)
        log.info("allocated allocation_id=%s pool=%s gpu=%s", allocation.allocation_id, pool_id, allocation.gpu_id)
        return allocation

    async def _release_twins(self, key: str, keep: str) -> None:
        with contextlib.suppress(HostedAiError):
            for twin in await self.list_allocations(
                state=["active"], labels={CLIENT_REQUEST_LABEL: key}, _cleanup=True
            ):
                if twin.allocation_id != keep:
                    log.warning("releasing allocation_id=%s made by a retried allocate", twin.allocation_id)
                    await self._release_quietly(twin.allocation_id)

    async def _reclaim(self, key: str) -> None:
        with contextlib.suppress(HostedAiError, asyncio.CancelledError):
            found = await self.list_allocations(state=["active"], labels={CLIENT_REQUEST_LABEL: key}, _cleanup=True)
            for allocation in found:
                log.warning("releasing allocation_id=%s whose allocate answer was lost", allocation.allocation_id)
                await self.release_allocation(allocation.allocation_id)

    async def release_allocation(self, allocation_id: str) -> None:
        """Release; an allocation that already ended (released, expired, preempted, failed) is done."""
        with contextlib.suppress(AllocationNotActive):
            await self._call(
                "release", "DELETE", f"/v1/allocate/{allocation_id}", use_breaker=False, expected=(AllocationNotActive,)
            )
        log.info("released allocation_id=%s", allocation_id)

    async def get_allocation(self, allocation_id: str) -> Allocation:
        answer = await self._call("status", "GET", f"/v1/allocate/{allocation_id}")
        return Allocation.model_validate(answer.body)

    async def list_allocations(
        self, *, state: list[str] | None = None, labels: dict[str, str] | None = None, _cleanup: bool = False
    ) -> list[Allocation]:
        """Every allocation of the tenant matching the filters, following pagination."""
        params: list[tuple[str, str]] = [("state", s) for s in state or []]
        params += [("label", f"{k}={v}") for k, v in (labels or {}).items()]
        found: list[Allocation] = []
        cursor: str | None = None
        while True:
            page_params = [*params, ("limit", "500"), *([("cursor", cursor)] if cursor else [])]
            answer = await self._call("list", "GET", "/v1/allocate", params=page_params, use_breaker=not _cleanup)
            found += [Allocation.model_validate(a) for a in answer.body["allocations"]]
            cursor = answer.body.get("next_cursor")
            if not cursor:
                return found

    @contextlib.asynccontextmanager
    async def allocation(self, requirements: Requirements, **options: Any) -> AsyncIterator[Allocation]:
        """An allocation that is always released: on success, error, timeout and cancellation."""
        allocation = await self.request_allocation(requirements, **options)
        try:
            yield allocation
        finally:
            release = self._in_background(self._release_quietly(allocation.allocation_id))
            # Shielded: a cancelled caller still gets its allocation released (close() waits for it).
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(release)

    async def _release_quietly(self, allocation_id: str) -> None:
        """Release, never raising: a release that fails is retried in the background at once."""
        error = await self._try_release(allocation_id)
        if error is None:
            self._settled(allocation_id)
            return
        # A release must not be lost to one bad moment, nor wait for `close()`: an allocation left held
        # keeps billing and keeps capacity from everyone else.
        self._unreleased.add(allocation_id)
        self.metrics.releases_pending.set(len(self._unreleased))
        log.warning("could not release allocation_id=%s (retrying in the background): %s", allocation_id, error)
        self._in_background(self._retry_release(allocation_id, error))

    async def _try_release(self, allocation_id: str) -> HostedAiError | None:
        """One release call (itself retried by the policy); the error it ended with, if any."""
        try:
            await self.release_allocation(allocation_id)
        except NotFound:
            return None  # nothing left to release
        except HostedAiError as exc:
            return exc
        return None

    async def _retry_release(self, allocation_id: str, error: HostedAiError) -> None:
        """Up to `max_retries` more release calls, spaced like any retry (backoff, or Retry-After)."""
        for round_ in range(self.retry.max_retries):
            await self._sleep(self.retry.delay_s(error, round_, self._rng))
            if allocation_id not in self._unreleased:
                return  # settled meanwhile (by close(), or a caller's own release)
            failed = await self._try_release(allocation_id)
            if failed is None:
                self._settled(allocation_id)
                log.info("released allocation_id=%s after %d background retries", allocation_id, round_ + 1)
                return
            error = failed
        self.metrics.releases_abandoned.inc()
        log.error(
            "gave up releasing allocation_id=%s after %d background retries (close() tries once more): %s",
            allocation_id,
            self.retry.max_retries,
            error,
        )

    def _settled(self, allocation_id: str) -> None:
        self._unreleased.discard(allocation_id)
        self.metrics.releases_pending.set(len(self._unreleased))

    # ---- inference ---------------------------------------------------------------------------------

    async def inference(self, allocation_id: str, request: InferenceRequest) -> InferenceResponse:
        started = self._clock()
        answer = await self._call(
            "inference",
            "POST",
            "/v1/inference",
            json_body={"allocation_id": allocation_id, **request.model_dump(exclude_none=True)},
            budget_s=self.config.inference_timeout_secs,
        )
        response = InferenceResponse.model_validate(answer.body)
        self.metrics.inference_seconds.labels(response.model).observe(self._clock() - started)
        return response

    async def stream_inference(
        self, allocation_id: str, request: InferenceRequest
    ) -> AsyncIterator[StreamToken | StreamDone]:
        """Tokens as they come, then the final `StreamDone` (usage and timings). Establishing the stream is
        retried like any call; once tokens flow, a failure raises (a `truncated` stream is a
        TransportError, a server `error` event its typed error)."""
        started = self._clock()
        body = {"allocation_id": allocation_id, **request.model_dump(exclude_none=True), "stream": True}
        response = await self._call(
            "inference",
            "POST",
            "/v1/inference",
            json_body=body,
            budget_s=self.config.inference_timeout_secs,
            stream=True,
        )
        assert isinstance(response.body, aiohttp.ClientResponse)
        resp = response.body
        try:
            event = None
            async for raw in resp.content:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("event:"):
                    event = line[len("event:") :].strip()
                elif line.startswith("data:"):
                    data = json.loads(line[len("data:") :])
                    if event == "token":
                        yield StreamToken.model_validate(data)
                    elif event == "done":
                        done = StreamDone.model_validate(data)
                        self.metrics.inference_seconds.labels(done.model).observe(self._clock() - started)
                        yield done
                        return
                    elif event == "error":
                        raise error_for(int(data.get("status", 500)), data, data.get("request_id"), None)
        except (aiohttp.ClientError, ValueError) as exc:
            self.metrics.errors.labels("connection", "inference").inc()
            raise TransportError(f"the inference stream broke: {type(exc).__name__}") from None
        finally:
            resp.release()
        self.metrics.errors.labels("truncated", "inference").inc()
        raise TransportError("the inference stream ended without a done event")

    # ---- catalogue ---------------------------------------------------------------------------------

    async def list_pools(self) -> list[Pool]:
        answer = await self._call("pools", "GET", "/v1/pools")
        return [Pool.model_validate(p) for p in answer.body["pools"]]

    async def list_models(self) -> list[Model]:
        answer = await self._call("models", "GET", "/v1/models")
        return [Model.model_validate(m) for m in answer.body["models"]]

    async def usage(self, since: str | None = None, until: str | None = None) -> UsageReport:
        """The usage report of the window, with the records of every page."""
        params = [(k, v) for k, v in (("since", since), ("until", until)) if v is not None]
        body: dict[str, Any] | None = None
        cursor: str | None = None
        while True:
            page_params = [*params, *([("cursor", cursor)] if cursor else [])]
            answer = await self._call("usage", "GET", "/v1/usage", params=page_params)
            if body is None:
                body = answer.body
            else:
                body["records"] += answer.body["records"]
            cursor = body["next_cursor"] = answer.body.get("next_cursor")
            if not cursor:
                return UsageReport.model_validate(body)

    async def reachable(self) -> bool:
        """Whether HostedAI answers its health check (one attempt, no retry, outside the breaker)."""
        try:
            async with self.session.get(
                f"{self.config.base_url}/health", timeout=aiohttp.ClientTimeout(total=self.config.timeout_secs)
            ) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    # ---- the one place requests are made -----------------------------------------------------------

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}", "X-Request-Id": uuid.uuid4().hex, **(extra or {})}

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        budget_s: float | None = None,
        stream: bool = False,
        use_breaker: bool = True,
        not_retried: tuple[type[HostedAiError], ...] = (),
        expected: tuple[type[HostedAiError], ...] = (),
    ) -> _Answer:
        """One logical call: attempts through the breaker, retried by the policy within the time budget.

        `use_breaker=False` is for clean-up (releases): a release must be attempted even while the
        circuit is open, or an open circuit would leak every allocation held when it opened.
        `not_retried` lists errors the caller handles itself (e.g. fail-over on capacity_exhausted);
        `expected` errors the caller treats as success (not counted, not logged)."""
        budget = budget_s if budget_s is not None else self.config.timeout_secs * (self.retry.max_retries + 1)
        deadline = self._clock() + budget
        retries = 0
        key_refreshed = False
        while True:
            remaining = deadline - self._clock()
            try:
                if remaining <= 0:
                    raise RequestTimeout(f"{operation} ran out of its {budget:g} s budget")
                if use_breaker:
                    self.breaker.before_call()
                answer = await self._attempt(method, path, json_body, params, headers, remaining, stream)
            except CircuitOpen:
                self.metrics.errors.labels("circuit_open", operation).inc()
                raise
            except asyncio.CancelledError:
                if use_breaker:
                    self.breaker.release_probe()
                raise
            except HostedAiError as error:
                if use_breaker:
                    self._tell_breaker(error)
                if isinstance(error, Unauthorized) and not key_refreshed and self._refresh_key():
                    key_refreshed = True  # a rotated key: try once more with the new one, not counted
                    continue
                if isinstance(error, expected):
                    raise  # an answer the caller takes as success: neither an error nor a log line
                if isinstance(error, not_retried) or not self.retry.should_retry(error, retries):
                    self.metrics.errors.labels(error.kind, operation).inc()
                    # A 4xx is the caller's business (a 404 may be exactly what it wanted to know);
                    # only signs that the service is unwell are worth a warning.
                    level = logging.WARNING if error.counts_as_failure else logging.INFO
                    log.log(level, "%s failed: %s", operation, error)
                    raise
                delay = self.retry.delay_s(error, retries, self._rng)
                if self._clock() + delay >= deadline:
                    self.metrics.errors.labels(error.kind, operation).inc()
                    raise
                retries += 1
                self.metrics.retries.labels(operation, error.kind).inc()
                log.info(
                    "retrying %s in %.3f s after %s (retry %d of %d)",
                    operation,
                    delay,
                    error.kind,
                    retries,
                    self.retry.max_retries,
                )
                await self._sleep(delay)
                continue
            if use_breaker:
                self.breaker.record_success()
                self._publish_circuit_state()
            return dataclasses.replace(answer, attempts=retries + 1) if retries else answer

    def _tell_breaker(self, error: HostedAiError) -> None:
        if error.counts_as_failure:
            self.breaker.record_failure()
        else:
            self.breaker.record_success()
        self._publish_circuit_state()

    def _publish_circuit_state(self) -> None:
        self.metrics.circuit_state.labels(self.config.base_url).set(self.breaker.state.value)

    def _refresh_key(self) -> bool:
        """Re-read the API key from its source; whether it changed."""
        try:
            key = self.config.resolve_api_key()
        except ConnectorConfigError:
            return False  # a broken source keeps the old key; the 401 stands
        changed = key != self._api_key
        self._api_key = key
        if changed:
            log.info("API key re-read after a 401; retrying once with the new key")
        return changed

    async def _attempt(
        self,
        method: str,
        path: str,
        json_body: Any,
        params: list[tuple[str, str]] | None,
        headers: dict[str, str] | None,
        timeout_s: float,
        stream: bool,
    ) -> _Answer:
        attempt_timeout = timeout_s if stream or json_body is not None else min(timeout_s, self.config.timeout_secs)
        url = f"{self.config.base_url}{path}"
        try:
            resp = await self.session.request(
                method,
                url,
                json=json_body,
                params=params,
                headers=self._headers(headers),
                timeout=aiohttp.ClientTimeout(total=None if stream else attempt_timeout, sock_connect=attempt_timeout),
            )
        except TimeoutError:
            raise RequestTimeout(f"{method} {path} timed out after {attempt_timeout:g} s") from None
        except aiohttp.ClientConnectorCertificateError as exc:
            problem = certificate_problem(exc.certificate_error)
            raise TlsError(describe(self.config.base_url, problem, self.config.ca_bundle), problem.reason) from None
        except aiohttp.ClientSSLError as exc:
            raise TlsError(handshake_problem(self.config.base_url, exc), "handshake") from None
        except aiohttp.ClientError as exc:
            raise TransportError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        request_id = resp.headers.get("X-Request-Id")
        if stream and resp.status == 200:
            return _Answer(resp.status, resp, dict(resp.headers))
        try:
            raw = await asyncio.wait_for(resp.read(), attempt_timeout)
        except TimeoutError:
            raise RequestTimeout(f"{method} {path}: the answer did not arrive in {attempt_timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise TransportError(f"{method} {path}: the answer broke off: {type(exc).__name__}") from None
        finally:
            resp.release()
        body = _parse(raw)
        if resp.status >= 400:
            retry_after = _retry_after(resp.headers.get("Retry-After"))
            raise error_for(resp.status, body if isinstance(body, dict) else None, request_id, retry_after)
        if resp.status != 204 and not isinstance(body, dict):
            raise TransportError(f"{method} {path}: {resp.status} with a body that is not a JSON object")
        return _Answer(resp.status, body, dict(resp.headers))

    def _in_background(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
