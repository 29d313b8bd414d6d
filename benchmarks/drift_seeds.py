"""The mock against itself: drift must find nothing between two mocks of one config.

For each seed N: a mock process (`--clock real --time-scale 0.01 --seed 1000+N`) stands in for the live
service and is recorded with the default probe (`--seed N`); drift replays the probe against a fresh
mock process and judges. Prints each run's verdict, then over all runs how many timing comparisons KS
alone would have called certain and the largest p50/p99 shift: the figures docs/drift.md quotes.

    python -m benchmarks.drift_seeds --seeds 20
"""

from __future__ import annotations

import argparse
import asyncio

from harness.drift.commands import judge, record, replay
from harness.drift.compare import Thresholds, relative_shift, timing_samples
from harness.drift.probe import ProbePlan
from harness.drift.stats import ks_2samp
from harness.report import suite_verdict
from harness.target import mock_process

LIVE = ["--clock", "real", "--time-scale", "0.01"]


async def run(seeds: int) -> int:
    thresholds = Thresholds()
    clean, certain, shifts = 0, 0, []
    for seed in range(seeds):
        async with mock_process(1000 + seed, LIVE) as live:
            recording = await record(live, ProbePlan(), seed)
        replayed = await replay(recording.trace, None)
        result = judge(recording.trace, replayed, thresholds, 0.0)
        verdict = suite_verdict(result)
        clean += verdict == "PASS"
        ours, theirs = timing_samples(recording.records), timing_samples(replayed.records)
        keys = sorted(ours.keys() & theirs.keys())
        for key in keys:
            ks = ks_2samp(ours[key], theirs[key])
            certain += ks.statistic >= thresholds.max_ks and ks.pvalue < thresholds.alpha / len(keys)
            shifts.append(max(abs(relative_shift(ours[key], theirs[key], q)) for q in (50, 99)))
        failed = [c.name for c in result.checks if c.outcome == "failed"]
        print(
            f"seed {seed}: {verdict} ({len(result.checks)} checks{'; drifted: ' + ', '.join(failed) if failed else ''})"
        )
    shifts.sort()
    print(
        f"\n{clean} of {seeds} runs found no drift; {len(shifts)} timing comparisons, {certain} certain by KS alone; "
        f"largest p50/p99 shift {shifts[-1]:.1%}, 95th percentile {shifts[int(0.95 * len(shifts))]:.1%}"
    )
    return 0 if clean == seeds else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    return asyncio.run(run(parser.parse_args().seeds))


if __name__ == "__main__":
    raise SystemExit(main())
