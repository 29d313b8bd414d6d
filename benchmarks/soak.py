"""A soak: does the mock's memory stay flat however long it runs?

    python -m benchmarks.soak                 # both parts; rewrites its section of docs/benchmarks.md
    python -m benchmarks.soak --points 20000,100000 --hours 2 --no-write

Both parts drive `hostedai-mock` as a program, over HTTP (the same code paths as any client: parsing,
validation, journal, metrics, the simulator), at its default settings but for the manual clock, with
wrk running `benchmarks/cycle.lua`: allocate → infer → release, every allocate carrying a fresh
`Idempotency-Key`, a label holding it and a 300 s lease, as Harpoon's orchestrator sends them (the
lease lets the allocations a stopped wrk leaves held expire, as they would for a crashed client).
While wrk runs, the manual clock is moved one simulated second per 1,000 cycles completed (through
`/_admin/clock/advance`), so the traffic is 1,000 cycles per simulated second.

- cycles: RSS when 20,000, 100,000 and 1,000,000 cycles are done. Target: growth ≤ 32 MiB from the
  first point to the last.
- day: a fresh server through 24 simulated hours. Each hour opens with a burst of wrk at 1,000 cycles per
  simulated second (by default 30 real seconds, tens of thousands of cycles: more than every store
  bounded by count holds, so each is turned over), then the clock is advanced through the rest of the
  hour in one-minute steps, so everything bounded by time (retention, idempotency keys, leases) is
  swept on schedule and the usage aggregates get their hourly entries. RSS after each hour and the
  peak (VmHWM) against the memory limit `deploy/k8s/mock.yaml` gives the mock. Running every second of
  the day at 1,000 cycles (86.4 million cycles) would take this machine more than a day; what a dense
  day would add beyond these bursts is more turnover of stores that are already full.

The server is pinned to CPU 0 and wrk to CPU 1, on 127.0.0.1; every wrk run is bounded in time and the
cycle count is read from the mock's own metrics.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from benchmarks.hostile import write_section
from benchmarks.run import HERE, ROOT, ServerUrl, _pin, free_port, machine, mock_argv, server

ADMIN = {"X-Admin-Token": "dev-admin"}  # the packaged default's token, on loopback
CYCLES_PER_SIM_S = 1000
GROWTH_TARGET_MIB = 32.0
_RELEASES = re.compile(r'hostedai_sim_http_requests_total\{operation="releaseAllocation",status="204"\} ([\d.e+]+)')
_CREATED = re.compile(r'^hostedai_sim_allocations_total\{[^}]*outcome="created"[^}]*\} ([\d.e+]+)', re.M)


def _get(url: str, headers: dict[str, str] | None = None) -> bytes:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=60) as resp:
        body: bytes = resp.read()
        return body


def _advance(url: str, seconds: float) -> None:
    request = urllib.request.Request(
        f"{url}/_admin/clock/advance",
        data=json.dumps({"seconds": seconds}).encode(),
        headers={**ADMIN, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        resp.read()


def cycles_done(url: str) -> int:
    found = _RELEASES.search(_get(f"{url}/metrics").decode())
    return int(float(found.group(1))) if found else 0


def allocations_created(url: str) -> int:
    return sum(int(float(n)) for n in _CREATED.findall(_get(f"{url}/metrics").decode()))


def memory_mib(pid: int) -> tuple[float, float]:
    """Resident and peak resident (VmRSS, VmHWM) MiB of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss, hwm = (int(re.search(rf"{k}:\s+(\d+)", status).group(1)) for k in ("VmRSS", "VmHWM"))  # type: ignore[union-attr]
    return rss / 1024, hwm / 1024


