"""The locust side every locustfile here shares: the command-line options, the allocation ledger and the
clean-up that leaves nothing allocated, the SIM rows, and the SLO gate.

Imported by locustfile.py, harpoon_locustfile.py and shapes.py; Python imports it once per process, so
its listeners are registered once however many of those files `-f` names.

Nothing stays allocated, in layers:

1. a session releases its allocation in `finally`, also when the run stops in the middle of it (locust
   kills the user's greenlet; `finally` still runs);
2. `on_stop` releases whatever the user still holds (a release that failed is tried again);
3. once the users have stopped (`test_stop`) and again on `quitting`, this process releases what its
   ledger still holds and every active allocation carrying its labels — which catches an allocate
   whose answer never arrived (the user was stopped, or the connection died, after the server had
   allocated);
4. every allocation has a lease (`--alloc-ttl`), so the server ends it even if this process dies.

From `test_stopping` on no session starts, and running ones skip their remaining inferences.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlencode

import gevent
import gevent.ssl
from _shapes import SHAPES
from _slo import LATENCY, TOTAL, RowStats, Slo, SloError, evaluate, load_slo, render_table, report, write_report
from locust import events
from locust.contrib.fasthttp import FastHttpSession
from locust.env import Environment
from locust.event import EventHook
from locust.runners import LocalRunner, WorkerRunner
from locust.stats import StatsEntry, calculate_response_time_percentile

logger = logging.getLogger("loadtests")

HERE = Path(__file__).resolve().parent
DEFAULT_SLO = HERE / "slo.yaml"
API_KEY_ENV = "HOSTED_AI_API_KEY"
DEFAULT_API_KEY = "dev-key"
RUN_LABEL = "loadtest_run"
PROCESS_LABEL = "loadtest_process"
SIM = "SIM"
SHAPE_CLASS = "NamedShape"
_SWEEP_PAGES = 20


API_KEYS_ENV = "HOSTED_AI_API_KEYS"


def api_key() -> str:
    return os.environ.get(API_KEY_ENV) or DEFAULT_API_KEY


def api_keys() -> list[str]:
    """The keys the users take in turn: `HOSTED_AI_API_KEYS` (comma-separated), else `HOSTED_AI_API_KEY`.
    Several tenants' keys are how one run loads several cells behind a router that sends each key to
    one cell (docs/cells.md)."""
    listed = [key.strip() for key in os.environ.get(API_KEYS_ENV, "").split(",") if key.strip()]
    return listed or [api_key()]


def ssl_context_factory(options: argparse.Namespace | None) -> Callable[[], Any]:
    """TLS is always verified; `--ca-bundle` adds a private CA."""
    cafile = getattr(options, "ca_bundle", None)
    return lambda: gevent.ssl.create_default_context(cafile=cafile)


# ---- options ----------------------------------------------------------------------------------------


@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_kw: Any) -> None:
    hidden = {"include_in_web_ui": False}
    parser.add_argument("--shape", choices=sorted(SHAPES), help="load shape (needs loadtests/shapes.py in -f)")
    parser.add_argument("--slo-file", default=str(DEFAULT_SLO), help="SLO gates (default: loadtests/slo.yaml)")
    parser.add_argument("--slo-report", help="also write the SLO verdict as JSON here", **hidden)
    parser.add_argument("--pool", default="gpu-pool-1", help="HostedAI pool to allocate on", **hidden)
    parser.add_argument(
        "--max-allocations", type=int, default=0, help="stop after this many allocations (0: no limit)", **hidden
    )
    parser.add_argument("--alloc-ttl", type=int, default=600, help="lease of every allocation, seconds", **hidden)
    parser.add_argument("--run-id", help="value of the loadtest_run label (default: random)", **hidden)
    parser.add_argument("--workload-seed", type=int, default=0, help="seed of every workload choice", **hidden)
    parser.add_argument("--ca-bundle", help="PEM file of CAs to trust (TLS is always verified)", **hidden)


# ---- state of this process ----------------------------------------------------------------------------


@dataclass(slots=True)
class RunState:
    process: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    stopping: bool = False
    started: int = 0
    """Sessions that began an allocate, in this process."""
    held: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Allocation id → id() of the user holding it, and the key it was allocated with (its tenant's)."""
    stop_requested: bool = False
    slo: Slo | None = None
    verdict: str | None = None

    def hold(self, allocation_id: str, owner: object, key: str) -> None:
        self.held[allocation_id] = (id(owner), key)

    def released(self, allocation_id: str) -> None:
        self.held.pop(allocation_id, None)

    def held_by(self, owner: object) -> list[str]:
        return [a for a, (o, _) in self.held.items() if o == id(owner)]


STATE = RunState()


def labels(options: argparse.Namespace) -> dict[str, str]:
    return {RUN_LABEL: options.run_id, PROCESS_LABEL: STATE.process}


