"""`hostedai-harness`: is our HostedAI integration correct and resilient?

    hostedai-harness verify                      every suite against a mock process (offline)
    hostedai-harness contract --target URL       one suite against a live HostedAI
    hostedai-harness stateful --seed 7 --examples 100
    hostedai-harness record --target URL --out trace.jsonl      a probe's trace of a live HostedAI
    hostedai-harness drift --trace trace.jsonl                  the mock against that trace

Exit codes: 0 every check passed, 1 a check failed, 2 the run could not decide (a usage or
configuration error, a target that cannot be reached or rejects the key, a missing tool, nothing
checked): one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import shlex
import sys
from collections.abc import Callable

from harness.argparsing import OneLineParser
from harness.drift.cli import DRIFT_COMMANDS, add_drift_commands, run_drift_command
from harness.preflight import preflight
from harness.report import report_dir, summary_line, tell
from harness.suites.base import RunOptions, Stopwatch, Suite, SuiteResult
from harness.target import Target, TargetError, ca_bundle_path, mock_process, url_target

PROG = "hostedai-harness"

# suite name -> "module:class"; imported only when run, since each pulls in heavy dependencies
# (schemathesis, hypothesis, the orchestrator).
SUITES = {
    "contract": "harness.suites.contract:ContractSuite",
    "stateful": "harness.suites.stateful:StatefulSuite",
    "chaos": "harness.suites.chaos:ChaosSuite",
    "load": "harness.suites.load:LoadSuite",
}
# What each suite runs besides this package: checked before any suite starts.
REQUIRES = {"contract": ("schemathesis",), "stateful": ("hypothesis",), "chaos": (), "load": ("locust",)}
VERIFY_ORDER = ("contract", "stateful", "chaos", "load")
_DEFAULTS = {"api_key_env": "HOSTED_AI_API_KEY", "max_allocations": 20}


class MissingTool(Exception):
    """A suite's tool is not installed (one line)."""


def make_suite(name: str) -> Suite:
    for tool in REQUIRES[name]:
        if importlib.util.find_spec(tool) is None:
            raise MissingTool(
                f"the {name} suite needs {tool}, which is not installed here: pip install hostedai-testkit"
            )
    module, cls = SUITES[name].split(":")
    factory: Callable[[], Suite] = getattr(importlib.import_module(module), cls)
    return factory()


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG, description="Contract, stateful, chaos and load suites for HostedAI integrations."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    helps = {
        "verify": "every suite against a mock process started for the run: the main job",
        "contract": "schemathesis over contracts/hostedai.v1.yaml, and the behaviours a schema cannot express",
        "stateful": "a hypothesis state machine driving the real connector",
        "chaos": "the orchestrator through every fault scenario of the mock",
        "load": "the locust load test with its SLO gates",
    }
    for name, text in helps.items():
        cmd = sub.add_parser(name, help=text, description=text)
        target_help = (
            "`mock` only: verify starts its own mock process (to test a URL, run one suite with --target URL)"
            if name == "verify"
            else "`mock` (default: a mock process) or a base URL"
        )
        cmd.add_argument("--target", default="mock", help=target_help)
        cmd.add_argument(
            "--api-key-env",
            default=_DEFAULTS["api_key_env"],
            help=f"variable holding the API key (default {_DEFAULTS['api_key_env']})",
        )
        cmd.add_argument("--second-api-key-env", help="variable holding another tenant's key (isolation checks)")
        cmd.add_argument(
            "--admin-token-env",
            help="variable holding a mock's admin token, for a mock started elsewhere (none by default: a URL "
            "is treated as a live HostedAI, without a control plane)",
        )
        cmd.add_argument("--ca-bundle", help="PEM file of CAs to trust (private CA); TLS is always verified")
        cmd.add_argument(
            "--tls",
            action="store_true",
            help="--target mock: serve the mock process over HTTPS, with a CA made for the run that the run trusts",
        )
        cmd.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
        cmd.add_argument("--examples", type=_positive, default=25, help="depth: examples per operation (default 25)")
        cmd.add_argument("--report-dir", help="write junit.xml, summary.json and report.md here")
        cmd.add_argument(
            "--max-allocations",
            type=_positive,
            default=_DEFAULTS["max_allocations"],
            help="URL targets: the most allocations one suite takes (every one released)",
        )
        cmd.add_argument(
            "--no-idempotency-key",
            action="store_true",
            help="the target is known to ignore Idempotency-Key (HostedAI today): skip those checks",
        )
    add_drift_commands(sub)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def replay_command(suite: str, args: argparse.Namespace) -> str:
    """The command that replays one suite of this run, as it must be typed."""
    parts = [PROG, suite]
    if args.target != "mock":
        parts += ["--target", args.target]
        for flag, value in (
            ("--api-key-env", args.api_key_env if args.api_key_env != _DEFAULTS["api_key_env"] else None),
            ("--second-api-key-env", args.second_api_key_env),
            ("--admin-token-env", args.admin_token_env),
            ("--ca-bundle", args.ca_bundle),
            (
                "--max-allocations",
                args.max_allocations if args.max_allocations != _DEFAULTS["max_allocations"] else None,
            ),
        ):
            if value is not None:
                parts += [flag, str(value)]
        if args.no_idempotency_key:
            parts.append("--no-idempotency-key")
    elif args.tls:
        parts.append("--tls")
    parts += ["--seed", str(args.seed), "--examples", str(args.examples)]
    return shlex.join(parts)


