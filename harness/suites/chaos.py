"""The chaos suite: the real orchestrator, on the real connector, through every fault scenario of the mock.

Per scenario the mock is reset (with the run's seed), the scenario is applied, and `Orchestrator.process`
runs a bounded number of rounds (alternating a simple and a complex text). Every outcome is caught and
classified; then one check per resilience property:

- no leaked allocation: the mock's leak report at grace 0 is empty once the connector is closed
  (nothing `still_active`, nothing `expired_unreleased`; `leaks.py`);
- retries bounded and spaced as configured: no allocate `Idempotency-Key` tried more than
  `max_retries + 1` times (the journal), and every backoff the connector took was a `Retry-After` the
  server sent (capped) or inside the jitter band of the exponential backoff;
- typed failures: every failure is a `HostedAiError` subclass or an honest fallback result, never
  another exception;
- no hang: every `process()` returns within the allocation and inference timeouts plus a little slack
  (wall clock, and wall clock plus the backoff the connector would really have slept);
- region-outage only: the circuit opens, the orchestrator answers with fallbacks without calling
  HostedAI while it is open, and after the outage a request succeeds and the circuit is closed.

Nothing really waits: the connector's `sleep` records each backoff, moves a virtual clock (the
connector's and its breaker's) and moves the mock's manual clock by as much, so a `Retry-After` means
the same on both sides (a rate limit's bucket refills while the client backs off). The harness never
imports the mock: the control plane is HTTP (`X-Admin-Token`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import traceback
import types
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from harness.connector import (
    CircuitState,
    ConnectorConfigError,
    ConnectorMetrics,
    HostedAiConfig,
    HostedAiConnector,
    HostedAiError,
)
from harness.connector.config import CircuitBreakerConfig
from harness.control_plane import ControlPlane, ControlPlaneError, FaultRule, JournalEntry
from harness.orchestrator import (
    ModelClasses,
    Orchestrator,
    ProcessResult,
    load_model_classes,
)
from harness.resources import MODELS_FILE
from harness.suites import leaks
from harness.suites.base import CheckResult, RunOptions, Stopwatch, SuiteResult
from harness.target import Target

REGION_OUTAGE = "region-outage"
TEXTS: tuple[tuple[str, str], ...] = (
    ("simple", "What is the capital of France?"),
    ("complex", "Explain why overcommit raises latency, and compare spatial with temporal GPU sharing."),
)

_EPS = 1e-6

Kind = Literal["ok", "fallback", "error", "foreign", "dishonest", "hang"]


def default_model_classes() -> ModelClasses:
    """The request classes of configs/models.yaml (shipped inside the package when installed)."""
    return load_model_classes(MODELS_FILE)


# ---- time: nothing really waits -------------------------------------------------------------------


class VirtualTime:
    """The connector's `clock` and `sleep`. A backoff is recorded, moves this clock (so deadlines and the
    breaker see it pass) and moves the mock's manual clock by as much; really it waits at most
    `real_sleep_cap_s`. `advance` moves this clock alone (the breaker's recovery without waiting)."""

    def __init__(self, admin: ControlPlane, real_sleep_cap_s: float = 0.0) -> None:
        self._admin = admin
        self._cap = real_sleep_cap_s
        self._offset = 0.0
        self.delays: list[float] = []
        self.problems: list[str] = []

    def now(self) -> float:
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds

    @property
    def slept(self) -> float:
        return sum(max(0.0, d) for d in self.delays)

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        wait = max(0.0, seconds)
        self._offset += wait
        if wait > 0:
            try:
                await self._admin.advance(wait)
            except ControlPlaneError as exc:
                self.problems.append(f"moving the mock's clock by a backoff of {wait:.3f} s: {exc}")
        await asyncio.sleep(min(wait, self._cap))


# ---- one scenario ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Round:
    index: int
    label: str
    kind: Kind
    detail: str
    wall_s: float
    slept_s: float
    circuit: CircuitState

    def describe(self) -> str:
        return (
            f"round {self.index} ({self.label}): {self.detail} "
            f"[{self.wall_s * 1000:.0f} ms wall, {self.slept_s:.2f} s backoff]"
        )


@dataclass(slots=True)
class Outage:
    """What region-outage showed of the circuit breaker."""

    opened_after_round: int | None = None
    requests_while_open: int | None = None
    rounds_while_open: list[Round] = field(default_factory=list)
    recovery: Round | None = None
    state_after_recovery: CircuitState | None = None
    problem: str | None = None


@dataclass(slots=True)
class ScenarioRun:
    name: str
    rounds: list[Round] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    retry_afters: set[float] = field(default_factory=set)
    retries_counted: int = 0
    outage: Outage | None = None
    problems: list[str] = field(default_factory=list)
    errors_logged: list[str] = field(default_factory=list)
    """What the connector and orchestrator logged at ERROR (e.g. a release that could not be sent)."""
    duration_s: float = 0.0


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _captured_logs() -> Iterator[_Records]:
    """The connector's and orchestrator's warnings, kept for the report instead of printed on stderr (a
    suite never prints); they still reach the root logger's handlers when there are any."""
    handler = _Records()
    logger = logging.getLogger("harness")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _origin(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" (raised at {last.filename}:{last.lineno})"


def classify(value: ProcessResult | BaseException | None) -> tuple[Kind, str]:
    """What one `process()` came to: a result, a typed error, or something it must never be."""
    if value is None:
        return "hang", "no answer within the budget"
    if isinstance(value, HostedAiError):
        return "error", f"{type(value).__name__}: {value}"
    if isinstance(value, BaseException):
        text = traceback.format_exception_only(type(value), value)[-1].strip()
        return "foreign", f"{text}{_origin(value)}"
    if not isinstance(value, ProcessResult):
        return "foreign", f"returned a {type(value).__name__}, not a ProcessResult"
    if value.fallback:
        if value.reason and value.output and value.allocation_id is None and value.usage is None:
            return "fallback", f"fallback ({value.reason.split(':', 1)[0]})"
        return "dishonest", f"a fallback without a reason, or claiming an allocation: {value.model_dump_json()}"
    if value.reason is None and value.allocation_id and value.usage is not None and value.output:
        return "ok", f"served by {value.model} on {value.pool_id}"
    return "dishonest", f"a success without an allocation, output or usage: {value.model_dump_json()}"


def _retries_counted(metrics: ConnectorMetrics) -> int:
    total = 0.0
    for family in metrics.retries.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                total += float(sample.value)
    return round(total)


class ChaosSuite:
    name = "chaos"
    needs_control_plane = True

    def __init__(
        self,
        classes: ModelClasses | None = None,
        *,
        timeout_secs: float = 2.0,
        allocation_timeout_secs: float = 10.0,
        inference_timeout_secs: float = 10.0,
        max_retries: int = 3,
        failure_threshold: int = 5,
        recovery_timeout_secs: float = 60.0,
        slack_s: float = 2.0,
        min_rounds: int = 5,
    ) -> None:
        self.classes = classes if classes is not None else default_model_classes()
        self.timeout_secs = timeout_secs
        self.allocation_timeout_secs = allocation_timeout_secs
        self.inference_timeout_secs = inference_timeout_secs
        self.max_retries = max_retries
        self.failure_threshold = failure_threshold
        self.recovery_timeout_secs = recovery_timeout_secs
        self.slack_s = slack_s
        self.min_rounds = min_rounds

    @property
    def budget_s(self) -> float:
        """How long one `process()` may take: the allocation and inference timeouts plus slack."""
        return self.allocation_timeout_secs + self.inference_timeout_secs + self.slack_s

    def connector_config(self, target: Target) -> HostedAiConfig:
        return HostedAiConfig(
            base_url=target.url,
            api_key=target.api_key,
            timeout_secs=self.timeout_secs,
            allocation_timeout_secs=self.allocation_timeout_secs,
            inference_timeout_secs=self.inference_timeout_secs,
            max_retries=self.max_retries,
            circuit_breaker=CircuitBreakerConfig(
                failure_threshold=self.failure_threshold, recovery_timeout=self.recovery_timeout_secs
            ),
            ca_bundle=target.ca_bundle,
        )

    # ---- the run -----------------------------------------------------------------------------------

    async def run(self, target: Target, options: RunOptions) -> SuiteResult:
        watch = Stopwatch()
        result = SuiteResult(self.name, replay=f"--seed {options.seed} --examples {options.examples}")
        if not target.has_control_plane:
            return self._skipped(result, watch, "needs the mock's control plane, which this target does not have")
        try:
            config = self.connector_config(target)
            config.resolve_api_key()
        except (ConnectorConfigError, ValidationError) as exc:
            message = f"the connector cannot be configured for this target: {exc}"
            result.checks.append(CheckResult("chaos: configuration", "failed", message=message))
            result.duration_s = watch.elapsed
            return result
        connector = aiohttp.TCPConnector(ssl=config.ssl_context())
        async with aiohttp.ClientSession(connector=connector) as session:
            admin = ControlPlane(target.url, target.admin_token or "", session=session)
            try:
                scenarios = [s["name"] for s in await admin.scenarios()]
                clock = (await admin.state())["clock"]["kind"]
            except (ControlPlaneError, KeyError, TypeError) as exc:
                result.checks.append(CheckResult("chaos: control plane", "failed", message=str(exc)))
                result.duration_s = watch.elapsed
                return result
            if clock != "manual":
                reason = f"needs the mock's manual clock (start it with --clock manual); its clock is {clock}"
                return self._skipped(result, watch, reason)
            for name in scenarios:
                result.checks.extend(await self._scenario(name, target, options, admin))
            try:
                await admin.reset(options.seed)  # leave no scenario behind for the next suite
            except ControlPlaneError as exc:
                result.checks.append(CheckResult("chaos: final reset", "failed", message=str(exc)))
        result.duration_s = watch.elapsed
        return result

    def _skipped(self, result: SuiteResult, watch: Stopwatch, reason: str) -> SuiteResult:
        result.skipped_reason = reason
        result.checks.append(CheckResult("chaos", "skipped", message=reason))
        result.duration_s = watch.elapsed
        return result

    async def _scenario(self, name: str, target: Target, options: RunOptions, admin: ControlPlane) -> list[CheckResult]:
        prefix = f"chaos: {name}"
        watch = Stopwatch()
        try:
            await admin.reset(options.seed)
            rules = await admin.apply_scenario(name)
        except ControlPlaneError as exc:
            return [CheckResult(f"{prefix}: setup", "failed", watch.elapsed, f"could not set up the scenario: {exc}")]
        try:
            run = await self._drive(name, rules, target, options, admin)
            leaked = await leaks.from_leak_report(admin, client_errors=run.errors_logged)
            allocates = await admin.journal(operation="allocate")
        except ControlPlaneError as exc:
            return [CheckResult(f"{prefix}: setup", "failed", watch.elapsed, f"the control plane failed: {exc}")]
        checks = [
            leaks.judge(f"{prefix}: no leaked allocation", leaked),
            self._retry_check(prefix, run, allocates, self.connector_config(target)),
            self._typed_check(prefix, run),
            self._hang_check(prefix, run),
        ]
        if run.outage is not None:
            checks.append(self._circuit_check(prefix, run.outage))
        if run.problems:
            checks.append(CheckResult(f"{prefix}: setup", "failed", message="\n".join(run.problems)))
        reproduce = [
            f'curl -s -X POST {target.url}/_admin/reset -H "X-Admin-Token: $ADMIN_TOKEN" '
            f"-H 'Content-Type: application/json' -d '{{\"seed\": {options.seed}}}'",
            f'curl -s -X POST {target.url}/_admin/scenarios/{name} -H "X-Admin-Token: $ADMIN_TOKEN"',
            f"# then Orchestrator.process() {max(self.min_rounds, options.examples)} times, alternating a simple and "
            "a complex text, and read /_admin/journal and /_admin/leaks",
        ]
        for check in checks:
            if check.outcome == "failed" and not check.reproduce:
                check.reproduce = reproduce
        return checks

    async def _drive(
        self, name: str, rules: list[FaultRule], target: Target, options: RunOptions, admin: ControlPlane
    ) -> ScenarioRun:
        """The rounds of one scenario (and region-outage's recovery), with the connector closed after."""
        watch = Stopwatch()
        run = ScenarioRun(name)
        vtime = VirtualTime(admin)
        config = self.connector_config(target)
        metrics = ConnectorMetrics(CollectorRegistry())
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=config.ssl_context()),
            trace_configs=[_retry_after_tracer(run.retry_afters)],
        )
        connector = HostedAiConnector(
            config,
            session=session,
            metrics=metrics,
            sleep=vtime.sleep,
            clock=vtime.now,
            rng=random.Random(f"chaos:{options.seed}:{name}"),
        )
        orchestrator = Orchestrator(connector, self.classes, clock=vtime.now)
        rounds = max(self.min_rounds, options.examples)
        with _captured_logs() as logs:
            try:
                await self._rounds(run, orchestrator, connector, vtime, rules, admin, rounds)
            finally:
                await connector.close()  # waits for pending clean-ups (releases after lost answers)
                await session.close()
        run.errors_logged = [r.getMessage() for r in logs.records if r.levelno >= logging.ERROR]
        run.delays = list(vtime.delays)
        run.retries_counted = _retries_counted(metrics)
        run.problems = list(vtime.problems)
        run.duration_s = watch.elapsed
        return run

    async def _rounds(
        self,
        run: ScenarioRun,
        orchestrator: Orchestrator,
        connector: HostedAiConnector,
        vtime: VirtualTime,
        rules: list[FaultRule],
        admin: ControlPlane,
        rounds: int,
    ) -> None:
        if run.name == REGION_OUTAGE:
            run.outage = await self._outage(run, orchestrator, connector, vtime, rules, admin, rounds)
            return
        for index in range(rounds):
            step = await self._round(orchestrator, connector, vtime, index)
            run.rounds.append(step)
            if step.kind == "hang":
                break  # one hang is enough to fail; do not wait out every round

    async def _round(
        self, orchestrator: Orchestrator, connector: HostedAiConnector, vtime: VirtualTime, index: int
    ) -> Round:
        label, text = TEXTS[index % len(TEXTS)]
        slept_before = vtime.slept

        async def attempt() -> ProcessResult | BaseException:
            try:
                return await orchestrator.process(text)
            except Exception as exc:  # classified, never swallowed: a foreign type fails a check
                return exc

        started = time.monotonic()
        value: ProcessResult | BaseException | None
        try:
            value = await asyncio.wait_for(attempt(), self.budget_s)
        except TimeoutError:
            value = None
        wall = time.monotonic() - started
        kind, detail = classify(value)
        return Round(index, label, kind, detail, wall, vtime.slept - slept_before, connector.circuit_state)

    async def _outage(
        self,
        run: ScenarioRun,
        orchestrator: Orchestrator,
        connector: HostedAiConnector,
        vtime: VirtualTime,
        rules: list[FaultRule],
        admin: ControlPlane,
        rounds: int,
    ) -> Outage:
        """Rounds until well after the circuit opens, then past the outage and the recovery timeout."""
        outage = Outage()
        rounds = max(rounds, self.failure_threshold + 2)
        mark = 0
        for index in range(rounds):
            step = await self._round(orchestrator, connector, vtime, index)
            run.rounds.append(step)
            if step.kind == "hang":
                break
            if outage.opened_after_round is not None:
                outage.rounds_while_open.append(step)
            elif step.circuit is CircuitState.OPEN:
                outage.opened_after_round = index
                mark = max((int(e["seq"]) for e in await admin.journal()), default=0)
        if outage.opened_after_round is None:
            return outage
        # Clean-up (listing by label, releasing) rightly bypasses an open circuit; work must not.
        work = [e for e in await admin.journal(since_seq=mark) if e["operation"] not in ("list", "release")]
        outage.requests_while_open = len(work)
        windows = [window[1] for r in rules if (window := r.get("window_s"))]
        now = float((await admin.state())["clock"]["now_s"])
        if not windows:
            outage.problem = "the scenario's rules have no window, so the outage never ends"
            return outage
        await admin.advance(max(0.0, max(windows) - now) + 1.0)
        vtime.advance(connector.breaker.recovery_timeout_s + 1.0)
        outage.recovery = await self._round(orchestrator, connector, vtime, len(run.rounds))
        run.rounds.append(outage.recovery)
        outage.state_after_recovery = connector.circuit_state
        return outage

    # ---- the checks --------------------------------------------------------------------------------

    def _retry_check(
        self, prefix: str, run: ScenarioRun, allocates: list[JournalEntry], config: HostedAiConfig
    ) -> CheckResult:
        """Judged from the mock's journal of allocates and the backoffs the connector took."""
        name = f"{prefix}: retries bounded and spaced as configured"
        allowed = self.max_retries + 1
        problems: list[str] = []
        attempts = Counter(entry.get("idempotency_key") for entry in allocates)
        if None in attempts:
            problems.append(f"{attempts.pop(None)} allocate(s) sent without an Idempotency-Key")
        for key, count in sorted(attempts.items(), key=lambda kv: -kv[1]):
            if count > allowed:
                statuses = [e.get("status") for e in allocates if e.get("idempotency_key") == key]
                problems.append(
                    f"allocate Idempotency-Key {key} was tried {count} times (statuses {statuses}); at most "
                    f"{allowed} allowed (max_retries {self.max_retries} + 1)"
                )
        bands = _backoff_bands(config)
        cap = config.retry.retry_after_cap_secs
        honoured = sorted({min(ra, cap) for ra in run.retry_afters})
        for delay in run.delays:
            if delay > cap + _EPS or delay < 0:
                problems.append(f"a backoff of {delay:.3f} s is outside [0, {cap:g}] s (the Retry-After cap)")
            elif not any(abs(delay - ra) <= _EPS for ra in honoured) and not any(
                low - _EPS <= delay <= high + _EPS for low, high in bands
            ):
                problems.append(
                    f"a backoff of {delay:.3f} s is neither a Retry-After the server sent "
                    f"({', '.join(f'{ra:g}' for ra in honoured) or 'none'}) nor within the jitter band of "
                    + "/".join(f"{(low + high) / 2 * 1000:.0f}" for low, high in bands)
                    + " ms"
                )
        if run.retries_counted != len(run.delays):
            problems.append(
                f"the connector counted {run.retries_counted} retries (hosted_ai_retries_total) but backed off "
                f"{len(run.delays)} times: a retry without a backoff, or a backoff without a retry"
            )
        summary = (
            f"{len(attempts)} allocate key(s), at most {max(attempts.values(), default=0)} attempt(s) each; "
            f"{len(run.delays)} backoff(s): {', '.join(f'{d:.3f}' for d in run.delays[:20])}"
            + (" …" if len(run.delays) > 20 else "")
        )
        if problems:
            return CheckResult(name, "failed", message="\n".join([*problems, summary]))
        return CheckResult(name, "passed", message=summary)

    def _typed_check(self, prefix: str, run: ScenarioRun) -> CheckResult:
        name = f"{prefix}: failures are typed errors or honest fallbacks"
        bad = [r for r in run.rounds if r.kind in ("foreign", "dishonest")]
        tally = _tally(run.rounds)
        if bad:
            message = "\n".join([*(r.describe() for r in bad), f"outcomes: {tally}"])
            return CheckResult(name, "failed", message=message)
        return CheckResult(name, "passed", message=f"outcomes: {tally}")

    def _hang_check(self, prefix: str, run: ScenarioRun) -> CheckResult:
        name = f"{prefix}: no call outlives its timeouts"
        budget = self.budget_s
        over = [r for r in run.rounds if r.kind == "hang" or r.wall_s > budget or r.wall_s + r.slept_s > budget]
        worst_wall = max((r.wall_s for r in run.rounds), default=0.0)
        worst_total = max((r.wall_s + r.slept_s for r in run.rounds), default=0.0)
        summary = (
            f"budget {budget:g} s (allocation {self.allocation_timeout_secs:g} + inference "
            f"{self.inference_timeout_secs:g} + slack {self.slack_s:g}); slowest round {worst_wall * 1000:.0f} ms "
            f"wall, {worst_total:.2f} s counting the backoff it would really have slept"
        )
        duration = sum(r.wall_s for r in run.rounds)
        if over:
            return CheckResult(name, "failed", duration, "\n".join([*(r.describe() for r in over), summary]))
        return CheckResult(name, "passed", duration, summary)

    def _circuit_check(self, prefix: str, outage: Outage) -> CheckResult:
        name = f"{prefix}: circuit opens and recovers"
        problems: list[str] = []
        if outage.opened_after_round is None:
            problems.append(f"the circuit never opened (failure_threshold {self.failure_threshold})")
        else:
            if not outage.rounds_while_open:
                problems.append("no round ran while the circuit was open")
            not_fallback = [r for r in outage.rounds_while_open if r.kind != "fallback"]
            problems += [f"while open, not a fallback: {r.describe()}" for r in not_fallback]
            if outage.requests_while_open:
                problems.append(f"{outage.requests_while_open} request(s) reached HostedAI while the circuit was open")
            if outage.problem:
                problems.append(outage.problem)
            elif outage.recovery is None:
                problems.append("the recovery round did not run")
            else:
                if outage.recovery.kind != "ok":
                    problems.append(f"after the outage and the recovery timeout: {outage.recovery.describe()}")
                if outage.state_after_recovery is not CircuitState.CLOSED:
                    state = outage.state_after_recovery.name if outage.state_after_recovery else "unknown"
                    problems.append(f"the circuit is {state} after a successful request, not CLOSED")
        if problems:
            return CheckResult(name, "failed", message="\n".join(problems))
        assert outage.recovery is not None
        return CheckResult(
            name,
            "passed",
            message=(
                f"opened after round {outage.opened_after_round}; {len(outage.rounds_while_open)} fallback(s) with no "
                f"request to HostedAI; recovered: {outage.recovery.detail}"
            ),
        )