def begin_session(environment: Environment) -> bool:
    """May a new session allocate? Not once the run is stopping, nor past `--max-allocations`."""
    if STATE.stopping:
        return False
    budget = environment.parsed_options.max_allocations if environment.parsed_options else 0
    if budget and STATE.started >= budget:
        _stop_for_budget(environment, budget)
        return False
    STATE.started += 1
    return True


def _stop_for_budget(environment: Environment, budget: int) -> None:
    if STATE.stop_requested:
        return
    STATE.stop_requested = True
    logger.warning("--max-allocations %d reached: no more sessions; stopping the run", budget)
    runner = environment.runner
    if isinstance(runner, LocalRunner):
        headless = bool(environment.parsed_options and environment.parsed_options.headless)
        gevent.spawn(runner.quit if headless else runner.stop)


def record_timings(environment: Environment, timings: dict[str, Any]) -> None:
    """The server's own timings as `SIM` rows beside the wire latency in locust's stats."""
    for name in ("ttft_ms", "queue_ms"):
        environment.events.request.fire(
            request_type=SIM,
            name=name,
            response_time=float(timings[name]),
            response_length=0,
            exception=None,
            context={},
        )


RATE_LIMITED = " [429 honoured]"
"""Suffix of the row a 429 with a valid Retry-After goes to: the target asked to slow down, and did so
by its contract; that is not a failure, and it is kept out of the latency and error figures."""
RETRY_AFTER_CAP_S = 30.0


def honour_rate_limit(answer: Any) -> float | None:
    """For a 429 that says when to come back: record it in its own row as a success and return how long
    to wait (capped); None for any other answer. A 429 without a usable Retry-After stays a failure."""
    if answer.status_code != 429:
        return None
    try:
        wait = float(answer.headers.get("Retry-After", ""))
    except ValueError:
        return None
    answer.request_meta["name"] = f"{answer.request_meta['name']}{RATE_LIMITED}"
    answer.success()
    return min(max(0.0, wait), RETRY_AFTER_CAP_S)


def record_figure(environment: Environment, name: str, value: float) -> None:
    """A figure the system under test reported about one request (not a wire request) as a `SIM` row:
    locust keeps its exact mean, and its percentiles rounded like any response time."""
    environment.events.request.fire(
        request_type=SIM, name=name, response_time=float(value), response_length=0, exception=None, context={}
    )


def describe(response: Any) -> str:
    """A failed answer in one line: the status and the problem's `code`, or the connection error."""
    if not response.status_code:
        return f"no answer: {response.error!r}"
    code = ""
    with contextlib.suppress(ValueError, KeyError, TypeError):
        code = str(json.loads(response.text or "")["code"])
    return f"{response.status_code} {code}".rstrip()


# ---- lifecycle ------------------------------------------------------------------------------------------


def _usage_error(message: str) -> NoReturn:
    """Bad options: one line on stderr and exit code 2, as every command of the kit."""
    print(f"locust (loadtests): error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


@events.init.add_listener
def _on_init(environment: Environment, **_kw: Any) -> None:
    options = environment.parsed_options
    if options is None:
        return
    if not options.run_id:
        options.run_id = f"lt-{uuid.uuid4().hex[:12]}"
    if options.worker:
        return  # the master checks the options and judges the run
    ours = type(environment.shape_class).__name__ == SHAPE_CLASS
    if options.headless and not environment.host:
        _usage_error("--host is required: the base URL of HostedAI (or of harpoon-service)")
    if options.shape and not ours:
        _usage_error("--shape needs the shapes: -f loadtests/locustfile.py,loadtests/shapes.py")
    if ours and not options.shape:
        _usage_error(f"loadtests/shapes.py needs --shape NAME ({', '.join(sorted(SHAPES))})")
    try:
        STATE.slo = load_slo(options.slo_file)
    except SloError as exc:
        _usage_error(str(exc))


@events.test_start.add_listener
def _on_test_start(**_kw: Any) -> None:
    STATE.stopping = False


@events.test_stopping.add_listener
def _on_test_stopping(**_kw: Any) -> None:
    STATE.stopping = True


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_kw: Any) -> None:
    sweep(environment)


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_kw: Any) -> None:
    if isinstance(environment.runner, LocalRunner):
        # Quitting on a signal (SIGTERM, Ctrl-C) comes while users still run: stop them first, so their
        # sessions release what they hold and the verdict counts every request. A no-op after `-t`.
        environment.runner.stop()
    sweep(environment)
    if STATE.slo is None or isinstance(environment.runner, WorkerRunner):
        return
    options = environment.parsed_options
    ran = {cls.__name__ for cls in environment.user_classes}
    rows = wire_rows(environment)
    results = evaluate(STATE.slo.gates(ran), rows)
    exceptions = sum(e["count"] for e in environment.runner.exceptions.values()) if environment.runner else 0
    verdict = report(results, STATE.slo.path, rows[TOTAL], exceptions, rate_limited(environment))
    STATE.verdict = render_table(results, STATE.slo.path)
    if exceptions:
        STATE.verdict += f"\n{exceptions} unhandled exception(s) in tasks: the run fails (see the log above)"
    if options is not None and options.slo_report:
        write_report(Path(options.slo_report), verdict)
    environment.process_exit_code = 0 if verdict["ok"] else 1


