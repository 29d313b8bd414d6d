"""`hostedai-harness record` and `hostedai-harness drift`: their flags, and how their results are told.

    hostedai-harness record --target URL --out trace.jsonl       the probe against a live HostedAI
    hostedai-harness drift --trace trace.jsonl [--config FILE]   the mock's replay against that trace
    hostedai-harness drift --target URL                          both in one go

Exit codes as every command of the harness: `record` 0 when the trace is written; `drift` 0 when no
drift was found, 1 when some was, 2 when it could not decide (a bad flag, an unreadable or foreign
trace, a target that cannot be reached or rejects the key, nothing comparable): one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from pathlib import Path
from typing import Any

from harness.argparsing import fraction, whole_number
from harness.drift.commands import Recording, drift, judge, record, replay, write_trace
from harness.drift.compare import Thresholds
from harness.drift.probe import ProbePlan
from harness.drift.trace import TraceError, read_trace, target_host
from harness.report import report_dir, tell, verdict
from harness.suites.base import Stopwatch, SuiteResult
from harness.target import Target, TargetError, ca_bundle_path, url_target

PROG = "hostedai-harness"
DRIFT_COMMANDS = ("record", "drift")
_DEFAULT = Thresholds()


def add_drift_commands(sub: Any) -> None:
    text = "run the probe script against a HostedAI URL and write its trace (JSON lines)"
    rec = sub.add_parser("record", help=text, description=text)
    _target_flags(rec, required=True)
    rec.add_argument("--out", required=True, help="the trace file to write")
    text = "compare a trace of a live HostedAI with the mock's replay of the same probe"
    cmd = sub.add_parser("drift", help=text, description=text)
    source = cmd.add_mutually_exclusive_group(required=True)
    source.add_argument("--trace", help="a trace written by `record`")
    source.add_argument("--target", help="record this URL first (record + drift in one go)")
    _target_flags(cmd, required=False)
    cmd.add_argument("--out", help="with --target: keep the trace recorded here")
    cmd.add_argument("--config", help="the mock's YAML config to replay against (default: its packaged one)")
    cmd.add_argument("--profile", help="serving profiles to replay with (a file of `hostedai-mock calibrate`)")
    cmd.add_argument(
        "--alpha",
        type=fraction(0.0, 1.0),
        default=_DEFAULT.alpha,
        help=f"false-alarm rate over all timing comparisons (default {_DEFAULT.alpha:g})",
    )
    cmd.add_argument(
        "--max-ks",
        type=fraction(0.0, 1.0),
        default=_DEFAULT.max_ks,
        help=f"the smallest KS distance counted as timing drift (default {_DEFAULT.max_ks:g})",
    )
    cmd.add_argument(
        "--min-shift",
        type=fraction(0.0, 10.0),
        default=_DEFAULT.min_shift,
        help=f"the smallest relative change of a timing's p50 or p99 counted as drift (default {_DEFAULT.min_shift:g})",
    )
    cmd.add_argument(
        "--min-samples",
        type=whole_number(2),
        default=_DEFAULT.min_samples,
        help=f"timing samples needed on each side to judge (default {_DEFAULT.min_samples})",
    )
    cmd.add_argument("--report-dir", help="write junit.xml, summary.json and report.md here")


def _target_flags(cmd: argparse.ArgumentParser, *, required: bool) -> None:
    if required:
        cmd.add_argument("--target", required=True, help="the HostedAI base URL")
    cmd.add_argument("--api-key-env", default="HOSTED_AI_API_KEY", help="variable holding the API key")
    cmd.add_argument("--ca-bundle", help="PEM file of CAs to trust (private CA); TLS is always verified")
    cmd.add_argument("--seed", type=whole_number(0), default=0, help="seed of the probe's prompts (default 0)")
    plan = ProbePlan()
    cmd.add_argument(
        "--max-allocations",
        type=whole_number(1),
        default=plan.max_allocations,
        help=f"the most allocations the probe takes, every one released (default {plan.max_allocations})",
    )
    cmd.add_argument(
        "--cycles",
        type=whole_number(0),
        default=plan.cycles,
        help=f"allocate → infer → release cycles, within --max-allocations (default {plan.cycles})",
    )
    cmd.add_argument(
        "--inferences",
        type=whole_number(1),
        default=plan.inferences,
        help=f"plain and streamed inferences per cycle, each (default {plan.inferences})",
    )
    cmd.add_argument(
        "--max-tokens",
        type=whole_number(1),
        default=plan.max_tokens,
        help=f"max_tokens of each inference (default {plan.max_tokens})",
    )
    cmd.add_argument("--pools", help="comma-separated pool ids to probe (default: every pool the key may use)")


def _plan(args: argparse.Namespace) -> ProbePlan:
    pools = tuple(p.strip() for p in args.pools.split(",") if p.strip()) if args.pools else None
    return ProbePlan(
        cycles=args.cycles,
        inferences=args.inferences,
        max_tokens=args.max_tokens,
        max_allocations=args.max_allocations,
        pools=pools,
    )


def _target(args: argparse.Namespace) -> Target:
    return url_target(args.target, api_key_env=args.api_key_env, ca_bundle=ca_bundle_path(args.ca_bundle))


def _out(value: str) -> Path:
    path = Path(value).expanduser().resolve()
    if not path.parent.is_dir():
        raise TargetError(f"--out {value}: no such directory {path.parent}")
    return path


def _config(value: str | None, flag: str = "--config") -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_file():
        raise TargetError(f"{flag} {value}: no such file")
    return path


async def _record(args: argparse.Namespace) -> int:
    out = _out(args.out)
    target = _target(args)
    print(f"recording {target_host(target.url)} …", flush=True)
    recording = await record(target, _plan(args), args.seed)
    write_trace(recording, out)
    _print_recording(recording, out)
    return 0


def _print_recording(recording: Recording, out: Path) -> None:
    statuses: dict[str, int] = {}
    for r in recording.records:
        key = str(r["status"]) if r["status"] is not None else "no answer"
        statuses[key] = statuses.get(key, 0) + 1
    tally = ", ".join(f"{status} ×{count}" for status, count in sorted(statuses.items()))
    print(
        f"trace: {out} ({len(recording.records)} requests: {tally}; "
        f"{recording.outcome.allocations} allocation(s), every one released)"
    )
    for note in recording.outcome.notes:
        print(f"note: {note}")


async def _drift(args: argparse.Namespace) -> int:
    thresholds = Thresholds(
        alpha=args.alpha, max_ks=args.max_ks, min_samples=args.min_samples, min_shift=args.min_shift
    )
    config = _config(args.config)
    profile = _config(args.profile, "--profile")
    reports = report_dir(args.report_dir)
    out = _out(args.out) if args.out else None  # a bad path is found before the live run, not after
    watch = Stopwatch()
    if args.trace is not None:
        trace = read_trace(args.trace)
        print(f"replaying the probe of {args.trace} against a mock …", flush=True)
        result = await drift(trace, config, thresholds, profile)
    else:
        target = _target(args)
        print(f"recording {target_host(target.url)} …", flush=True)
        recording = await record(target, _plan(args), args.seed)
        trace = recording.trace
        if out is not None:
            write_trace(recording, out)
            _print_recording(recording, out)
        print("replaying the same probe against a mock …", flush=True)
        replayed = await replay(trace, config, profile)
        result = judge(trace, replayed, thresholds, watch.elapsed)
    result.replay = _replay_command(args)
    label = f"{trace.header['target']} (trace) against the mock"
    return _tell([result], reports, label, int(trace.header["seed"]))


def _replay_command(args: argparse.Namespace) -> str:
    parts = [PROG, "drift", *(["--trace", args.trace] if args.trace else ["--target", args.target])]
    if args.config:
        parts += ["--config", args.config]
    if args.profile:
        parts += ["--profile", args.profile]
    for flag, value, default in (
        ("--alpha", args.alpha, _DEFAULT.alpha),
        ("--max-ks", args.max_ks, _DEFAULT.max_ks),
        ("--min-samples", args.min_samples, _DEFAULT.min_samples),
        ("--min-shift", args.min_shift, _DEFAULT.min_shift),
    ):
        if value != default:
            parts += [flag, str(value)]
    return shlex.join(parts)


def _tell(results: list[SuiteResult], report_dir: Path | None, label: str, seed: int) -> int:
    """Printed and reported as the suites are; the exit code follows the verdict."""
    target = Target(url="", api_key="", label=label)
    undecided = "nothing could be compared between the trace and the mock"
    return tell(results, report_dir, target, _last_line(results, seed), undecided)


def _last_line(results: list[SuiteResult], seed: int) -> str:
    """The verdict in drift's words: aspects alike, drifted, skipped."""
    alike = sum(r.count("passed") for r in results)
    drifted = sum(r.count("failed") for r in results)
    skipped = sum(r.count("skipped") for r in results)
    head = {"passed": "PASSED", "failed": "FAILED", "undecided": "UNDECIDED"}[verdict(results)]
    return f"{head}: {alike} aspects alike, {drifted} drifted, {skipped} skipped (seed {seed})"


def run_drift_command(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_record(args) if args.command == "record" else _drift(args))
    except (TargetError, TraceError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; what the probe held was released", file=sys.stderr)
        return 130
