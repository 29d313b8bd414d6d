"""`hostedai-mock calibrate TRACE -o profile.yaml`: fit, report the held-out errors, write the profiles.

Exit 0 when at least one cell was calibrated and written; 2 when none could be (a bad trace, a config
that does not know the trace's GPU types or models, too few samples everywhere): one line on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from mock_server.calibrate.fit import CellFit, calibrate, library
from mock_server.calibrate.observations import TraceError, read
from mock_server.config import MockConfig

PROG = "hostedai-mock calibrate"


def table(fits: list[CellFit]) -> str:
    rows = [("cell", "profile", "inferences", "held-out error (observed → mock)")]
    for fit in fits:
        if fit.refused is not None:
            rows.append((f"{fit.gpu_type} × {fit.model}", "-", str(fit.samples), f"refused: {fit.refused}"))
            continue
        errors = "; ".join(
            f"{key} {observed:.4g} → {predicted:.4g} ({fit.error(key):+.1%})"
            for key, (observed, predicted) in fit.held_out.items()
        )
        rows.append((f"{fit.gpu_type} × {fit.model}", fit.profile_name or "-", str(fit.samples), errors))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)), row[3]]) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in [*widths, len(rows[0][3])]))
    return "\n".join(lines)


def run(trace_path: str, out: str, config: MockConfig, min_samples: int) -> int:
    try:
        trace = read(trace_path)
    except TraceError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    fits = calibrate(trace, config, min_samples)
    print(table(fits))
    written = [fit for fit in fits if fit.profile is not None]
    if not written:
        print(f"{PROG}: error: no cell of the trace could be calibrated (see the table)", file=sys.stderr)
        return 2

    try:
        Path(out).write_text(yaml.safe_dump(library(fits, trace.header), sort_keys=False, width=120), "utf-8")
    except OSError as exc:
        print(f"{PROG}: error: -o {out}: cannot write it ({exc.strerror or exc})", file=sys.stderr)
        return 2
    print(f"\nprofiles: {out} ({', '.join(f.profile_name or '' for f in written)}); serve them with --profile {out}")
    return 0