@events.quit.add_listener
def _on_quit(**_kw: Any) -> None:
    # After locust's own summary, so the verdict is the last thing a person reads.
    if STATE.verdict:
        print(f"\n{STATE.verdict}", flush=True)


# ---- the clean-up sweep -----------------------------------------------------------------------------


def sweep(environment: Environment) -> None:
    """Release what this process may still hold: its ledger, and its labelled active allocations."""
    if not STATE.started or not environment.host or environment.parsed_options is None:
        return
    session = FastHttpSession(
        base_url=environment.host,
        request_event=EventHook(),  # clean-up is not part of the measured load
        user=None,
        insecure=False,
        ssl_context_factory=ssl_context_factory(environment.parsed_options),
        network_timeout=10.0,
        connection_timeout=5.0,
    )
    # Allocation id → the key that may release it: the ledger's, then each key's labelled allocations
    # (a tenant lists only its own).
    pending = {allocation_id: key for allocation_id, (_, key) in STATE.held.items()}
    for key in api_keys():
        try:
            found = _labelled_active(session, _bearer(key), environment.parsed_options)
            pending.update(dict.fromkeys(found, key))
        except _SweepError as exc:
            logger.error("clean-up: cannot list this run's allocations: %s", exc)
    released = 0
    for allocation_id, key in pending.items():
        answer = session.request("DELETE", f"/v1/allocate/{allocation_id}", headers=_bearer(key))
        if answer.status_code in (204, 404):
            STATE.released(allocation_id)
            released += answer.status_code == 204
        else:
            logger.error("clean-up: releasing %s failed: %s", allocation_id, describe(answer))
    if released:
        logger.info("clean-up: released %d allocation(s) still held when the users stopped", released)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class _SweepError(Exception):
    pass


def _labelled_active(session: FastHttpSession, headers: dict[str, str], options: argparse.Namespace) -> Iterator[str]:
    query: list[tuple[str, str]] = [("state", "active"), ("limit", "500")]
    query += [("label", f"{k}={v}") for k, v in labels(options).items()]
    cursor: str | None = None
    for _ in range(_SWEEP_PAGES):
        page = query + ([("cursor", cursor)] if cursor else [])
        answer = session.request("GET", f"/v1/allocate?{urlencode(page)}", headers=headers)
        if answer.status_code != 200:
            raise _SweepError(describe(answer))
        try:
            body = answer.json()
            ids = [str(a["allocation_id"]) for a in body["allocations"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise _SweepError(f"unreadable list: {exc!r}") from None
        yield from ids
        cursor = body.get("next_cursor")
        if not cursor:
            return


# ---- stats → SLO rows -----------------------------------------------------------------------------------


def wire_rows(environment: Environment) -> dict[str, RowStats]:
    """Every row of locust's stats as `<type> <name>`, plus `total`: every non-SIM request together."""
    stats = environment.stats
    rows: dict[str, RowStats] = {}
    wire: list[StatsEntry] = []
    for (name, method), entry in stats.entries.items():
        rows[f"{method} {name}"] = _row(entry.num_requests, entry.num_failures, entry.total_rps, entry.response_times)
        if method != SIM and not name.endswith(RATE_LIMITED):
            wire.append(entry)
    times: dict[int, int] = {}
    for entry in wire:
        for ms, count in entry.response_times.items():
            times[ms] = times.get(ms, 0) + count
    requests = sum(e.num_requests for e in wire)
    elapsed = (stats.last_request_timestamp or 0) - (stats.start_time or 0)
    rows[TOTAL] = _row(requests, sum(e.num_failures for e in wire), requests / elapsed if elapsed > 0 else 0.0, times)
    return rows


def rate_limited(environment: Environment) -> int:
    """429s the run honoured (their own rows, out of the total)."""
    return sum(e.num_requests for (name, _), e in environment.stats.entries.items() if name.endswith(RATE_LIMITED))


def _row(requests: int, failures: int, rps: float, times: dict[int, int]) -> RowStats:
    samples = sum(times.values())
    percentiles = {
        p: float(calculate_response_time_percentile(times, samples, p)) if samples else 0.0 for p in LATENCY.values()
    }
    return RowStats(requests, failures, float(rps), percentiles)
