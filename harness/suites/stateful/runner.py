"""Running the stateful machine: in a worker thread with its own event loop, then the sweep and the report.

Hypothesis rules are synchronous, the connector is async: the machine runs in a worker thread that owns
an event loop, where the connector and its session live; `StatefulSuite.run()` awaits that thread and
never blocks its caller's loop. Cancelling `run()` stops the machine at its next step and waits until
it has released what it holds.

Before the machine starts, the run reads the target's catalogue once (`GET /v1/models`, `/v1/pools`)
and fixes two shapes, the smallest model and the largest, each in the pool with the most free VRAM
that serves it: the machine's choices are then the same on every target, whatever it answers later.
With a second tenant's key it also reads that tenant's catalogue: which pools each tier may use.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import traceback
import types
from typing import cast

import aiohttp
import hypothesis
import hypothesis.errors
from hypothesis import HealthCheck
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test
from prometheus_client import CollectorRegistry

from harness.connector import (
    ConnectorMetrics,
    HostedAiConfig,
    HostedAiConnector,
    HostedAiError,
    parse_connector_config,
)
from harness.control_plane import ControlPlane
from harness.suites import leaks
from harness.suites.base import CheckResult, RunOptions, Stopwatch, SuiteResult
from harness.suites.shapes import catalogue_shapes, catalogue_tiers
from harness.suites.stateful.machine import (
    ALL_RELEASED,
    CAPACITY,
    CHECKS,
    IDEMPOTENT_ALLOCATE,
    ISOLATION,
    MACHINE,
    RUN_LABEL,
    TIERS,
    HostedAiMachine,
    RunContext,
    Stopped,
    Violation,
)
from harness.target import Target

STEPS = 20
CATALOGUE = "stateful: catalogue"
"""The target's models and pools could not be read: nothing else could run."""


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
            # The explain phase names lines of this package, which tells a reader of the report nothing.
            phases=[p for p in hypothesis.Phase if p is not hypothesis.Phase.explain],
            suppress_health_check=list(HealthCheck),
        )

    def _run_in_thread(self, target: Target, options: RunOptions, stop: threading.Event) -> list[CheckResult]:
        loop = asyncio.new_event_loop()
        try:
            run = loop.run_until_complete(_open(target, options, loop, stop))
            try:
                if isinstance(run, CheckResult):
                    return [run]
                try:
                    failed = self._explore(run, options)
                except Stopped:
                    failed = []
                failed.append(loop.run_until_complete(_sweep(run)))
            finally:
                if not isinstance(run, CheckResult):
                    loop.run_until_complete(_close(run))
        finally:
            loop.close()
        return _report(run, failed)

    def _explore(self, run: RunContext, options: RunOptions) -> list[CheckResult]:
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
            if isinstance(error, hypothesis.errors.Flaky) and run.violated:
                # A violation seen while generating did not replay alike: the target's state carries over
                # between examples (a live service is never reset). The violations are reported as seen.
                continue
            steps = _steps(notes)
            reproduce = [steps] if steps else []
            replay = f"\n\nMinimal failing sequence (Hypothesis, seed {options.seed}):\n{steps}" if steps else ""
            if isinstance(error, Violation):
                failed.append(CheckResult(error.check, "failed", 0.0, error.message + replay, reproduce))
            else:
                text = "".join(traceback.format_exception_only(error)).strip()
                failed.append(CheckResult(MACHINE, "failed", elapsed, f"{text[-4000:]}{replay}", reproduce))
        return failed


def _config(target: Target, api_key: str) -> HostedAiConfig:
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


