"""`hostedai-harness`: is our HostedAI integration correct and resilient?

    hostedai-harness verify                      every suite against the embedded mock (offline)
    hostedai-harness contract --target URL       one suite against a live HostedAI
    hostedai-harness stateful --seed 7 --examples 100

Exit codes: 0 every check passed, 1 a check failed, 2 a usage or configuration error (one line).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

from harness.argparsing import OneLineParser
from harness.report import failures_text, summary_table, write_reports
from harness.suites.base import RunOptions, Stopwatch, Suite, SuiteResult, Target
from harness.target import TargetError, embedded_mock, url_target

PROG = "hostedai-harness"


# suite name -> "module:class"; imported only when run, since each pulls in heavy dependencies
# (schemathesis, hypothesis, the orchestrator).
SUITES = {
    "contract": "harness.suites.contract:ContractSuite",
    "stateful": "harness.suites.stateful:StatefulSuite",
    "chaos": "harness.suites.chaos:ChaosSuite",
    "load": "harness.suites.load:LoadSuite",
}


def make_suite(name: str) -> Suite:
    module, cls = SUITES[name].split(":")
    factory: Callable[[], Suite] = getattr(importlib.import_module(module), cls)
    return factory()


VERIFY_ORDER = ("contract", "stateful", "chaos", "load")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG, description="Contract, stateful, chaos and load suites for HostedAI integrations."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    helps = {
        "verify": "every suite against the embedded mock: the main job",
        "contract": "schemathesis over contracts/hostedai.v1.yaml",
        "stateful": "a hypothesis state machine driving the real connector",
        "chaos": "the orchestrator through every fault scenario of the mock",
        "load": "the locust load test with its SLO gates",
    }
    for name, text in helps.items():
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("--target", default="mock", help="`mock` (default: the embedded mock) or a base URL")
        cmd.add_argument("--api-key-env", default="HOSTED_AI_API_KEY", help="variable holding the API key")
        cmd.add_argument("--second-api-key-env", help="variable holding another tenant's key (isolation checks)")
        cmd.add_argument("--admin-token-env", help="variable holding a remote mock's admin token")
        cmd.add_argument("--ca-bundle", help="PEM file of CAs to trust (private CA)")
        cmd.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
        cmd.add_argument("--examples", type=_positive, default=25, help="depth: examples per operation (default 25)")
        cmd.add_argument("--report-dir", type=Path, help="write junit.xml, summary.json and report.md here")
        cmd.add_argument(
            "--max-allocations", type=_positive, default=20, help="live targets: most allocations a run takes"
        )
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def _command_line(args: argparse.Namespace) -> str:
    parts = [PROG]
    if args.target != "mock":
        parts += ["--target", args.target]
    return " ".join(parts)


async def _run_one(name: str, args: argparse.Namespace, options: RunOptions) -> tuple[SuiteResult, Target | None]:
    suite = make_suite(name)
    watch = Stopwatch()
    if args.target == "mock":
        async with embedded_mock(args.seed) as target:
            result = await suite.run(target, options)
    else:
        target = url_target(
            args.target,
            api_key_env=args.api_key_env,
            second_api_key_env=args.second_api_key_env,
            admin_token_env=args.admin_token_env,
            ca_bundle=args.ca_bundle,
        )
        if suite.needs_control_plane and not target.has_control_plane:
            reason = "needs the mock's control plane, which a live HostedAI does not have"
            return SuiteResult(name, skipped_reason=reason), target
        result = await suite.run(target, options)
    result.duration_s = result.duration_s or watch.elapsed
    result.replay = result.replay or f"--seed {args.seed} --examples {args.examples}"
    return result, target


async def _run(args: argparse.Namespace) -> int:
    names = VERIFY_ORDER if args.command == "verify" else (args.command,)
    if args.command == "verify" and args.target != "mock":
        print(
            f"{PROG}: error: verify runs against the embedded mock; name one suite to test {args.target}",
            file=sys.stderr,
        )
        return 2
    options = RunOptions(
        seed=args.seed, examples=args.examples, report_dir=args.report_dir, max_allocations=args.max_allocations
    )
    results: list[SuiteResult] = []
    target: Target | None = None
    for name in names:
        print(f"running {name} …", flush=True)
        result, used = await _run_one(name, args, options)
        target = used or target
        results.append(result)
    print()
    print(summary_table(results))
    command = _command_line(args)
    details = failures_text(results, command)
    if details:
        print()
        print(details)
    if args.report_dir is not None and target is not None:
        for path in write_reports(results, args.report_dir, target, command):
            print(f"report: {path}")
    ok = all(r.ok for r in results)
    print(f"\n{'PASSED' if ok else 'FAILED'} (seed {args.seed}, examples {args.examples})")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except TargetError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