async def _run_one(name: str, args: argparse.Namespace, options: RunOptions) -> tuple[SuiteResult, Target | None]:
    suite = make_suite(name)
    watch = Stopwatch()
    if args.target == "mock":
        async with mock_process(args.seed, tls=args.tls) as target:
            await preflight(target)
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
            reason = (
                "needs the mock's control plane (faults, clock), which a live HostedAI does not have; "
                "for a mock started elsewhere, name its admin token's variable with --admin-token-env"
            )
            return SuiteResult(name, skipped_reason=reason), target
        await preflight(target)
        result = await suite.run(target, options)
    result.duration_s = result.duration_s or watch.elapsed
    result.replay = replay_command(name, args)
    return result, target


async def _run(args: argparse.Namespace) -> int:
    names = VERIFY_ORDER if args.command == "verify" else (args.command,)
    if args.command == "verify" and args.target != "mock":
        raise TargetError(
            f"verify takes only --target mock (it starts its own mock process), not {args.target!r}; "
            "to test a URL, run one suite: hostedai-harness contract --target URL"
        )
    options = RunOptions(
        seed=args.seed,
        examples=args.examples,
        report_dir=report_dir(args.report_dir),
        max_allocations=args.max_allocations,
        idempotency_key=not args.no_idempotency_key,
    )
    if args.tls and args.target != "mock":
        raise TargetError("--tls is for --target mock; give a URL as https://… (and --ca-bundle for a private CA)")
    if args.ca_bundle is not None:
        ca_bundle_path(args.ca_bundle)  # a missing file is a usage error before anything starts
    for name in names:
        make_suite(name)  # a missing tool is found before any suite runs, not after the first
    results: list[SuiteResult] = []
    target: Target | None = None
    for name in names:
        print(f"running {name} …", flush=True)
        result, used = await _run_one(name, args, options)
        target = used or target
        results.append(result)
    return tell(
        results,
        options.report_dir,
        target,
        summary_line(results, args.seed, args.examples),
        f"nothing was checked: {_why_undecided(results)}",
    )


def _why_undecided(results: list[SuiteResult]) -> str:
    reasons = [f"{r.suite} {r.skipped_reason or 'ran no check'}" for r in results]
    return "; ".join(reasons)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in DRIFT_COMMANDS:
        return run_drift_command(args)
    try:
        return asyncio.run(_run(args))
    except (TargetError, MissingTool) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; what the run held was released", file=sys.stderr)
        return 130