def _tracer(run_last: list[RunContext]) -> aiohttp.TraceConfig:
    """Keeps the run's last exchange (method, URL, status, request id) for violation messages."""

    async def on_request_start(
        session: aiohttp.ClientSession, context: types.SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        if run_last:
            last = run_last[0].last
            last.method, last.url, last.status = params.method, str(params.url), None
            last.request_id = params.headers.get("X-Request-Id")

    async def on_request_end(
        session: aiohttp.ClientSession, context: types.SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        if run_last:
            last = run_last[0].last
            last.status = params.response.status
            last.request_id = params.response.headers.get("X-Request-Id", last.request_id)

    tracer = aiohttp.TraceConfig()
    tracer.on_request_start.append(on_request_start)
    tracer.on_request_end.append(on_request_end)
    return tracer


async def _open(
    target: Target, options: RunOptions, loop: asyncio.AbstractEventLoop, stop: threading.Event
) -> RunContext | CheckResult:
    ours = _config(target, target.api_key)
    holder: list[RunContext] = []
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ours.ssl_context()), trace_configs=[_tracer(holder)]
    )

    def connector(config: HostedAiConfig) -> HostedAiConnector:
        return HostedAiConnector(config, session=session, metrics=ConnectorMetrics(CollectorRegistry()))

    mine = connector(ours)
    reset = None
    if target.has_control_plane:
        admin = ControlPlane(target.url, target.admin_token or "", session=session)

        async def reset_mock() -> None:
            await admin.reset(options.seed)

        reset = reset_mock
    foreign = connector(_config(target, target.second_api_key)) if target.second_api_key else None
    try:
        if reset is not None:
            await reset()  # the catalogue as configured, not as an earlier suite left it
        shapes = await catalogue_shapes(mine)
        tiers = await catalogue_tiers(mine, foreign) if foreign is not None else None
    except (HostedAiError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
        for opened in (mine, foreign):
            if opened is not None:
                await opened.close()
        await session.close()
        return CheckResult(CATALOGUE, "failed", message=f"could not read the target's models and pools: {exc}")
    run = RunContext(
        target=target,
        options=options,
        loop=loop,
        session=session,
        connector=mine,
        foreign=foreign,
        shapes=shapes,
        reset=reset,
        tiers=tiers,
        stop=stop,
    )
    holder.append(run)
    return run


async def _close(run: RunContext) -> None:
    for connector in (run.connector, run.foreign):
        if connector is not None:
            await connector.close()
    await run.session.close()


async def _sweep(run: RunContext) -> CheckResult:
    """After the run: nothing it made may still be active, with either tenant's key (whatever is, is
    released now)."""
    watch = Stopwatch()
    labels = {RUN_LABEL: run.run_id}
    result = leaks.judge(ALL_RELEASED, await leaks.from_public_list(run.connector, labels))
    if run.foreign is not None and result.outcome == "passed":
        theirs = leaks.judge(ALL_RELEASED, await leaks.from_public_list(run.foreign, labels))
        if theirs.outcome != "passed":
            theirs.message = f"with the second tenant's key: {theirs.message}"
            result = theirs
    result.duration_s = watch.elapsed
    return result


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


def _report(run: RunContext, failed: list[CheckResult]) -> list[CheckResult]:
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
                    f"{run.violated[check]}\n\n(seen while generating; replaying the steps that led to it gave "
                    "another answer, so the target's behaviour depends on more than these steps: on state left "
                    "by earlier examples, or on chance)",
                )
            )
        elif (reason := _not_applicable(run, check)) is not None:
            results.append(CheckResult(check, "skipped", seconds, reason))
        elif run.exercised[check]:
            results.append(CheckResult(check, "passed", seconds, f"never violated in {run.exercised[check]} step(s)"))
        elif check in run.untested:
            results.append(CheckResult(check, "skipped", seconds, f"never decided: {run.untested[check]}"))
        else:
            results.append(CheckResult(check, "skipped", seconds, _not_exercised(run)))
    results += [c for c in failed if c.name not in CHECKS]
    return results


def _not_applicable(run: RunContext, check: str) -> str | None:
    if check in (ISOLATION, TIERS) and run.foreign is None:
        return "the target has no second tenant's API key (--second-api-key-env)"
    if check == TIERS and run.tiers is not None and not run.tiers.has_boundary:
        return "both tenants' keys list the same pools: no tier boundary to cross"
    if check == IDEMPOTENT_ALLOCATE and not run.options.idempotency_key:
        return "the target is declared to ignore Idempotency-Key (--no-idempotency-key)"
    if check == CAPACITY and not run.owns_target:
        return "the target's pools are shared with other clients: their totals cannot be checked exactly"
    return None


def _not_exercised(run: RunContext) -> str:
    if run.live and run.budget_left() < 2:
        return (
            f"never exercised: the live budget of {run.options.max_allocations} allocations (max_allocations) "
            "ran out first"
        )
    return f"never exercised in {max(1, run.options.examples)} generated run(s); a larger --examples explores more"
