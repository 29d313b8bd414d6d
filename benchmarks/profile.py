"""Where a request's microseconds go: the inference path, layer by layer, written to docs/profile.md.

    python -m benchmarks.profile                 # rewrites docs/profile.md
    python -m benchmarks.profile --no-write --seconds 4

Two runs of the mock at its default settings (manual clock, INFO access log to a file), each driven
by wrk like `make bench`'s inference section (server on CPU 0, wrk on CPU 1, loopback only):

1. unprofiled: the server's CPU time per request (all threads, from /proc), the figure that counts;
2. under cProfile (stdlib): each layer's cumulative time per request. cProfile slows small calls more
   than large ones, so its absolute times are inflated; each layer's *share* of the profiled request is
   kept and applied to the unprofiled CPU per request. The µs column is therefore an estimate, good to
   about a quarter, and the shares say where the next microsecond is to be won.
"""

from __future__ import annotations

import argparse
import pstats
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.run import (
    PROMPT,
    ROOT,
    ServerUrl,
    _post,
    _timed_round,
    free_port,
    machine,
    mock_argv,
    server,
    wrk,
)

DOC = ROOT / "docs" / "profile.md"
CONNECTIONS = 32

# (label, [(file suffix, function)] whose cumulative times add up to the layer, [the same] to subtract:
# the layers nested inside it that have rows of their own).
Fn = tuple[str, str]
LAYERS: list[tuple[str, list[Fn], list[Fn]]] = [
    (
        "HTTP parsing (aiohttp's protocol, before the handler)",
        [("aiohttp/web_protocol.py", "data_received")],
        [],
    ),
    (
        "routing, request object, middleware chain (aiohttp)",
        [("aiohttp/web_app.py", "_handle")],
        [("mock_server/serving.py", "guard")],
    ),
    (
        "connection guard (busy mark, body deadline)",
        [("mock_server/serving.py", "guard")],
        [("mock_server/api/app.py", "request_middleware")],
    ),
    (
        "request id, journal, request metrics (request middleware)",
        [("mock_server/api/app.py", "request_middleware")],
        [("mock_server/api/app.py", "endpoint")],
    ),
    ("auth, body parse, contract validation (`read_call`)", [("mock_server/api/inputs.py", "read_call")], []),
    (
        "fault rules (target, decide before and after, shape)",
        [
            ("mock_server/api/faults.py", "target"),
            ("mock_server/sim/faults.py", "decide"),
            ("mock_server/api/faults.py", "shape_answer"),
        ],
        [],
    ),
    ("simulator: check, length, text (`start_inference`)", [("mock_server/sim/simulator.py", "start_inference")], []),
    (
        # On the manual clock a plain answer is submitted, projected and taken off its model server in
        # one call (`answer_at_once`); a stream, or the real clock, goes through submit and project.
        "simulator: on the model server (`answer_at_once`, or `submit_inference` + `project_inference`)",
        [
            ("mock_server/sim/simulator.py", "answer_at_once"),
            ("mock_server/sim/simulator.py", "submit_inference"),
            ("mock_server/sim/simulator.py", "project_inference"),
        ],
        [],
    ),
    ("simulator: settle, bill (`finish_inference`)", [("mock_server/sim/simulator.py", "finish_inference")], []),
    (
        "answer document and its JSON (render, orjson, Response)",
        [("mock_server/api/render.py", "inference"), ("mock_server/api/inference.py", "_json")],
        [],
    ),
    ("inference metrics, dashboard window (`observe`)", [("mock_server/api/inference.py", "observe")], []),
    (
        "writing the response (aiohttp, the socket)",
        [("aiohttp/web_protocol.py", "finish_response")],
        [("aiohttp/web_protocol.py", "log_access")],
    ),
    ("access log line (`AccessLog.log`)", [("aiohttp/web_protocol.py", "log_access")], []),
]


@dataclass
class Row:
    label: str
    share: float
    """Of the profiled CPU per request."""
    us: float
    """The share applied to the unprofiled CPU per request."""


@dataclass
class Profile:
    rps: float
    cpu_us: float
    requests_profiled: int
    profiled_us: float
    rows: list[Row]


def _cumulative(stats: pstats.Stats, fns: list[Fn]) -> float:
    total = 0.0
    table = stats.stats  # type: ignore[attr-defined]
    for (filename, _, name), (_, _, _, cumtime, _) in table.items():
        if any(filename.endswith(suffix) and name == fn for suffix, fn in fns):
            total += cumtime
    return total