def k8s_memory_limit_mib() -> float:
    docs = yaml.safe_load_all((ROOT / "deploy" / "k8s" / "mock.yaml").read_text())
    deployment = next(d for d in docs if d and d["kind"] == "Deployment")
    limit = str(deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"])
    units = {"Mi": 1.0, "Gi": 1024.0, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi|M|G)", limit).groups()  # type: ignore[union-attr]
    return float(number) * units[unit]


class ClockDriver:
    """Moves the manual clock one simulated second per `CYCLES_PER_SIM_S` cycles completed, while running."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.cycles = cycles_done(url)
        self.advanced_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ClockDriver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self.step()

    def step(self) -> int:
        done = cycles_done(self.url)
        seconds = (done - self.cycles) / CYCLES_PER_SIM_S
        if seconds > 0:
            _advance(self.url, seconds)
            self.advanced_s += seconds
            self.cycles = done
        return done

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.step()


@contextmanager
def wrk_cycles(url: str, seconds: float, connections: int = 32) -> Any:
    """wrk running allocate → infer → release cycles (with idempotency keys) for at most `seconds`."""
    command = [*_pin(1), "wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "-s", str(HERE / "cycle.lua"), url]
    env = {"CYCLE_POOL": "gpu-pool-1", "CYCLE_IDEMPOTENCY": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        out, _ = proc.communicate(timeout=60)
        found = re.search(r"UNEXPECTED (\d+)", out or "")
        if found and int(found.group(1)):
            raise SystemExit(f"benchmarks.soak: the mock gave {found.group(1)} unexpected answers:\n{out}")


# ---- the two parts -----------------------------------------------------------------------------------


@dataclass
class Point:
    cycles: int
    rss_mib: float
    seconds: float


def cycles_part(points: list[int], max_seconds: float) -> tuple[list[Point], ServerUrl]:
    measured: list[Point] = []
    port = free_port()
    with server(mock_argv(port, "--log-level", "INFO"), port, log=Path("/dev/null")) as url:
        started = time.monotonic()
        with ClockDriver(url) as clock, wrk_cycles(url, max_seconds) as wrk:
            for target in points:
                while (done := clock.cycles) < target:
                    if wrk.poll() is not None:
                        raise SystemExit(f"benchmarks.soak: wrk stopped after {done:,} cycles, before {target:,}")
                    time.sleep(0.2)
                measured.append(Point(done, memory_mib(url.pid)[0], time.monotonic() - started))
                print(f"soak: {done:,} cycles, RSS {measured[-1].rss_mib:.1f} MiB", file=sys.stderr, flush=True)
    return measured, url


@dataclass
class Day:
    hours: list[tuple[int, float]] = field(default_factory=list)
    """(cycles so far, RSS MiB) at the end of each simulated hour."""
    peak_mib: float = 0.0
    simulated_s: float = 0.0
    usage_allocations: int = 0
    created: int = 0
    usage_page_bytes: int = 0


def day_part(hours: int, burst_seconds: float) -> Day:
    day = Day()
    port = free_port()
    with server(mock_argv(port, "--log-level", "INFO"), port, log=Path("/dev/null")) as url:
        for hour in range(hours):
            with ClockDriver(url) as clock, wrk_cycles(url, burst_seconds) as wrk:
                wrk.wait(timeout=burst_seconds + 60)
            rest = 3600.0 * (hour + 1) - day.simulated_s - clock.advanced_s
            day.simulated_s += clock.advanced_s
            steps = max(1, round(rest / 60))
            for _ in range(steps):
                _advance(url, rest / steps)
            day.simulated_s += rest
            rss, day.peak_mib = memory_mib(url.pid)
            day.hours.append((clock.cycles, rss))
            print(f"soak: hour {hour + 1}, {clock.cycles:,} cycles, RSS {rss:.1f} MiB", file=sys.stderr, flush=True)
        usage = json.loads(_get(f"{url}/v1/usage", {"Authorization": "Bearer dev-key"}))
        day.usage_page_bytes = len(json.dumps(usage))
        day.usage_allocations = usage["totals"]["allocations"]
        day.created = allocations_created(url)
    return day


# ---- the report --------------------------------------------------------------------------------------


def section(points: list[Point], day: Day | None, command: str, burst_seconds: float) -> str:
    lines = [
        "<!-- kept: soak -->",
        "## Soak: memory over a million cycles and a simulated day",
        "",
        f"`{command}` ({datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, {machine()}): `hostedai-mock` as a",
        "program at its default settings (manual clock, INFO logging to /dev/null) driven over HTTP by wrk",
        "with `benchmarks/cycle.lua`, allocate → infer → release, each allocate with a fresh `Idempotency-Key`,",
        "a label holding it and a 300 s lease (as Harpoon sends them), 32 connections; the manual clock moved one",
        f"simulated second per {CYCLES_PER_SIM_S:,} cycles. The method is in `benchmarks/soak.py`.",
        "",
    ]
    if points:
        growth = points[-1].rss_mib - points[0].rss_mib
        verdict = "met" if growth <= GROWTH_TARGET_MIB else f"missed by {growth - GROWTH_TARGET_MIB:.1f} MiB"
        lines += [
            "| cycles | RSS (MiB) | growth since the first point (MiB) | real time (s) |",
            "|---|---|---|---|",
            *(
                f"| {p.cycles:,} | {p.rss_mib:.1f} | {p.rss_mib - points[0].rss_mib:+.1f} | {p.seconds:.0f} |"
                for p in points
            ),
            "",
            f"Growth from {points[0].cycles:,} to {points[-1].cycles:,} cycles: **{growth:+.1f} MiB**; target ≤ "
            f"{GROWTH_TARGET_MIB:.0f} MiB: {verdict}. (Before bounded memory, 100,000 cycles took RSS from 101 to",
            "314 MiB, about 2.2 KB a cycle.)",
            "",
        ]
    if day is not None:
        limit = k8s_memory_limit_mib()
        verdict = "met" if day.peak_mib <= limit else f"missed by {day.peak_mib - limit:.0f} MiB"
        rss = [r for _, r in day.hours]
        lines += [
            f"A simulated day: {len(day.hours)} hours ({day.simulated_s / 3600:.1f} simulated hours in all), each",
            f"opening with {burst_seconds:g} real seconds of wrk at {CYCLES_PER_SIM_S:,} cycles per simulated second,",
            "then the rest of the hour advanced in one-minute steps; a fresh server. RSS after each hour (MiB): "
            + ", ".join(f"{r:.0f}" for r in rss)
            + ".",
            "",
            "| cycles | RSS after hour 1 / last (MiB) | peak RSS, VmHWM (MiB) | k8s memory limit (MiB) | target |",
            "|---|---|---|---|---|",
            f"| {day.hours[-1][0]:,} | {rss[0]:.1f} / {rss[-1]:.1f} | {day.peak_mib:.1f} | {limit:.0f} "
            f"| peak ≤ limit: {verdict} |",
            "",
            f"`/v1/usage` after the day: `totals.allocations` = {day.usage_allocations:,}, the allocations the mock",
            f"counted as created = {day.created:,}"
            + (" (equal)" if day.usage_allocations == day.created else " (NOT equal)")
            + f"; its first page is {day.usage_page_bytes / 1024:.0f} KB (paginated: at most 1,000 records).",
            "",
        ]
    lines += ["<!-- /kept: soak -->", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", default="20000,100000,1000000", help="cycle counts to read RSS at")
    parser.add_argument("--max-seconds", type=float, default=7200, help="bound on the cycles part's wrk run")
    parser.add_argument("--hours", type=int, default=24, help="simulated hours of the day part (0: skip it)")
    parser.add_argument("--burst-seconds", type=float, default=30, help="real seconds of wrk per simulated hour")
    parser.add_argument("--no-write", action="store_true", help="print instead of writing docs/benchmarks.md")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("benchmarks.soak: error: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    points = sorted(int(p) for p in args.points.split(",") if p) if args.points else []
    measured = cycles_part(points, args.max_seconds)[0] if points else []
    day = day_part(args.hours, args.burst_seconds) if args.hours else None
    changed = [
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "no_write" and v != parser.get_default(k)
    ]
    text = section(measured, day, " ".join(["python -m benchmarks.soak", *changed]), args.burst_seconds)
    print(text)
    if not args.no_write:
        write_section(text, "soak")
    ok = (not measured or measured[-1].rss_mib - measured[0].rss_mib <= GROWTH_TARGET_MIB) and (
        day is None or day.peak_mib <= k8s_memory_limit_mib()
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
