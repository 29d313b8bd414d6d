"""`Orchestrator`: one text in, one answer out, through HostedAI (the integration guide's request flow).

classify (local) → requirements of the class → allocate on a pool → inference → release → account.

- Pool choice: the connector config's pool first, then, when a pool answers `capacity_exhausted`, the
  next pool serving the model, cheapest first (`PoolCatalogue`) — only pools HostedAI lists for the
  key's customer tier; a `pool_not_permitted` (a tier changed since the catalogue was read) moves on too.
- The allocation is always released (the connector's `allocation()` context manager), whatever happens
  to the inference, and carries a lease (`ttl_seconds`) so HostedAI reclaims it even if the release
  itself cannot be sent.
- Circuit open (before the request, or at any step of it): a marked fallback answer, not an error.
  Every other `HostedAiError` propagates, typed, for the caller to map.
- Batching (`BatchPolicy`, off by default): requests of a batched class arriving together share one
  allocation, each with its own inference on it, each charged its exact share (batching.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from harness.connector import (
    Allocation,
    CapacityExhausted,
    CircuitOpen,
    CircuitState,
    HostedAiConnector,
    InferenceRequest,
    InferenceResponse,
    PoolNotPermitted,
    RequestTimeout,
)
from harness.orchestrator.accounting import Cost, CostLedger, CostTotals, ExactCost, charge, exact_charge
from harness.orchestrator.batching import Batch, Batcher, BatchPolicy, Grant, Schedule, SharedHold
from harness.orchestrator.catalogue import PoolCatalogue, PoolChoice
from harness.orchestrator.classifier import Classification, Classifier, HeuristicClassifier
from harness.orchestrator.fallback import circuit_open_result
from harness.orchestrator.requirements import ModelClass, ModelClasses
from harness.orchestrator.result import BatchInfo, ProcessResult, Timings, Usage

log = logging.getLogger("harness.orchestrator")

DEFAULT_TENANT = "default"
# Labels on every allocation, so HostedAI's own usage report can be split by tenant and class.
TENANT_LABEL = "harpoon_tenant"
CLASS_LABEL = "harpoon_class"
BATCH_LABEL = "harpoon_batch"
"""On a shared allocation: how many requests share it."""
MIXED_TENANTS = "*"
"""The tenant label of an allocation shared by several tenants' requests (Harpoon's ledger splits it)."""


_TOKEN = re.compile(r"\w+|[^\w\s]")


def prompt_tokens(text: str) -> int:
    """HostedAI's prompt-token count as its mock makes it: words and punctuation marks, plus the start
    token. For a live HostedAI, whose tokenizer the kit does not know, an estimate."""
    return 1 + sum(1 for _ in _TOKEN.finditer(text))


class TextTooLong(Exception):
    """The text cannot fit the context of the model its class runs on; nothing was allocated."""


@dataclass(slots=True)
class _Spent:
    """What one request has held so far (at most one allocation: fail-over happens before allocating)."""

    allocation: Allocation | None = None
    cost: Cost | None = None


class Orchestrator:
    def __init__(
        self,
        connector: HostedAiConnector,
        classes: ModelClasses,
        classifier: Classifier | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        ledger: CostLedger | None = None,
        catalogue: PoolCatalogue | None = None,
        default_tenant: str = DEFAULT_TENANT,
        lease_ttl_s: int | None = 300,
        request_budget_s: float | None = None,
        batching: BatchPolicy | None = None,
        batch_schedule: Schedule | None = None,
    ) -> None:
        """`clock` measures how long allocations are held (injectable so tests pin the cost).
        `lease_ttl_s`: HostedAI expires an allocation idle this long, the backstop for a release that
        could not be sent (None: no lease).
        `request_budget_s`: the most one `process()` may take, fail-overs included (default: the
        connector's allocation + inference timeouts + one call timeout for the release); past it the
        request ends with RequestTimeout and its allocation is released.
        `batching`: which requests share allocations (None or not `enabled`: none); `batch_schedule`
        runs a batch's wait timer (default: the event loop's; tests fire it by hand)."""
        if lease_ttl_s is not None and lease_ttl_s < 1:
            raise ValueError("lease_ttl_s must be at least 1 second, or None")
        self._connector = connector
        self._classes = classes
        self._classifier: Classifier = classifier if classifier is not None else HeuristicClassifier()
        self._clock = clock
        self.ledger = ledger if ledger is not None else CostLedger()
        self._catalogue = catalogue if catalogue is not None else PoolCatalogue(connector, clock=clock)
        self._default_tenant = default_tenant
        self._lease_ttl_s = lease_ttl_s
        hosted = connector.config
        self._budget_s = request_budget_s or (
            hosted.allocation_timeout_secs + hosted.inference_timeout_secs + hosted.timeout_secs
        )
        self._batcher = (
            Batcher(batching, self._batch_closed, schedule=batch_schedule)
            if batching is not None and batching.enabled
            else None
        )
        self._holding: set[asyncio.Task[None]] = set()
        """The tasks that hold batches' allocations."""

    def costs(self, tenant: str | None = None) -> CostTotals:
        """A tenant's totals (the default tenant's without one)."""
        return self.ledger.totals(tenant or self._default_tenant)

    async def process(self, text: str, tenant: str | None = None) -> ProcessResult:
        """Serve `text` for `tenant`. Raises `TextTooLong` before allocating anything when the text cannot
        fit the class's model, and the connector's typed `HostedAiError`s, except `CircuitOpen`, which
        becomes a fallback result."""
        tenant = tenant or self._default_tenant
        classification = self._classifier.classify(text)
        model_class = self._classes.for_label(classification.label)
        if self._connector.circuit_state is CircuitState.OPEN:
            log.info("circuit open: fallback answer for tenant=%s without calling HostedAI", tenant)
            retry_in_s = self._connector.breaker.retry_in_s
            return self._fallback(classification, model_class, tenant, retry_in_s=retry_in_s, cost=None)
        spent = _Spent()
        try:
            async with asyncio.timeout(self._budget_s):
                await self._check_fits(text, model_class)
                return await self._serve(text, tenant, classification, model_class, spent)
        except TimeoutError:
            raise RequestTimeout(f"the request took longer than its {self._budget_s:g} s budget") from None
        except CircuitOpen as exc:
            log.info("circuit opened during the request: fallback answer for tenant=%s", tenant)
            return self._fallback(classification, model_class, tenant, retry_in_s=exc.retry_in_s, cost=spent.cost)

    async def _check_fits(self, text: str, model_class: ModelClass) -> None:
        """A text the model cannot take would be refused by the inference, after a GPU was allocated and
        billed: refuse it here instead, before anything is allocated."""
        context = await self._catalogue.context_tokens(model_class.model)
        if context is None:
            return  # HostedAI does not list the model: its allocate gives the real answer
        tokens = prompt_tokens(text)
        if tokens + model_class.max_tokens > context:
            raise TextTooLong(
                f"the text is about {tokens} tokens; {model_class.model} takes {context} tokens of prompt plus "
                f"completion, and this class reserves {model_class.max_tokens} for the completion"
            )

    async def _serve(
        self, text: str, tenant: str, classification: Classification, model_class: ModelClass, spent: _Spent
    ) -> ProcessResult:
        if self._batcher is not None and self._batcher.takes(classification.label):
            return await self._serve_batched(text, tenant, classification, model_class, spent)
        response: InferenceResponse | None = None
        held_since = 0.0
        choice: PoolChoice | None = None
        labels = {TENANT_LABEL: tenant, CLASS_LABEL: classification.label}
        try:
            async with self._allocation(model_class, labels) as (allocation, choice):
                spent.allocation = allocation
                held_since = self._clock()
                response = await self._infer(allocation, text, model_class)
        finally:
            # Billed whether or not the inference succeeded: the GPU was held until the release.
            if spent.allocation is not None and choice is not None:
                spent.cost = self._account(tenant, spent.allocation, choice, held_since, response)
        if spent.allocation is None or response is None or spent.cost is None:
            # Unreachable: the block either ran the inference or raised. Spelled out because a context
            # manager may swallow exceptions, so the type checker cannot know.
            raise RuntimeError("the allocation block ended without an inference")
        return _result(classification, tenant, spent.allocation, response, spent.cost)

    @contextlib.asynccontextmanager
    async def _allocation(
        self, model_class: ModelClass, labels: dict[str, str]
    ) -> AsyncIterator[tuple[Allocation, PoolChoice]]:
        """An allocation for the class (always released), failing over between pools: the next one at
        once while another is left, waiting out Retry-After only on the last one."""
        choices = await self._catalogue.candidates(model_class.model, self._connector.config.pool)
        refused: CapacityExhausted | PoolNotPermitted | None = None
        async with contextlib.AsyncExitStack() as stack:
            for index, choice in enumerate(choices):
                try:
                    allocation = await stack.enter_async_context(
                        self._connector.allocation(
                            model_class.requirements(),
                            pool=choice.pool_id,
                            ttl_seconds=self._lease_ttl_s,
                            labels=labels,
                            retry_capacity_exhausted=index == len(choices) - 1,
                        )
                    )
                except (CapacityExhausted, PoolNotPermitted) as exc:
                    refused = _more_telling(refused, exc)
                    if isinstance(exc, PoolNotPermitted):
                        self._catalogue.invalidate()  # the tier's pools changed: read them again next time
                    log.info(
                        "pool %s refused %s (%s); trying the next pool", choice.pool_id, model_class.model, exc.code
                    )
                    continue
                # An error of the inference comes out here, past the fail-over: another pool would not help.
                yield allocation, choice
                return
        assert refused is not None  # `candidates` is never empty, so the loop ran
        raise refused

    async def _infer(self, allocation: Allocation, text: str, model_class: ModelClass) -> InferenceResponse:
        return await self._connector.inference(
            allocation.allocation_id,
            InferenceRequest(
                prompt=text,
                temperature=model_class.temperature,
                max_tokens=model_class.max_tokens,
                model=model_class.model,
            ),
        )

    def _account(
        self,
        tenant: str,
        allocation: Allocation,
        choice: PoolChoice,
        held_since: float,
        response: InferenceResponse | None,
    ) -> Cost:
        cost = charge(
            tflops=allocation.tflops,
            vram_mb=allocation.vram_mb,
            held_seconds=self._clock() - held_since,
            price_per_tflops_hour=choice.price_per_tflops_hour,
        )
        self.ledger.record(tenant, cost, **_tokens(response))
        self.ledger.record_allocation(cost)
        return cost

    # ---- batching ----------------------------------------------------------------------------------

    async def _serve_batched(
        self, text: str, tenant: str, classification: Classification, model_class: ModelClass, spent: _Spent
    ) -> ProcessResult:
        """Wait for the batch of this class to close, then infer on its shared allocation."""
        assert self._batcher is not None
        joined = self._clock()
        batch = await self._batcher.join(classification.label, tenant)
        waited_s = max(0.0, self._clock() - joined)
        try:
            grant = await asyncio.shield(batch.grant)
        except asyncio.CancelledError:
            if batch.grant.done() and not batch.grant.cancelled() and batch.grant.exception() is None:
                # Granted as this request was cancelled: it is counted on the allocation, so it pays its share.
                await self._leave(batch, batch.grant.result(), tenant, None)
            else:
                batch.withdraw(tenant)
            raise
        spent.allocation = grant.allocation
        response: InferenceResponse | None = None
        try:
            response = await self._infer(grant.allocation, text, model_class)
        finally:
            spent.cost = await self._leave(batch, grant, tenant, response)
        info = BatchInfo(size=grant.members, wait_ms=waited_s * 1000)
        return _result(classification, tenant, grant.allocation, response, spent.cost, batch=info)

    async def _leave(self, batch: Batch, grant: Grant, tenant: str, response: InferenceResponse | None) -> Cost:
        """A request is done with the shared allocation: charge it its share (exactly, in the ledger)."""
        seconds = await batch.leave(grant.hold, self._clock)
        exact = exact_charge(
            tflops=grant.allocation.tflops,
            vram_mb=grant.allocation.vram_mb,
            held_seconds=seconds,
            price_per_tflops_hour=grant.choice.price_per_tflops_hour,
        )
        self.ledger.record(tenant, exact, shared_by=grant.members, **_tokens(response))
        if grant.hold.present == 0:  # the last one out: the allocation's whole hold is known
            self.ledger.record_allocation(self._whole(grant))
        return exact.rounded()

    @staticmethod
    def _whole(grant: Grant) -> ExactCost:
        return exact_charge(
            tflops=grant.allocation.tflops,
            vram_mb=grant.allocation.vram_mb,
            held_seconds=grant.hold.held,
            price_per_tflops_hour=grant.choice.price_per_tflops_hour,
        )

    def _batch_closed(self, batch: Batch) -> None:
        task = asyncio.ensure_future(self._hold_for(batch))
        self._holding.add(task)
        task.add_done_callback(self._holding.discard)

    async def _hold_for(self, batch: Batch) -> None:
        """Allocate for a closed batch, keep the allocation while its requests use it, release it."""
        model_class = self._classes.for_label(batch.label)
        tenants = set(batch.tenants)
        labels = {
            # One tenant's batch is attributed on HostedAI's side too; a mixed one only in Harpoon's ledger.
            TENANT_LABEL: tenants.pop() if len(tenants) == 1 else MIXED_TENANTS,
            CLASS_LABEL: batch.label,
            BATCH_LABEL: str(batch.size),
        }
        try:
            async with self._allocation(model_class, labels) as (allocation, choice):
                batch.start(Grant(allocation, choice, SharedHold(self._clock(), batch.size), batch.size))
                await batch.all_left.wait()
        except asyncio.CancelledError:
            batch.grant.cancel()
            raise
        except Exception as exc:
            batch.fail(exc)
        finally:
            batch.released.set()

    def _fallback(
        self,
        classification: Classification,
        model_class: ModelClass,
        tenant: str,
        *,
        retry_in_s: float | None,
        cost: Cost | None,
    ) -> ProcessResult:
        return circuit_open_result(
            classification=classification,
            model=model_class.model,
            tenant=tenant,
            retry_in_s=retry_in_s,
            recovery_timeout_s=self._connector.breaker.recovery_timeout_s,
            cost=cost,
        )


