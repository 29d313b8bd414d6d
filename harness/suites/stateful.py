"""The stateful suite: a Hypothesis state machine drives the real connector against the target.

Beside the target it keeps a small reference model (the allocations it made and the state each should
be in) and after every step checks that the target agrees: the tenant's active allocations are the
ones the model holds, and, on a mock used only by this run, every pool's allocated capacity is the sum
of what the model holds there. Rules allocate, infer (plain and streamed), release, release twice, use
a released allocation, read an allocation back, probe it with another tenant's key and replay an
allocate with its `Idempotency-Key`. A failure is shrunk by Hypothesis to the shortest sequence of
steps that still fails, reported as code that replays it.

Every allocation carries the labels `harness_run` (this run) and `harness_case` (one generated
example), so the checks see only what this run made, and a leak found after the run is released.
Against a live HostedAI the run takes at most `RunOptions.max_allocations` allocations, each of the
smallest shape the suites use, spread over the generated examples, and releases every one. A target
with a control plane is a mock used only by this run: each example starts with `POST /_admin/reset`
(seeded with the run's seed), so pool totals are exact and a shrunk example replays alike.

Hypothesis rules are synchronous: the machine runs in a worker thread that owns an event loop, where
the connector and its session live; `run()` awaits that thread and never blocks its caller's loop.
Cancelling `run()` stops the machine at its next step and waits until it has released what it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import aiohttp
import hypothesis
from hypothesis import HealthCheck
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from prometheus_client import CollectorRegistry

from harness.connector import (
    AllocationNotActive,
    CapacityExhausted,
    ConnectorMetrics,
    HostedAiConfig,
    HostedAiConnector,
    HostedAiError,
    InferenceRequest,
    NotFound,
    QuotaExceeded,
    Requirements,
    StreamDone,
    StreamToken,
    parse_connector_config,
)
from harness.suites.base import CheckResult, RunOptions, Stopwatch, SuiteResult, Target

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
ACTIVE_SET = "stateful: active allocations match the model"
CAPACITY = "stateful: capacity accounting"
ALL_RELEASED = "stateful: every allocation released"
MACHINE = "stateful: state machine"
"""Not a check of the target: the run itself broke (the target unreachable, a bug in the suite)."""

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
    ACTIVE_SET,
    CAPACITY,
)

RUN_LABEL = "harness_run"
CASE_LABEL = "harness_case"

# The smallest shapes the suites use: each fits any GPU of its pool many times over.
SHAPES: dict[str, tuple[str, Requirements]] = {
    "gemma-270m": ("gpu-pool-2", Requirements(model="gemma-270m", tflops=5, vram_mb=2048)),
    "qwen-30b": ("gpu-pool-1", Requirements(model="qwen-30b", tflops=30, vram_mb=20480)),
}
PROMPTS = ("Hello", "Summarise the plot of Hamlet in one line.", "List three prime numbers.")
MAX_HELD = 12
"""Allocations held at once on a mock: far below any pool's capacity, so an allocate never waits."""
STEPS = 20


class _Stopped(BaseException):
    """The run was cancelled. A BaseException, so Hypothesis neither shrinks nor reports it; the
    machine's teardown and the sweep after the run still release what it holds."""


