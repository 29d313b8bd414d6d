"""The stateful suite's Hypothesis state machine: rules that drive the real connector, a reference model
beside them, and invariants that compare the two after every step.

**Data comes from the model, never from the server.** Hypothesis replays a failing example by replaying
its choices; if what it may choose depended on what the server answered (a bundle left empty because
an allocate was refused, a precondition over a shared budget), a replay against a live service would
see other choices and Hypothesis would give up with `FlakyStrategyDefinition`. So every allocate rule
creates a *slot* in the model, whatever the server says; a slot the server refused (a full live pool, a
spent budget) simply has no allocation, and the rules that act on it do nothing. Preconditions look at
slots only. Whatever the server does wrong becomes a `Violation` of a named check, with the exchange
that showed it; whatever keeps a check from being decided (a rate limit that outlasts the suite's
patience) is `Untested`, counted as skipped with its reason.

The run (target, clients, budget, tallies) is a `RunContext` made by `runner.py`, shared by every
generated example; the machine itself is one example.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import aiohttp
import pydantic
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, precondition, rule

from harness.connector import (
    AllocationNotActive,
    CapacityExhausted,
    HostedAiConnector,
    HostedAiError,
    InferenceRequest,
    NotFound,
    PoolNotPermitted,
    QuotaExceeded,
    RateLimited,
    StreamDone,
    StreamToken,
)
from harness.suites.base import RATE_LIMIT_TRIES, RunOptions, retry_after_wait_s
from harness.suites.shapes import Shape, TierView
from harness.target import Target

T = TypeVar("T")

ALLOCATE = "stateful: allocate"
INFERENCE = "stateful: inference"
STREAM = "stateful: streaming inference"
STATUS = "stateful: status matches the model"
RELEASE = "stateful: release"
RELEASE_IDEMPOTENT = "stateful: release is idempotent"
USE_AFTER_RELEASE = "stateful: use after release"
ISOLATION = "stateful: tenant isolation"
IDEMPOTENT_ALLOCATE = "stateful: idempotent allocate"
TIERS = "stateful: pool segregation by tier"
ACTIVE_SET = "stateful: active allocations match the model"
CAPACITY = "stateful: capacity accounting"
ALL_RELEASED = "stateful: every allocation released"
MACHINE = "stateful: state machine"
"""Not a check of the target: the run itself broke (a bug in the suite)."""

CHECKS = (
    ALLOCATE,
    INFERENCE,
    STREAM,
    STATUS,
    RELEASE,
    RELEASE_IDEMPOTENT,
    USE_AFTER_RELEASE,
    ISOLATION,
    IDEMPOTENT_ALLOCATE,
    TIERS,
    ACTIVE_SET,
    CAPACITY,
)

RUN_LABEL = "harness_run"
CASE_LABEL = "harness_case"
PROMPTS = ("Hello", "Summarise the plot of Hamlet in one line.", "List three prime numbers.")
MAX_HELD = 12
"""Slots held at once in one example: far below any pool's capacity on a mock, so no allocate waits."""
CROSSINGS = 2
"""Tier crossings one example may try: enough to see both answers, few enough to leave the steps to
the other rules (a crossing is always possible, so it would otherwise be drawn far more often)."""


class Violation(Exception):
    """The target broke one check; raised from the step that saw it, so Hypothesis can shrink to it."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check
        self.message = message


class Untested(Exception):
    """A check could not be decided in this step (the target kept answering 429); not a failure."""

    def __init__(self, check: str, reason: str) -> None:
        super().__init__(f"{check}: {reason}")
        self.check = check
        self.reason = reason


class Stopped(BaseException):
    """The run was cancelled. A BaseException, so Hypothesis neither shrinks nor reports it; the
    machine's teardown and the sweep after the run still release what it holds."""


@dataclass(slots=True)
class Exchange:
    """The last request the run made and what came back, for the message of a violation."""

    method: str = ""
    url: str = ""
    status: int | None = None
    request_id: str | None = None

    def describe(self) -> str:
        if not self.method:
            return ""
        answer = f"{self.status}" if self.status is not None else "no answer"
        return f" [last exchange: {self.method} {self.url} → {answer}, X-Request-Id {self.request_id or 'none'}]"


