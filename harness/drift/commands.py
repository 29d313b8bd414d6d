"""The I/O of `record` and `drift`: run the probe against a target, write or read traces, replay against
a mock process. The judging is in `compare.py`; the CLI only parses flags and prints.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from harness.connector import ConnectorMetrics, HostedAiConfig, HostedAiConnector
from harness.drift.compare import Thresholds, compare, rate_limited
from harness.drift.probe import ProbeError, ProbeOutcome, ProbePlan, run_probe
from harness.drift.recorder import Recorder
from harness.drift.trace import Trace, TraceWriter, make_header
from harness.preflight import preflight, ssl_setting
from harness.suites.base import Stopwatch, SuiteResult
from harness.target import Target, TargetError, mock_process


@dataclass(slots=True)
class Recording:
    header: dict[str, Any]
    records: list[dict[str, Any]]
    outcome: ProbeOutcome = field(default_factory=ProbeOutcome)

    @property
    def trace(self) -> Trace:
        return Trace(self.header, self.records)


async def record(target: Target, plan: ProbePlan, seed: int) -> Recording:
    """The probe against `target` (checked first by preflight), through the real connector."""
    await preflight(target)
    recorder = Recorder()
    config = HostedAiConfig(base_url=target.url, api_key=target.api_key, ca_bundle=target.ca_bundle)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ssl_setting(target)), trace_configs=[recorder.trace_config()]
    ) as session:
        # Metrics of its own: the probe's counts are not the process's (and a second run must not clash).
        metrics = ConnectorMetrics(CollectorRegistry())
        connector = HostedAiConnector(config, session=session, metrics=metrics, rng=random.Random(seed))
        try:
            outcome = await run_probe(connector, recorder, plan, seed)
        except ProbeError as exc:
            raise TargetError(f"{target.url}: {exc}") from None
        finally:
            await connector.close()  # waits for the connector's own clean-ups, which are recorded too
    header = make_header(target_url=target.url, seed=seed, probe=plan.as_header())
    return Recording(header, recorder.records, outcome)


def write_trace(recording: Recording, out: Path) -> None:
    """Every line validated against the schema before the file is replaced."""
    partial = out.with_name(out.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as stream:
            writer = TraceWriter(stream, recording.header)
            writer.write_all(recording.records)
        partial.replace(out)
    except OSError as exc:
        raise TargetError(f"--out {out}: cannot write it ({exc.strerror or exc})") from None


REPLAY_TIME_SCALE = 0.01
"""The replay mock's clock: real time, a hundred times faster, so time passes between the probe's
requests as on a live service. (Chosen when the manual clock made each request after the first on an
allocation wait out a step its predecessor left in flight; that is fixed, and a bit-for-bit repeatable
manual-clock replay is the next step.) The timings the mock reports stay in simulated milliseconds."""


async def replay(trace: Trace, config: Path | None, profile: Path | None = None) -> Recording:
    """The trace's probe, with its seed, against a mock process started with `config` (and `profile`)."""
    extra = ["--clock", "real", "--time-scale", str(REPLAY_TIME_SCALE)]
    extra += ["--config", str(config)] if config is not None else []
    extra += ["--profile", str(profile)] if profile is not None else []
    plan = ProbePlan.from_header(trace.header["probe"])
    async with mock_process(int(trace.header["seed"]), extra) as target:
        return await record(target, plan, int(trace.header["seed"]))


def judge(trace: Trace, replayed: Recording, thresholds: Thresholds, duration_s: float) -> SuiteResult:
    live, mock = trace.records, replayed.records
    result = SuiteResult("drift", compare(live, mock, thresholds), duration_s=duration_s)
    result.notes.append(
        f"trace of {trace.header['target']} recorded {trace.header['recorded_at']} by {trace.header['tool']} "
        f"(seed {trace.header['seed']}): {len(live)} requests; the mock's replay: {len(mock)}"
    )
    limited = rate_limited(live)
    if limited:
        result.notes.append(f"{limited} request(s) of the trace were answered 429: left out of the comparison")
    result.notes += [f"replay: {note}" for note in replayed.outcome.notes]
    return result


async def drift(trace: Trace, config: Path | None, thresholds: Thresholds, profile: Path | None = None) -> SuiteResult:
    watch = Stopwatch()
    replayed = await replay(trace, config, profile)
    return judge(trace, replayed, thresholds, watch.elapsed)
