"""Benchmarks of the mock server, each figure a ratio to a baseline measured in the same run.

    python -m benchmarks.run            # all, rewrites docs/benchmarks.md
    python -m benchmarks.run --rounds 3 --seconds 2

Inference throughput: the mock's `POST /v1/inference` (manual clock, so nothing sleeps; request
validation on) against `benchmarks/minimal_server.py`, a bare aiohttp JSON handler. Each server runs in
its own process pinned to CPU 0, wrk (Debian's package) drives it from CPU 1, all on 127.0.0.1. Rounds
alternate baseline and mock; the reported ratio is the median of the per-round ratios, so drift in the
machine's speed during the run cancels out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
API_KEY = "dev-key"
PROMPT = "Summarise the integration guide in one short sentence, please."


class BenchmarkError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


@contextmanager
def server(argv: list[str], port: int) -> Iterator[str]:
    proc = subprocess.Popen(
        [*_pin(0), sys.executable, *argv], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                if proc.poll() is not None:
                    stderr = proc.stderr.read().decode() if proc.stderr else ""
                    raise BenchmarkError(f"server {argv} exited: {stderr}") from None
                time.sleep(0.05)
        else:
            raise BenchmarkError(f"server {argv} did not listen on {port}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _post(url: str, path: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        result: dict[str, object] = json.load(resp)
        return result


@dataclass
class WrkResult:
    rps: float
    p99_ms: float


def wrk(url: str, path: str, body: dict[str, object], seconds: int, connections: int) -> WrkResult:
    script = f"""
wrk.method = "POST"
wrk.body = [[{json.dumps(body)}]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {API_KEY}"
"""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            [*_pin(1), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", f.name, url + path],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 30,
        ).stdout
    finally:
        os.unlink(f.name)
    if "Non-2xx" in out or "Socket errors" in out:
        raise BenchmarkError(f"wrk saw errors against {url}{path}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    return WrkResult(rps, p99_ms)


@dataclass
class Comparison:
    name: str
    baseline_rps: list[float]
    subject_rps: list[float]

    @property
    def ratios(self) -> list[float]:
        return [s / b for s, b in zip(self.subject_rps, self.baseline_rps, strict=True)]

    @property
    def median_ratio(self) -> float:
        return statistics.median(self.ratios)


def inference_throughput(rounds: int, seconds: int, connections: int, strict: bool) -> Comparison:
    base_port, mock_port = free_port(), free_port()
    mock_argv = ["-m", "mock_server", "--port", str(mock_port), "--clock", "manual", "--log-level", "WARNING"]
    if strict:
        mock_argv.append("--strict")
    name = "inference, strict (requests and responses validated)" if strict else "inference (requests validated)"
    result = Comparison(name, [], [])
    with (
        server(["-m", "benchmarks.minimal_server", str(base_port)], base_port) as base,
        server(mock_argv, mock_port) as mock,
    ):
        alloc = _post(
            mock,
            "/v1/allocate",
            {"pool_id": "gpu-pool-2", "requirements": {"tflops": 5, "vram_mb": 2048, "model": "gemma-270m"}},
        )
        body = {"allocation_id": alloc["allocation_id"], "prompt": PROMPT, "max_tokens": 16, "temperature": 0.7}
        # Warm both up, so the first round measures neither import nor first-request costs.
        wrk(base, "/v1/inference", body, 1, connections)
        wrk(mock, "/v1/inference", body, 1, connections)
        for _ in range(rounds):
            result.baseline_rps.append(wrk(base, "/v1/inference", body, seconds, connections).rps)
            result.subject_rps.append(wrk(mock, "/v1/inference", body, seconds, connections).rps)
    return result


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.machine()}"
    )


def write_report(comparisons: list[Comparison], args: argparse.Namespace) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Every figure is a ratio to a baseline measured in the same run, on the same machine, so it holds",
        "across machines better than a raw number would. Regenerate with `make bench`",
        "(`python -m benchmarks.run`); the method is in `benchmarks/run.py`.",
        "",
        f"Last run: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} on {machine()};",
        f"{args.rounds} alternating rounds of {args.seconds} s, wrk with 1 thread and {args.connections}",
        "connections,",
        "server pinned to CPU 0 and wrk to CPU 1, all on 127.0.0.1.",
        "",
        "## Inference path throughput against a minimal aiohttp handler",
        "",
        "The mock answers `POST /v1/inference` on the manual clock (nothing sleeps), validating each request",
        "against the OpenAPI contract. The baseline (`benchmarks/minimal_server.py`) parses the JSON body and",
        "answers a fixed JSON document. Target: a median ratio of at least 0.5.",
        "",
        "| path | baseline req/s (median) | mock req/s (median) | per-round ratios | median ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        ratios = ", ".join(f"{r:.2f}" for r in c.ratios)
        verdict = "met" if c.median_ratio >= 0.5 else f"missed by {0.5 - c.median_ratio:.2f}"
        lines.append(
            f"| {c.name} | {statistics.median(c.baseline_rps):.0f} | {statistics.median(c.subject_rps):.0f} "
            f"| {ratios} | **{c.median_ratio:.2f}** | ≥ 0.5: {verdict} |"
        )
    lines += [
        "",
        "Where the mock's extra time goes (cProfile of the server under this load, 2026-11-27): of roughly",
        "two baseline requests' worth of time per request, the simulator (`start_inference` +",
        "`finish_inference`: lookup, text generation, latency plan) takes about 55 µs (timed in-process), request",
        "validation and parsing (orjson, one compiled jsonschema-rs validator) roughly 20 µs and prometheus-client's",
        "histograms and counters roughly 20 µs (cProfile shares, so approximate); the rest is aiohttp's routing,",
        "middleware and response machinery. Strict mode adds one compiled validation of each response.",
        "Per-round ratios vary by about ±0.07 on this shared 2-core machine, hence the median of alternating",
        "rounds.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--no-write", action="store_true", help="print the report instead of writing docs/benchmarks.md"
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("benchmarks: error: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    comparisons = [
        inference_throughput(args.rounds, args.seconds, args.connections, strict=False),
        inference_throughput(args.rounds, args.seconds, args.connections, strict=True),
    ]
    report = write_report(comparisons, args)
    if args.no_write:
        print(report)
    else:
        DOCS.parent.mkdir(exist_ok=True)
        DOCS.write_text(report)
        print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
