"""The usage judge, table-tested: `totals` are the same on every page of `/v1/usage` and equal the
records of all pages (on a target the run owns), or are at least them (elsewhere older detail may be
gone)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.suites.contract.judges import usage_totals
from harness.suites.contract.probes import Evidence, Exchange


def _record(tflops_seconds: float, tokens: int = 1) -> dict[str, Any]:
    return {
        "tflops_seconds": tflops_seconds,
        "vram_mb_seconds": tflops_seconds * 100,
        "prompt_tokens": tokens,
        "completion_tokens": tokens,
        "cost": tflops_seconds / 1000,
    }


def _totals(*records: dict[str, Any]) -> dict[str, Any]:
    keys = ("tflops_seconds", "vram_mb_seconds", "prompt_tokens", "completion_tokens", "cost")
    return {"allocations": len(records), **{k: sum(r[k] for r in records) for k in keys}}


def _page(label: str, records: list[dict[str, Any]], totals: dict[str, Any], cursor: str | None) -> Exchange:
    body = {"tenant_id": "dev", "records": records, "totals": totals, "next_cursor": cursor}
    return Exchange(label, "GET", "/v1/usage", {}, status=200, text=json.dumps(body))


def _evidence(owned: bool, *pages: Exchange) -> Evidence:
    return Evidence(
        base_url="http://127.0.0.1:1", key_env="KEY", owned=owned, idempotency_key=True, exchanges=list(pages)
    )


ONE, TWO, THREE = _record(10), _record(20), _record(30)
ALL = _totals(ONE, TWO, THREE)


@pytest.mark.parametrize(
    ("owned", "pages", "outcome"),
    [
        (True, [("usage", [ONE, TWO], ALL, "c2"), ("usage:page2", [THREE], ALL, None)], "passed"),
        (True, [("usage", [ONE, TWO, THREE], ALL, None)], "passed"),
        # A page short: the records of the pages read sum to less than the totals.
        (True, [("usage", [ONE, TWO], ALL, None)], "failed"),
        # The totals change from one page to the next.
        (True, [("usage", [ONE, TWO], ALL, "c2"), ("usage:page2", [THREE], _totals(ONE), None)], "failed"),
        # A target the run does not own may have dropped old detail: less is allowed, more is not.
        (False, [("usage", [ONE, TWO], ALL, None)], "passed"),
        (False, [("usage", [ONE, TWO, THREE, THREE], ALL, None)], "failed"),
    ],
    ids=["two-pages", "one-page", "page-missing", "totals-differ", "live-detail-dropped", "live-over-totals"],
)
def test_usage_totals(
    owned: bool, pages: list[tuple[str, list[Any], dict[str, Any], str | None]], outcome: str
) -> None:
    evidence = _evidence(owned, *(_page(*page) for page in pages))
    assert usage_totals(evidence).outcome == outcome


def test_without_the_usage_probe_the_check_is_skipped() -> None:
    assert usage_totals(_evidence(True)).outcome == "skipped"