def _backoff_bands(config: HostedAiConfig) -> list[tuple[float, float]]:
    """[low, high] of each backoff step the config allows, jitter included: retry n (0-based) waits
    base × 2ⁿ capped at max_delay, so 100, 200, 400 ms with max_retries 3 (800 ms from max_retries 4)."""
    retry = config.retry
    bands: list[tuple[float, float]] = []
    for n in range(max(1, config.max_retries)):
        step = min(retry.base_delay_ms * 2**n, retry.max_delay_ms) / 1000
        band = (step * (1 - retry.jitter), step * (1 + retry.jitter))
        if band not in bands:
            bands.append(band)
    return bands


def _tally(rounds: list[Round]) -> str:
    counts: Counter[str] = Counter()
    for r in rounds:
        counts[r.detail.split(":", 1)[0] if r.kind == "error" else r.kind] += 1
    return ", ".join(f"{n} {what}" for what, n in counts.most_common()) or "no rounds"


def _retry_after_tracer(seen: set[float]) -> aiohttp.TraceConfig:
    """Remembers every Retry-After the server sends, so a backoff can be matched to one."""

    async def on_request_end(
        session: aiohttp.ClientSession, context: types.SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        value = params.response.headers.get("Retry-After")
        if value is not None:
            with contextlib.suppress(ValueError):
                seen.add(float(value))

    tracer = aiohttp.TraceConfig()
    tracer.on_request_end.append(on_request_end)
    return tracer


__all__ = ["ChaosSuite", "VirtualTime", "classify", "default_model_classes"]