@dataclass(slots=True)
class RunContext:
    """What every generated example of one run shares: the loop, the clients, the budget, the tallies."""

    target: Target
    options: RunOptions
    loop: asyncio.AbstractEventLoop
    session: aiohttp.ClientSession
    connector: HostedAiConnector
    foreign: HostedAiConnector | None
    shapes: dict[str, Shape]
    reset: Callable[[], Awaitable[None]] | None
    """Back to a clean mock before each example; None against a target the run does not own."""
    tiers: TierView | None = None
    """Which pools each tenant may use, read before the run; None without a second tenant's key."""
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    taken: int = 0
    """Allocations made in this run, over every example (the live budget counts them)."""
    exercised: Counter[str] = field(default_factory=Counter)
    untested: dict[str, str] = field(default_factory=dict)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    violated: dict[str, str] = field(default_factory=dict)
    """The first violation of each check seen while generating, in case the final replay lacks it."""
    last: Exchange = field(default_factory=Exchange)
    stop: threading.Event = field(default_factory=threading.Event)
    """Set when the caller cancels the run: the next step stops it, which still cleans up."""
    rate_limited: int = 0
    """429s answered to this run (each honoured by waiting its Retry-After)."""

    def wait(self, work: Awaitable[T]) -> T:
        return self.loop.run_until_complete(work)

    @property
    def owns_target(self) -> bool:
        """A mock this run started for itself: it may be reset, and its pools hold only this run's work."""
        return self.reset is not None

    @property
    def live(self) -> bool:
        return not self.owns_target

    def budget_left(self) -> int:
        return self.options.max_allocations - self.taken if self.live else 1 << 30

    @property
    def share(self) -> int:
        """Slots one example may create: a live budget spread over the examples (so that later ones have
        something to infer on too), never below the two an idempotent-allocate replay needs. It depends
        on the options alone, so preconditions do not depend on earlier examples."""
        if not self.live:
            return MAX_HELD * 4
        return max(2, -(-self.options.max_allocations // max(1, self.options.examples)))

    def patiently(self, check: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run one call, honouring 429s: wait the server's Retry-After and try again, a few times."""
        for _ in range(RATE_LIMIT_TRIES):
            try:
                return self.wait(call())
            except RateLimited as exc:
                self.rate_limited += 1
                if self.stop.wait(retry_after_wait_s(exc.retry_after)):
                    raise Stopped from None
        raise Untested(check, f"the target answered 429 rate_limited {RATE_LIMIT_TRIES} times in a row")


SlotState = Literal["active", "released", "refused", "unknown"]


@dataclass(slots=True)
class Slot:
    """One allocate of the model. `allocation_id` is None when the server refused it (or the live
    budget was spent); `state` is what the server must report, `unknown` when a rate limit kept us
    from knowing."""

    shape: Shape
    allocation_id: str | None
    state: SlotState
    refused_because: str = ""


class HostedAiMachine(RuleBasedStateMachine):
    """One generated example: a fresh reference model against the shared target."""

    held = Bundle[int]("held")
    released = Bundle[int]("released")

    def __init__(self, run: RunContext) -> None:
        super().__init__()
        self.run = run
        self.case_id = uuid.uuid4().hex
        self.slots: list[Slot] = []
        self.holding = 0
        """Slots allocated and not yet released by a rule (whatever the server did): preconditions use this."""
        self.extra: dict[str, SlotState] = {}
        """Allocations outside the slots: twins made by a server that ignored an Idempotency-Key."""
        self.crossed = 0
        """Tier crossings tried in this example."""
        if run.reset is not None:
            # Every example starts from the mock's configured state with the same seed: pool totals are
            # then exactly the model's sums, and a shrunk example replays alike.
            run.wait(run.reset())

    # ---- plumbing ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _check(self, name: str) -> Iterator[None]:
        """Time a check; an unexpected error of the target (or of its transport) violates it."""
        if self.run.stop.is_set():
            raise Stopped
        started = time.perf_counter()
        try:
            yield
        except Violation as violation:
            self.run.violated.setdefault(violation.check, violation.message)
            raise
        except Untested as untested:
            self.run.untested.setdefault(untested.check, untested.reason)
            return
        except (HostedAiError, aiohttp.ClientError, TimeoutError, pydantic.ValidationError) as exc:
            what = "an answer that does not match the contract" if isinstance(exc, pydantic.ValidationError) else ""
            message = f"unexpected {type(exc).__name__}: {what or exc}{self.run.last.describe()}"
            if isinstance(exc, pydantic.ValidationError):
                message += "\n" + "\n".join(f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
            self.run.violated.setdefault(name, message)
            raise Violation(name, message) from exc
        finally:
            self.run.seconds[name] += time.perf_counter() - started
        self.run.exercised[name] += 1

    def _labels(self) -> dict[str, str]:
        return {RUN_LABEL: self.run.run_id, CASE_LABEL: self.case_id}

    def _may_allocate(self, count: int) -> bool:
        return self.holding + count <= MAX_HELD and len(self.slots) + count <= self.run.share

    def _states(self) -> dict[str, SlotState]:
        """Every allocation the model knows of, and the state the target must report for it."""
        known = {s.allocation_id: s.state for s in self.slots if s.allocation_id is not None}
        return {**self.extra, **known}

    def _active(self) -> dict[str, Slot]:
        """The slots the target must report active (with their shapes, for capacity accounting)."""
        return {s.allocation_id: s for s in self.slots if s.allocation_id is not None and s.state == "active"}

    def _unknown_ids(self) -> set[str]:
        return {a for a, state in self._states().items() if state == "unknown"}

    def _new_slot(self, shape: Shape, allocation_id: str | None, state: SlotState, why: str = "") -> int:
        self.slots.append(Slot(shape, allocation_id, state, why))
        self.holding += 1
        return len(self.slots) - 1

    async def _raw(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Mapping[str, str], str]:
        """A request outside the connector, for what the connector deliberately hides (replay headers,
        the status of a repeated release): status, headers and text."""
        config = self.run.connector.config
        async with self.run.session.request(
            method,
            f"{config.base_url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.run.target.api_key}", **(headers or {})},
            timeout=aiohttp.ClientTimeout(total=config.timeout_secs),
        ) as resp:
            # A copy that stays case-insensitive: HTTP/2 servers send header names in lower case.
            return resp.status, resp.headers.copy(), await resp.text()

    def _raw_patiently(
        self, check: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Mapping[str, str], str]:
        for _ in range(RATE_LIMIT_TRIES):
            status, answer_headers, text = self.run.wait(self._raw(method, path, body, headers))
            if status != 429:
                return status, answer_headers, text
            self.run.rate_limited += 1
            try:
                wait_s = retry_after_wait_s(float(answer_headers.get("Retry-After", "1")))
            except ValueError:
                wait_s = retry_after_wait_s(None)
            if self.run.stop.wait(wait_s):
                raise Stopped
        raise Untested(check, f"the target answered 429 rate_limited {RATE_LIMIT_TRIES} times in a row")

    # ---- rules -------------------------------------------------------------------------------------

    @precondition(lambda self: self._may_allocate(1))
    @rule(target=held, shape=st.sampled_from(["small", "large"]))
    def allocate(self, shape: str) -> int:
        chosen = self.run.shapes[shape]
        if self.run.budget_left() < 1:
            return self._new_slot(chosen, None, "refused", "the live budget (--max-allocations) was spent")
        slot = self._new_slot(chosen, None, "refused", "never sent")
        with self._check(ALLOCATE):
            try:
                allocation = self.run.patiently(
                    ALLOCATE,
                    lambda: self.run.connector.request_allocation(
                        chosen.requirements,
                        pool=chosen.pool_id,
                        labels=self._labels(),
                        retry_capacity_exhausted=False,
                    ),
                )
            except (CapacityExhausted, QuotaExceeded) as exc:
                if self.run.live:
                    # A live pool may be full or the account capped: not a fault, and nothing is held.
                    self.slots[slot].refused_because = f"{exc.code} ({exc.detail})"
                    return slot
                if isinstance(exc, CapacityExhausted):
                    raise Violation(
                        CAPACITY,
                        f"allocate of {chosen.requirements.model} in {chosen.pool_id} answered capacity_exhausted "
                        f"while this run holds {len(self._active())} small allocations on a mock used only by "
                        f"it: capacity that was released has not come back ({exc})",
                    ) from exc
                raise
            self.run.taken += 1
            self.slots[slot] = Slot(chosen, allocation.allocation_id, "active")
            req = chosen.requirements
            wrong = [
                f"{name} is {got!r}, expected {want!r}"
                for name, got, want in (
                    ("state", allocation.state, "active"),
                    ("pool_id", allocation.pool_id, chosen.pool_id),
                    ("model", allocation.model, req.model),
                    ("vram_mb", allocation.vram_mb, req.vram_mb),
                )
                if got != want
            ]
            if abs(allocation.tflops - req.tflops) > 1e-6:
                wrong.append(f"tflops is {allocation.tflops!r}, expected {req.tflops!r}")
            missing = {k: v for k, v in self._labels().items() if allocation.labels.get(k) != v}
            if missing:
                wrong.append(f"labels lack {missing}")
            if wrong:
                raise Violation(ALLOCATE, f"allocation {allocation.allocation_id}: " + "; ".join(wrong))
        return slot

    @rule(allocation=held, prompt=st.sampled_from(PROMPTS), max_tokens=st.integers(1, 16))
    def infer(self, allocation: int, prompt: str, max_tokens: int) -> None:
        allocation_id = self._usable(allocation)
        if allocation_id is None:
            return
        with self._check(INFERENCE):
            request = InferenceRequest(prompt=prompt, max_tokens=max_tokens)
            response = self.run.patiently(INFERENCE, lambda: self.run.connector.inference(allocation_id, request))
            usage = response.usage
            if response.allocation_id != allocation_id:
                raise Violation(INFERENCE, f"inference on {allocation_id} answered for {response.allocation_id}")
            if usage.total_tokens != usage.prompt_tokens + usage.completion_tokens:
                raise Violation(
                    INFERENCE,
                    f"usage.total_tokens {usage.total_tokens} != prompt_tokens {usage.prompt_tokens} + "
                    f"completion_tokens {usage.completion_tokens}",
                )
            if usage.completion_tokens > max_tokens:
                raise Violation(
                    INFERENCE, f"{usage.completion_tokens} completion tokens exceed max_tokens {max_tokens}"
                )

    @rule(allocation=held, prompt=st.sampled_from(PROMPTS), max_tokens=st.integers(1, 16))
    def stream(self, allocation: int, prompt: str, max_tokens: int) -> None:
        allocation_id = self._usable(allocation)
        if allocation_id is None:
            return
        with self._check(STREAM):
            request = InferenceRequest(prompt=prompt, max_tokens=max_tokens)
            events = self.run.patiently(
                STREAM, lambda: _collect(self.run.connector.stream_inference(allocation_id, request))
            )
            tokens = [e for e in events if isinstance(e, StreamToken)]
            done = events[-1] if events else None
            if not isinstance(done, StreamDone) or len(tokens) != len(events) - 1:
                raise Violation(
                    STREAM, f"expected tokens then one done event, got {[type(e).__name__ for e in events]}"
                )
            if [t.index for t in tokens] != list(range(len(tokens))):
                raise Violation(STREAM, f"token indexes {[t.index for t in tokens]} are not 0..{len(tokens) - 1}")
            usage = done.usage
            if usage.completion_tokens != len(tokens):
                raise Violation(
                    STREAM, f"done says {usage.completion_tokens} completion tokens but {len(tokens)} were streamed"
                )
            if usage.total_tokens != usage.prompt_tokens + usage.completion_tokens:
                raise Violation(STREAM, f"done's usage does not add up: {usage.model_dump()}")
            if usage.completion_tokens > max_tokens:
                raise Violation(STREAM, f"{usage.completion_tokens} tokens streamed, above max_tokens {max_tokens}")
            if done.allocation_id != allocation_id:
                raise Violation(STREAM, f"stream on {allocation_id} finished for {done.allocation_id}")

    @rule(target=released, allocation=consumes(held))
    def release(self, allocation: int) -> int:
        self.holding -= 1
        allocation_id = self._usable(allocation)
        if allocation_id is None:
            return allocation
        with self._check(RELEASE):
            self.slots[allocation].state = "unknown"
            self.run.patiently(RELEASE, lambda: self.run.connector.release_allocation(allocation_id))
            self.slots[allocation].state = "released"
        return allocation

    @rule(target=released, allocation=consumes(held))
    def release_twice(self, allocation: int) -> int:
        self.holding -= 1
        allocation_id = self._usable(allocation)
        if allocation_id is None:
            return allocation
        with self._check(RELEASE_IDEMPOTENT):
            self.slots[allocation].state = "unknown"
            self.run.patiently(RELEASE_IDEMPOTENT, lambda: self.run.connector.release_allocation(allocation_id))
            self.slots[allocation].state = "released"
            # On the wire: the connector treats a 409 allocation_not_active as done, the contract says 204.
            path = f"/v1/allocate/{allocation_id}"
            status, _, body = self._raw_patiently(RELEASE_IDEMPOTENT, "DELETE", path)
            if status != 204:
                raise Violation(
                    RELEASE_IDEMPOTENT,
                    f"the second DELETE {path} answered {status} (the contract: 204 for an "
                    f"allocation that already ended): {body[:300]}",
                )
            state = self.run.patiently(
                RELEASE_IDEMPOTENT, lambda: self.run.connector.get_allocation(allocation_id)
            ).state
            if state != "released":
                raise Violation(RELEASE_IDEMPOTENT, f"after two releases {allocation_id} is {state!r}, not 'released'")
        return allocation

    @rule(allocation=released, prompt=st.sampled_from(PROMPTS))
    def use_after_release(self, allocation: int, prompt: str) -> None:
        slot = self.slots[allocation]
        if slot.allocation_id is None or slot.state != "released":
            return
        allocation_id = slot.allocation_id
        with self._check(USE_AFTER_RELEASE):
            request = InferenceRequest(prompt=prompt, max_tokens=4)
            try:
                response = self.run.patiently(
                    USE_AFTER_RELEASE, lambda: self.run.connector.inference(allocation_id, request)
                )
            except AllocationNotActive as exc:
                if exc.state != "released":
                    raise Violation(
                        USE_AFTER_RELEASE, f"409 allocation_not_active says state {exc.state!r}, not 'released'"
                    ) from exc
                return
            raise Violation(
                USE_AFTER_RELEASE,
                f"inference on released allocation {allocation_id} succeeded ({response.usage.completion_tokens} "
                "tokens)",
            )

    @rule(allocation=held)
    def get_held(self, allocation: int) -> None:
        self._get(allocation)

    @rule(allocation=released)
    def get_released(self, allocation: int) -> None:
        self._get(allocation)

    def _get(self, allocation: int) -> None:
        slot = self.slots[allocation]
        if slot.allocation_id is None or slot.state == "unknown":
            return
        allocation_id, want = slot.allocation_id, slot.state
        with self._check(STATUS):
            got = self.run.patiently(STATUS, lambda: self.run.connector.get_allocation(allocation_id))
            if got.allocation_id != allocation_id or got.state != want:
                raise Violation(
                    STATUS,
                    f"GET /v1/allocate/{allocation_id} says {got.allocation_id} is {got.state!r}, expected {want!r}",
                )

    @precondition(lambda self: not self._may_allocate(1))
    @rule()
    def list_case(self) -> None:
        """Possible whenever allocating is not, so an example whose share is spent still has a step."""
        with self._check(STATUS):
            found = self.run.patiently(STATUS, lambda: self.run.connector.list_allocations(labels=self._labels()))
            unknown = self._unknown_ids()
            states = {a.allocation_id: a.state for a in found if a.allocation_id not in unknown}
            expected = {a: state for a, state in self._states().items() if state != "unknown"}
            if states != expected:
                raise Violation(STATUS, f"GET /v1/allocate lists {states}, expected {expected}")

    @precondition(lambda self: self.run.foreign is not None)
    @rule(allocation=held)
    def foreign_tenant(self, allocation: int) -> None:
        foreign = self.run.foreign
        assert foreign is not None
        allocation_id = self._usable(allocation)
        if allocation_id is None:
            return
        with self._check(ISOLATION):
            probes: list[tuple[str, Callable[[], Awaitable[object]]]] = [
                ("GET", lambda: foreign.get_allocation(allocation_id)),
                ("inference on", lambda: foreign.inference(allocation_id, InferenceRequest(prompt="hi", max_tokens=1))),
                ("DELETE", lambda: foreign.release_allocation(allocation_id)),
            ]
            for what, probe in probes:
                try:
                    self.run.patiently(ISOLATION, probe)
                except NotFound:
                    continue
                except HostedAiError as exc:
                    raise Violation(
                        ISOLATION,
                        f"another tenant's {what} our allocation {allocation_id} answered {type(exc).__name__}, "
                        f"not 404 not_found: {exc}",
                    ) from exc
                raise Violation(
                    ISOLATION, f"another tenant's {what} our allocation {allocation_id} succeeded (expected 404)"
                )
            state = self.run.patiently(ISOLATION, lambda: self.run.connector.get_allocation(allocation_id)).state
            if state != "active":
                raise Violation(ISOLATION, f"after another tenant's probes our allocation {allocation_id} is {state!r}")

    @precondition(
        lambda self: self.run.tiers is not None and bool(self.run.tiers.crossings) and self.crossed < CROSSINGS
    )
    @rule(case=st.integers(0, 255), pick=st.integers(0, 255))
    def cross_tier(self, case: int, pick: int) -> None:
        """A tenant allocates in a pool only the other tenant's tier may use (must be 403
        `pool_not_permitted`, holding nothing), or the second tenant in one of its own pools (must be
        served). Which pools are which was read before the run; what is allocated is released at once."""
        tiers, foreign = self.run.tiers, self.run.foreign
        assert tiers is not None
        assert foreign is not None
        side, listed = tiers.crossings[case % len(tiers.crossings)]
        self.crossed += 1
        if self.run.budget_left() < 1:
            return
        pools = tiers.pools(side, listed=listed)
        shape = tiers.shapes[pools[pick % len(pools)]]
        connector = self.run.connector if side == "ours" else foreign
        who = "our key" if side == "ours" else "the second tenant's key"
        with self._check(TIERS):
            try:
                allocation = self.run.patiently(
                    TIERS,
                    lambda: connector.request_allocation(
                        shape.requirements, pool=shape.pool_id, labels=self._labels(), retry_capacity_exhausted=False
                    ),
                )
            except PoolNotPermitted as exc:
                if listed:
                    raise Violation(
                        TIERS,
                        f"{who} lists {shape.pool_id} in GET /v1/pools, yet allocating there answered 403 "
                        f"pool_not_permitted: {exc}",
                    ) from exc
                return
            except (CapacityExhausted, QuotaExceeded) as exc:
                if listed and self.run.live:
                    return  # a full live pool or a capped account: nothing held, nothing to hold against it
                raise Violation(
                    TIERS,
                    f"{who} allocating in {shape.pool_id} answered {exc.code}, expected "
                    f"{'201' if listed else '403 pool_not_permitted'}: {exc}",
                ) from exc
            self.run.taken += 1
            self._release_now(connector, allocation.allocation_id)
            if not listed:
                raise Violation(
                    TIERS,
                    f"{who} allocated {allocation.allocation_id} in {shape.pool_id}, a pool its GET /v1/pools does "
                    "not list (another tier's): expected 403 pool_not_permitted",
                )

    def _release_now(self, connector: HostedAiConnector, allocation_id: str) -> None:
        try:
            self.run.patiently(TIERS, lambda: connector.release_allocation(allocation_id))
        except HostedAiError as exc:
            raise Violation(TIERS, f"could not release {allocation_id}, made across the tier boundary: {exc}") from exc

    @precondition(lambda self: self._may_allocate(2))
    @rule(target=held, shape=st.sampled_from(["small", "large"]))
    def replay_allocate(self, shape: str) -> int:
        chosen = self.run.shapes[shape]
        slot = self._new_slot(chosen, None, "refused", "never sent")
        if self.run.budget_left() < 2:
            self.slots[slot].refused_because = "the live budget (--max-allocations) was spent"
            return slot
        body = {
            "pool_id": chosen.pool_id,
            "requirements": chosen.requirements.model_dump(exclude_none=True),
            "overcommit": True,
            "labels": self._labels(),
        }
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        with self._check(IDEMPOTENT_ALLOCATE):
            answers: list[tuple[str, Mapping[str, str]]] = []
            for attempt in (1, 2):
                status, answer_headers, text = self._raw_patiently(
                    IDEMPOTENT_ALLOCATE, "POST", "/v1/allocate", body, headers
                )
                if status in (403, 503) and self.run.live:
                    # A full pool or a capped account, or (on the second attempt) a server that ignores
                    # the key and found no room for a second allocation: nothing a live run holds against it.
                    for allocation_id, _ in answers:
                        self._release_extra(allocation_id)
                    self.slots[slot] = Slot(chosen, None, "refused", f"answered {status}")
                    return slot
                made = _allocation_id(text) if 200 <= status < 300 else None
                if made is not None and not answers:
                    self.slots[slot] = Slot(chosen, made, "active")
                    self.run.taken += 1
                elif made is not None and made != answers[0][0]:
                    self.extra[made] = "active"
                    self.run.taken += 1
                if status != 201 or made is None:
                    # Whatever it made is in the model, so the teardown releases it.
                    raise Violation(
                        IDEMPOTENT_ALLOCATE,
                        f"allocate attempt {attempt} answered {status} (the contract: 201 with an allocation): "
                        f"{text[:300]}{self.run.last.describe()}",
                    )
                answers.append((made, answer_headers))
            (first, _), (second, replay_headers) = answers
            if first != second:
                self.slots[slot] = Slot(chosen, None, "refused", "the server ignored the Idempotency-Key")
                self._release_extra(first)
                self._release_extra(second)
                if self.run.options.idempotency_key:
                    raise Violation(
                        IDEMPOTENT_ALLOCATE,
                        f"the same Idempotency-Key and body allocated twice: {first} and {second} "
                        "(the contract: the second answer replays the first)",
                    )
                # Declared (--no-idempotency-key): both were released, nothing held, nothing to hold against it.
                return slot
            if self.run.options.idempotency_key and replay_headers.get("Idempotent-Replayed") != "true":
                raise Violation(
                    IDEMPOTENT_ALLOCATE,
                    f"the replayed allocate of {first} lacks the header Idempotent-Replayed: true "
                    f"(headers: {sorted(replay_headers)})",
                )
        return slot

    def _release_extra(self, allocation_id: str) -> None:
        """Release an allocation the model knows outside its slots (a twin made by a server that
        ignored the Idempotency-Key)."""
        self.extra[allocation_id] = "unknown"
        self.run.patiently(IDEMPOTENT_ALLOCATE, lambda: self.run.connector.release_allocation(allocation_id))
        self.extra[allocation_id] = "released"

    def _usable(self, allocation: int) -> str | None:
        """The slot's allocation id when the model says it is active; None when the server refused it."""
        slot = self.slots[allocation]
        return slot.allocation_id if slot.state == "active" else None

    # ---- invariants --------------------------------------------------------------------------------

    @invariant()
    def active_allocations_match_the_model(self) -> None:
        with self._check(ACTIVE_SET):
            found = self.run.patiently(
                ACTIVE_SET,
                lambda: self.run.connector.list_allocations(state=["active"], labels=self._labels()),
            )
            active = {a.allocation_id for a in found} - self._unknown_ids()
            held = {a for a, state in self._states().items() if state == "active"}
            if active != held:
                raise Violation(
                    ACTIVE_SET,
                    f"the target lists {sorted(active)} as active, the model holds {sorted(held)} "
                    f"(unexpected: {sorted(active - held)}, missing: {sorted(held - active)})",
                )

    @invariant()
    def capacity_accounting(self) -> None:
        if not self.run.owns_target:
            return
        with self._check(CAPACITY):
            pools = self.run.patiently(CAPACITY, self.run.connector.list_pools)
            problems = []
            active = self._active().values()
            for pool in pools:
                mine = [s.shape.requirements for s in active if s.shape.pool_id == pool.pool_id]
                want = (len(mine), sum(r.tflops for r in mine), sum(r.vram_mb for r in mine))
                got = (pool.allocations_active, pool.tflops_allocated, pool.vram_mb_allocated)
                if got[0] != want[0] or abs(got[1] - want[1]) > 1e-6 or got[2] != want[2]:
                    problems.append(
                        f"{pool.pool_id} reports {got[0]} active, {got[1]:g} TFLOPS and {got[2]} MB allocated, "
                        f"but the {len(mine)} allocation(s) this run holds there add up to {want[1]:g} TFLOPS "
                        f"and {want[2]} MB"
                    )
            if problems:
                raise Violation(CAPACITY, "GET /v1/pools does not add up: " + "; ".join(problems))

    def teardown(self) -> None:
        for allocation_id in sorted(a for a, state in self._states().items() if state in ("active", "unknown")):
            # A failure here is left to the check after the run, which finds and releases stragglers.
            with contextlib.suppress(HostedAiError, Untested):
                self._release(RELEASE, allocation_id)

    def _release(self, check: str, allocation_id: str) -> None:
        self.run.patiently(check, lambda: self.run.connector.release_allocation(allocation_id))


def _allocation_id(text: str) -> str | None:
    try:
        value = json.loads(text).get("allocation_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


async def _collect(stream: Any) -> list[StreamToken | StreamDone]:
    return [event async for event in stream]