def _more_telling(
    earlier: CapacityExhausted | PoolNotPermitted | None, latest: CapacityExhausted | PoolNotPermitted
) -> CapacityExhausted | PoolNotPermitted:
    """The refusal to raise when every pool refused: no capacity (retry later) over another tier's pool."""
    return earlier if isinstance(earlier, CapacityExhausted) else latest


def _tokens(response: InferenceResponse | None) -> dict[str, int]:
    return {
        "prompt_tokens": response.usage.prompt_tokens if response else 0,
        "completion_tokens": response.usage.completion_tokens if response else 0,
    }


def _result(
    classification: Classification,
    tenant: str,
    allocation: Allocation,
    response: InferenceResponse,
    cost: Cost,
    *,
    batch: BatchInfo | None = None,
) -> ProcessResult:
    return ProcessResult(
        output=response.output,
        fallback=False,
        reason=None,
        classification=classification,
        model=response.model,
        pool_id=allocation.pool_id,
        allocation_id=allocation.allocation_id,
        usage=Usage(
            prompt_tokens=response.usage.prompt_tokens,
            completion_tokens=response.usage.completion_tokens,
            total_tokens=response.usage.total_tokens,
        ),
        cost=cost,
        timings=Timings(
            queue_ms=response.timings.queue_ms,
            ttft_ms=response.timings.ttft_ms,
            total_ms=response.timings.total_ms,
        ),
        tenant=tenant,
        batch=batch,
    )