class Violation(Exception):
    """The target broke one check; raised from the step that saw it, so Hypothesis can shrink to it."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check
        self.message = message


@dataclass(frozen=True, slots=True)
class _Held:
    pool_id: str
    tflops: float
    vram_mb: int


@dataclass(slots=True)
class _Run:
    """What every generated example of one run shares: the loop, the clients, the budget, the tallies."""

    target: Target
    options: RunOptions
    loop: asyncio.AbstractEventLoop
    session: aiohttp.ClientSession
    connector: HostedAiConnector
    foreign: HostedAiConnector | None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    taken: int = 0
    """Allocations made in this run, over every example (the live budget counts them)."""
    exercised: Counter[str] = field(default_factory=Counter)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    violated: dict[str, str] = field(default_factory=dict)
    """The first violation of each check seen while generating, in case the final replay lacks it."""
    stop: threading.Event = field(default_factory=threading.Event)
    """Set when the caller cancels `run()`: the next step stops the run, which still cleans up."""

    def wait(self, work: Awaitable[T]) -> T:
        return self.loop.run_until_complete(work)

    @property
    def live(self) -> bool:
        return not self.target.has_control_plane

    async def reset(self) -> None:
        """The mock's control plane: back to its configuration, reseeded with the run's seed."""
        config = self.connector.config
        async with self.session.post(
            f"{config.base_url}/_admin/reset",
            json={"seed": self.options.seed},
            headers={"X-Admin-Token": self.target.admin_token or ""},
            timeout=aiohttp.ClientTimeout(total=config.timeout_secs),
        ) as resp:
            if resp.status != 200:
                raise RuntimeError(f"POST /_admin/reset answered {resp.status}: {(await resp.text())[:300]}")

    def budget_left(self) -> int:
        return self.options.max_allocations - self.taken if self.live else 1 << 30

    @property
    def share(self) -> int:
        """What one example may take of a live budget: spread over the examples, so that later ones
        have something to infer on too, and never below the two an idempotent-allocate replay needs."""
        if not self.live:
            return 1 << 30
        return max(2, -(-self.options.max_allocations // max(1, self.options.examples)))


class HostedAiMachine(RuleBasedStateMachine):
    """One generated example: a fresh reference model against the shared target."""

    held = Bundle[str]("held")
    released = Bundle[str]("released")

    def __init__(self, run: _Run) -> None:
        super().__init__()
        self.run = run
        self.case_id = uuid.uuid4().hex
        self.expected: dict[str, str] = {}
        """allocation_id -> the state the target must report."""
        self.shapes: dict[str, _Held] = {}
        if run.target.has_control_plane:
            # Every example starts from the mock's configured state with the same seed: pool totals are
            # then exactly the model's sums, and a shrunk example replays alike whatever earlier
            # examples (or a mock that leaks capacity) left behind.
            run.wait(run.reset())

    # ---- plumbing ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _check(self, name: str) -> Iterator[None]:
        """Time a check; an unexpected error of the target (or of its transport) violates it."""
        if self.run.stop.is_set():
            raise _Stopped
        started = time.perf_counter()
        try:
            yield
        except Violation as violation:
            self.run.violated.setdefault(violation.check, violation.message)
            raise
        except (HostedAiError, aiohttp.ClientError, TimeoutError) as exc:
            message = f"unexpected {type(exc).__name__}: {exc}"
            self.run.violated.setdefault(name, message)
            raise Violation(name, message) from exc
        finally:
            self.run.seconds[name] += time.perf_counter() - started
        self.run.exercised[name] += 1

    def _labels(self) -> dict[str, str]:
        return {RUN_LABEL: self.run.run_id, CASE_LABEL: self.case_id}

    def _holding(self) -> set[str]:
        return {a for a, state in self.expected.items() if state == "active"}

    def _may_allocate(self, count: int) -> bool:
        return (
            len(self._holding()) + count <= MAX_HELD
            and min(self.run.budget_left(), self.run.share - len(self.expected)) >= count
        )

    def _hold(self, allocation_id: str, pool_id: str, requirements: Requirements) -> None:
        self.expected[allocation_id] = "active"
        self.shapes[allocation_id] = _Held(pool_id, requirements.tflops, requirements.vram_mb)

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

    # ---- rules -------------------------------------------------------------------------------------

    @precondition(lambda self: self._may_allocate(1))
    @rule(target=held, model=st.sampled_from(sorted(SHAPES)))
    def allocate(self, model: str) -> str | MultipleResults[str]:
        pool_id, requirements = SHAPES[model]
        with self._check(ALLOCATE):
            try:
                allocation = self.run.wait(
                    self.run.connector.request_allocation(
                        requirements, pool=pool_id, labels=self._labels(), retry_capacity_exhausted=False
                    )
                )
            except (CapacityExhausted, QuotaExceeded) as exc:
                if self.run.live:
                    return multiple()  # a live pool may be full or the account capped: not a fault
                if isinstance(exc, CapacityExhausted):
                    raise Violation(
                        CAPACITY,
                        f"allocate of {model} in {pool_id} answered capacity_exhausted while this run holds "
                        f"{len(self._holding())} small allocations on a mock used only by it: capacity "
                        f"that was released has not come back ({exc})",
                    ) from exc
                raise
            self.run.taken += 1
            self._hold(allocation.allocation_id, pool_id, requirements)
            wrong = [
                f"{name} is {got!r}, expected {want!r}"
                for name, got, want in (
                    ("state", allocation.state, "active"),
                    ("pool_id", allocation.pool_id, pool_id),
                    ("model", allocation.model, model),
                    ("vram_mb", allocation.vram_mb, requirements.vram_mb),
                )
                if got != want
            ]
            if abs(allocation.tflops - requirements.tflops) > 1e-6:
                wrong.append(f"tflops is {allocation.tflops!r}, expected {requirements.tflops!r}")
            missing = {k: v for k, v in self._labels().items() if allocation.labels.get(k) != v}
            if missing:
                wrong.append(f"labels lack {missing}")
            if wrong:
                raise Violation(ALLOCATE, f"allocation {allocation.allocation_id}: " + "; ".join(wrong))
        return allocation.allocation_id

    @rule(allocation=held, prompt=st.sampled_from(PROMPTS), max_tokens=st.integers(1, 16))
    def infer(self, allocation: str, prompt: str, max_tokens: int) -> None:
        with self._check(INFERENCE):
            request = InferenceRequest(prompt=prompt, max_tokens=max_tokens)
            response = self.run.wait(self.run.connector.inference(allocation, request))
            usage = response.usage
            if response.allocation_id != allocation:
                raise Violation(INFERENCE, f"inference on {allocation} answered for {response.allocation_id}")
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
    def stream(self, allocation: str, prompt: str, max_tokens: int) -> None:
        with self._check(STREAM):
            request = InferenceRequest(prompt=prompt, max_tokens=max_tokens)
            events = self.run.wait(_collect(self.run.connector.stream_inference(allocation, request)))
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
            if done.allocation_id != allocation:
                raise Violation(STREAM, f"stream on {allocation} finished for {done.allocation_id}")

    @rule(target=released, allocation=consumes(held))
    def release(self, allocation: str) -> str:
        with self._check(RELEASE):
            self.run.wait(self.run.connector.release_allocation(allocation))
            self.expected[allocation] = "released"
        return allocation

    @rule(target=released, allocation=consumes(held))
    def release_twice(self, allocation: str) -> str:
        with self._check(RELEASE_IDEMPOTENT):
            self.run.wait(self.run.connector.release_allocation(allocation))
            self.expected[allocation] = "released"
            # On the wire: the connector treats a 409 allocation_not_active as done, the contract says 204.
            status, _, body = self.run.wait(self._raw("DELETE", f"/v1/allocate/{allocation}"))
            if status != 204:
                raise Violation(
                    RELEASE_IDEMPOTENT,
                    f"the second DELETE /v1/allocate/{allocation} answered {status} (the contract: 204 for an "
                    f"allocation that already ended): {body[:300]}",
                )
            state = self.run.wait(self.run.connector.get_allocation(allocation)).state
            if state != "released":
                raise Violation(RELEASE_IDEMPOTENT, f"after two releases {allocation} is {state!r}, not 'released'")
        return allocation

    @rule(allocation=released, prompt=st.sampled_from(PROMPTS))
    def use_after_release(self, allocation: str, prompt: str) -> None:
        with self._check(USE_AFTER_RELEASE):
            try:
                response = self.run.wait(
                    self.run.connector.inference(allocation, InferenceRequest(prompt=prompt, max_tokens=4))
                )
            except AllocationNotActive as exc:
                if exc.state != "released":
                    raise Violation(
                        USE_AFTER_RELEASE, f"409 allocation_not_active says state {exc.state!r}, not 'released'"
                    ) from exc
                return
            raise Violation(
                USE_AFTER_RELEASE,
                f"inference on released allocation {allocation} succeeded ({response.usage.completion_tokens} tokens)",
            )

    @rule(allocation=held)
    def get_held(self, allocation: str) -> None:
        self._get(allocation)

    @rule(allocation=released)
    def get_released(self, allocation: str) -> None:
        self._get(allocation)

    def _get(self, allocation: str) -> None:
        with self._check(STATUS):
            got = self.run.wait(self.run.connector.get_allocation(allocation))
            if got.allocation_id != allocation or got.state != self.expected[allocation]:
                raise Violation(
                    STATUS,
                    f"GET /v1/allocate/{allocation} says {got.allocation_id} is {got.state!r}, "
                    f"expected {self.expected[allocation]!r}",
                )

    @precondition(lambda self: not self._may_allocate(1))
    @rule()
    def list_case(self) -> None:
        """Possible whenever allocating is not, so a live run whose budget is spent still has a step."""
        with self._check(STATUS):
            found = self.run.wait(self.run.connector.list_allocations(labels=self._labels()))
            states = {a.allocation_id: a.state for a in found}
            if states != self.expected:
                raise Violation(STATUS, f"GET /v1/allocate lists {states}, expected {self.expected}")

    @precondition(lambda self: self.run.foreign is not None)
    @rule(allocation=held)
    def foreign_tenant(self, allocation: str) -> None:
        foreign = self.run.foreign
        assert foreign is not None
        with self._check(ISOLATION):
            probes: list[tuple[str, Callable[[], Awaitable[object]]]] = [
                ("GET", lambda: foreign.get_allocation(allocation)),
                ("inference on", lambda: foreign.inference(allocation, InferenceRequest(prompt="hi", max_tokens=1))),
                ("DELETE", lambda: foreign.release_allocation(allocation)),
            ]
            for what, probe in probes:
                try:
                    self.run.wait(probe())
                except NotFound:
                    continue
                except HostedAiError as exc:
                    raise Violation(
                        ISOLATION,
                        f"another tenant's {what} our allocation {allocation} answered {type(exc).__name__}, "
                        f"not 404 not_found: {exc}",
                    ) from exc
                raise Violation(
                    ISOLATION, f"another tenant's {what} our allocation {allocation} succeeded (expected 404)"
                )
            state = self.run.wait(self.run.connector.get_allocation(allocation)).state
            if state != "active":
                raise Violation(ISOLATION, f"after another tenant's probes our allocation {allocation} is {state!r}")

    @precondition(lambda self: self._may_allocate(2))
    @rule(target=held, model=st.sampled_from(sorted(SHAPES)))
    def replay_allocate(self, model: str) -> str | MultipleResults[str]:
        pool_id, requirements = SHAPES[model]
        body = {
            "pool_id": pool_id,
            "requirements": requirements.model_dump(exclude_none=True),
            "overcommit": True,
            "labels": self._labels(),
        }
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        with self._check(IDEMPOTENT_ALLOCATE):
            answers: list[tuple[str, Mapping[str, str]]] = []
            for attempt in (1, 2):
                status, answer_headers, text = self.run.wait(self._raw("POST", "/v1/allocate", body, headers))
                if status in (403, 503) and self.run.live:
                    # A full pool or a capped account, or (on the second attempt) a server that ignores
                    # the key and found no room for a second allocation: nothing a live run holds against it.
                    for allocation, _ in answers:
                        self.run.wait(self.run.connector.release_allocation(allocation))
                        self.expected[allocation] = "released"
                    return multiple()
                if status != 201:
                    raise Violation(IDEMPOTENT_ALLOCATE, f"allocate attempt {attempt} answered {status}: {text[:300]}")
                allocation = _allocation_id(text)
                if allocation not in self.expected:
                    self.run.taken += 1
                    self._hold(allocation, pool_id, requirements)
                answers.append((allocation, answer_headers))
            (first, _), (second, replay_headers) = answers
            if first != second:
                for allocation in (first, second):
                    self.run.wait(self.run.connector.release_allocation(allocation))
                    self.expected[allocation] = "released"
                if self.run.target.has_control_plane:
                    raise Violation(
                        IDEMPOTENT_ALLOCATE,
                        f"the same Idempotency-Key and body allocated twice: {first} and {second} "
                        "(the contract: the second answer replays the first)",
                    )
                # A live HostedAI is documented to lack idempotency: both were released, nothing to hold.
                return multiple()
            if replay_headers.get("Idempotent-Replayed") != "true":
                raise Violation(
                    IDEMPOTENT_ALLOCATE,
                    f"the replayed allocate of {first} lacks the header Idempotent-Replayed: true "
                    f"(headers: {sorted(replay_headers)})",
                )
        return first

    # ---- invariants --------------------------------------------------------------------------------

    @invariant()
    def active_allocations_match_the_model(self) -> None:
        with self._check(ACTIVE_SET):
            found = self.run.wait(self.run.connector.list_allocations(state=["active"], labels=self._labels()))
            active = {a.allocation_id for a in found}
            held = self._holding()
            if active != held:
                raise Violation(
                    ACTIVE_SET,
                    f"the target lists {sorted(active)} as active, the model holds {sorted(held)} "
                    f"(unexpected: {sorted(active - held)}, missing: {sorted(held - active)})",
                )

    @invariant()
    def capacity_accounting(self) -> None:
        if not self.run.target.has_control_plane:
            return
        with self._check(CAPACITY):
            pools = self.run.wait(self.run.connector.list_pools())
            problems = []
            for pool in pools:
                mine = [self.shapes[a] for a in self._holding() if self.shapes[a].pool_id == pool.pool_id]
                want = (len(mine), sum(h.tflops for h in mine), sum(h.vram_mb for h in mine))
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
        for allocation in sorted(self._holding()):
            # A failure here is left to the check after the run, which finds and releases stragglers.
            with contextlib.suppress(HostedAiError):
                self.run.wait(self.run.connector.release_allocation(allocation))
                self.expected[allocation] = "released"


def _allocation_id(text: str) -> str:
    try:
        value = json.loads(text).get("allocation_id")
    except (ValueError, AttributeError):
        value = None
    if not isinstance(value, str):
        raise Violation(IDEMPOTENT_ALLOCATE, f"a 201 allocate answer without an allocation_id: {text[:300]}")
    return value


async def _collect(stream: Any) -> list[StreamToken | StreamDone]:
    return [event async for event in stream]


def _leaves(error: BaseException, notes: tuple[str, ...] = ()) -> list[tuple[BaseException, list[str]]]:
    """The failures inside what Hypothesis raised (one error, or a group of distinct or flaky ones),
    each with the notes Hypothesis attached on the way: the shrunk steps that replay it."""
    notes = (*notes, *getattr(error, "__notes__", ()))
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner, notes)]
    return [(error, list(notes))]


def _steps(notes: list[str]) -> str:
    """The code of the shrunk example, from `state = HostedAiMachine()` to `state.teardown()`."""
    lines = "\n".join(notes).splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith("state = ")), None)
    if first is None:
        return ""
    last = next((i for i in range(first, len(lines)) if lines[i] == "state.teardown()"), len(lines) - 1)
    return "\n".join(lines[first : last + 1])


class StatefulSuite:
    name = "stateful"
    needs_control_plane = False

    def __init__(self, steps: int = STEPS) -> None:
        self.steps = steps

    async def run(self, target: Target, options: RunOptions) -> SuiteResult:
        watch = Stopwatch()
        result = SuiteResult(self.name, replay=f"--seed {options.seed} --examples {options.examples}")
        stop = threading.Event()
        work = asyncio.ensure_future(asyncio.to_thread(self._run_in_thread, target, options, stop))
        try:
            result.checks = await asyncio.shield(work)
        except asyncio.CancelledError:
            # A thread cannot be cancelled: ask the machine to stop, and wait for it to release what it holds.
            stop.set()
            with contextlib.suppress(Exception):
                await work
            raise
        result.duration_s = watch.elapsed
        return result

    def settings(self, options: RunOptions) -> hypothesis.settings:
        return hypothesis.settings(
            max_examples=max(1, options.examples),
            stateful_step_count=self.steps,
            deadline=None,
            database=None,
            derandomize=False,
            print_blob=False,
            # The explain phase names lines of this file, which tells a reader of the report nothing.
            phases=[p for p in hypothesis.Phase if p is not hypothesis.Phase.explain],
            suppress_health_check=list(HealthCheck),
        )

    def _run_in_thread(self, target: Target, options: RunOptions, stop: threading.Event) -> list[CheckResult]:
        loop = asyncio.new_event_loop()
        try:
            run = loop.run_until_complete(_open(target, options, loop, stop))
            try:
                try:
                    failed = self._explore(run, options)
                except _Stopped:
                    failed = []
                failed.append(loop.run_until_complete(_sweep(run)))
            finally:
                loop.run_until_complete(_close(run))
        finally:
            loop.close()
        return _report(run, failed)

    def _explore(self, run: _Run, options: RunOptions) -> list[CheckResult]:
        """Run the machine; the failures Hypothesis reports, each with its shrunk sequence of steps."""

        def machine() -> HostedAiMachine:
            return HostedAiMachine(run)

        factory = cast("type[RuleBasedStateMachine]", hypothesis.seed(options.seed)(machine))
        started = time.perf_counter()
        try:
            run_state_machine_as_test(factory, settings=self.settings(options))
        except Exception as raised:
            errors = _leaves(raised)
        else:
            return []
        elapsed = time.perf_counter() - started
        failed: list[CheckResult] = []
        for error, notes in errors:
            steps = _steps(notes)
            reproduce = [steps] if steps else []
            replay = f"\n\nMinimal failing sequence (Hypothesis, seed {options.seed}):\n{steps}" if steps else ""
            if isinstance(error, Violation):
                failed.append(CheckResult(error.check, "failed", 0.0, error.message + replay, reproduce))
            else:
                text = "".join(traceback.format_exception_only(error)).strip()
                failed.append(CheckResult(MACHINE, "failed", elapsed, f"{text[-4000:]}{replay}", reproduce))
        return failed


async def _open(target: Target, options: RunOptions, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> _Run:
    def config(api_key: str) -> HostedAiConfig:
        return parse_connector_config(
            {
                "hosted_ai": {
                    "base_url": target.url,
                    "api_key": api_key,
                    "max_retries": 0,
                    "ca_bundle": target.ca_bundle,
                    # Every answer is the target's to be judged: no call refused by an open circuit.
                    "circuit_breaker": {"failure_threshold": 1_000_000},
                }
            },
            source="stateful suite",
        )

    ours = config(target.api_key)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ours.ssl_context()))

    def connector(config: HostedAiConfig) -> HostedAiConnector:
        return HostedAiConnector(config, session=session, metrics=ConnectorMetrics(CollectorRegistry()))

    return _Run(
        target=target,
        options=options,
        loop=loop,
        session=session,
        connector=connector(ours),
        foreign=connector(config(target.second_api_key)) if target.second_api_key else None,
        stop=stop,
    )


async def _close(run: _Run) -> None:
    for connector in (run.connector, run.foreign):
        if connector is not None:
            await connector.close()
    await run.session.close()


async def _sweep(run: _Run) -> CheckResult:
    """After the run: nothing it made may still be active. Whatever is, is released now."""
    started = time.perf_counter()
    try:
        left = await run.connector.list_allocations(state=["active"], labels={RUN_LABEL: run.run_id})
    except HostedAiError as exc:
        return CheckResult(ALL_RELEASED, "failed", time.perf_counter() - started, f"could not list allocations: {exc}")
    unreleased = []
    for allocation in left:
        try:
            await run.connector.release_allocation(allocation.allocation_id)
        except HostedAiError as exc:
            unreleased.append(f"{allocation.allocation_id} ({exc})")
    elapsed = time.perf_counter() - started
    if not left:
        return CheckResult(ALL_RELEASED, "passed", elapsed)
    message = (
        f"{len(left)} allocation(s) labelled {RUN_LABEL}={run.run_id} were still active after the run: "
        f"{', '.join(a.allocation_id for a in left)}; "
        + (f"they could not be released: {'; '.join(unreleased)}" if unreleased else "released now")
    )
    return CheckResult(ALL_RELEASED, "failed", elapsed, message)


def _report(run: _Run, failed: list[CheckResult]) -> list[CheckResult]:
    """One result per check, in a fixed order: failed if the run saw it fail, else passed if it ran,
    else skipped with the reason."""
    results: list[CheckResult] = []
    for check in CHECKS:
        seconds = run.seconds[check]
        mine = [c for c in failed if c.name == check]
        for result in mine:
            result.duration_s = seconds
        if mine:
            results += mine
        elif check in run.violated:
            results.append(
                CheckResult(
                    check,
                    "failed",
                    seconds,
                    f"{run.violated[check]}\n\n(seen while generating; its replay failed differently or "
                    "not at all, so the target's behaviour depends on more than these steps)",
                )
            )
        elif (reason := _not_applicable(run, check)) is not None:
            results.append(CheckResult(check, "skipped", seconds, reason))
        elif run.exercised[check]:
            results.append(CheckResult(check, "passed", seconds, f"never violated in {run.exercised[check]} step(s)"))
        else:
            results.append(CheckResult(check, "skipped", seconds, _not_exercised(run)))
    results += [c for c in failed if c.name not in CHECKS]
    return results


def _not_applicable(run: _Run, check: str) -> str | None:
    if check == ISOLATION and run.foreign is None:
        return "the target has no second tenant's API key"
    if check == CAPACITY and run.live:
        return "a live target's pools are shared with other tenants: their totals cannot be checked"
    return None


def _not_exercised(run: _Run) -> str:
    if run.live and run.budget_left() < 2:
        return (
            f"never exercised: the live budget of {run.options.max_allocations} allocations (max_allocations) "
            "ran out first"
        )
    return f"never exercised in {max(1, run.options.examples)} generated run(s); a larger --examples explores more"