def _own(stats: pstats.Stats, fn: str) -> float:
    """Time spent in a built-in method `fn` itself (such as epoll's `poll`: the loop waiting)."""
    table = stats.stats  # type: ignore[attr-defined]
    return sum(v[2] for (_, _, name), v in table.items() if fn in name and "epoll" in name)


def _calls(stats: pstats.Stats, suffix: str, fn: str) -> int:
    table = stats.stats  # type: ignore[attr-defined]
    return sum(v[1] for (filename, _, name), v in table.items() if filename.endswith(suffix) and name == fn)


def _allocate(url: ServerUrl) -> dict[str, object]:
    alloc = _post(
        url,
        "/v1/allocate",
        {"pool_id": "gpu-pool-2", "requirements": {"tflops": 5, "vram_mb": 2048, "model": "gemma-270m"}},
    )
    return {"allocation_id": alloc["allocation_id"], "prompt": PROMPT, "max_tokens": 16, "temperature": 0.7}


def measure(seconds: int) -> Profile:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        with server(mock_argv(port, log_level="INFO"), port, log=Path(tmp) / "plain.log") as url:
            body = _allocate(url)
            wrk(url, "/v1/inference", body, 1, CONNECTIONS)
            rps, cpu_us, _ = _timed_round(url, body, seconds, CONNECTIONS)
        port = free_port()
        out = Path(tmp) / "mock.prof"
        argv = ["-m", "cProfile", "-o", str(out), *mock_argv(port, log_level="INFO")]
        with server(argv, port, log=Path(tmp) / "profiled.log", wait_s=30) as url:
            body = _allocate(url)
            wrk(url, "/v1/inference", body, seconds, CONNECTIONS)
        stats = pstats.Stats(str(out))
    requests = _calls(stats, "mock_server/api/handlers.py", "create_inference")
    per_request = {label: (_cumulative(stats, add) - _cumulative(stats, sub)) / requests for label, add, sub in LAYERS}
    handled = sum(per_request.values())
    # The event loop's busy time (start-up and the waits in epoll left out). cProfile sees the main
    # thread only: the log-writing thread's share is in the unprofiled figure, not in the shares.
    busy = _cumulative(stats, [("asyncio/base_events.py", "_run_once")]) - _own(stats, "poll")
    total = busy / requests
    per_request["event loop, callbacks, timers, the rest"] = max(0.0, total - handled)
    rows = [Row(label, t / total, t / total * cpu_us) for label, t in per_request.items()]
    return Profile(rps, cpu_us, requests, total * 1e6, rows)


def render(p: Profile, seconds: int) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Where an inference request's time goes",
        "",
        f"`python -m benchmarks.profile --seconds {seconds}` ({when}, {machine()}). The mock at its default",
        "settings (manual clock, request validation, auth, journal, metrics, INFO access log to a file)",
        f"answering `POST /v1/inference` to wrk ({CONNECTIONS} connections, server on CPU 0, wrk on CPU 1).",
        f"Unprofiled: **{p.rps:,.0f} req/s, {p.cpu_us:.0f} µs of server CPU per request** (all threads).",
        f"Under cProfile ({p.requests_profiled:,} requests, {p.profiled_us:.0f} µs each, inflated by the profiler),",
        "each layer's share of a request; the µs column applies that share to the unprofiled CPU per",
        "request, so it is an estimate (cProfile slows many small calls more than a few large ones). The method is in",
        "`benchmarks/profile.py`.",
        "",
        "| layer | share | ≈ µs per request |",
        "|---|---|---|",
    ]
    for row in p.rows:
        lines.append(f"| {row.label} | {row.share:.1%} | {row.us:.0f} |")
    lines += [
        f"| **total** | 100% | **{p.cpu_us:.0f}** |",
        "",
        "How to read it: the simulator's three rows are the work (what the mock is for); everything else is",
        "the price of serving it over HTTP with validation, faults, metrics and logs. The bare aiohttp",
        "handler of `make bench` (a fixed body, nothing read) needs the HTTP parsing, routing and response",
        "rows alone.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("--seconds", type=int, default=8, help="wrk's run in each of the two runs")
    parser.add_argument("--no-write", action="store_true", help="print instead of writing docs/profile.md")
    args = parser.parse_args(argv)
    text = render(measure(args.seconds), args.seconds)
    if args.no_write:
        print(text)
    else:
        DOC.write_text(text)
        print(f"benchmarks: wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
