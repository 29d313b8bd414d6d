"""The request journal: every public request and its outcome, in a bounded ring buffer.

What a test reads to check "the client retried exactly 3 times" or "the client never called release".
Entries are deterministic given the seed and the request sequence, except `duration_ms` (wall clock).
Control-plane requests (`/_admin`) are not recorded: observing the mock should not change what it saw.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from typing import Any

from mock_server.sim.faults import Decision

# operationId -> the operation name of journal entries and fault rules.
OPERATION_NAMES = {
    "createAllocation": "allocate",
    "listAllocations": "list",
    "getAllocation": "status",
    "releaseAllocation": "release",
    "createInference": "inference",
    "listPools": "pools",
    "getPool": "pools",
    "listModels": "models",
    "getUsage": "usage",
    "getHealth": "health",
    "getMetrics": "metrics",
    "getOpenApiYaml": "openapi",
    "getOpenApiJson": "openapi",
}


def operation_name(operation_id: str | None) -> str:
    if operation_id is None:
        return "unmatched"
    return OPERATION_NAMES.get(operation_id, "admin" if operation_id.startswith("admin") else operation_id)


@dataclass(slots=True)
class Outcome:
    """What the request handling learnt, for the journal: filled in as the request goes."""

    tenant_id: str | None = None
    allocation_id: str | None = None
    idempotency_key: str | None = None
    fault: Decision | None = None
    status_sent: bool = True
    """False when a fault cut the connection before any status line (reset, empty, hang)."""


# An entry's fields, in the order an entry is kept (a tuple: recording is on every request's path, and
# a tuple costs a fraction of a dict; entries become dicts only when somebody reads them).
FIELDS = (
    "seq",
    "request_id",
    "operation",
    "method",
    "path",
    "tenant_id",
    "status",
    "fault_id",
    "fault_action",
    "allocation_id",
    "idempotency_key",
    "at",
    "duration_ms",
)
_SEQ, _OPERATION, _TENANT, _STATUS, _ALLOCATION = (
    FIELDS.index(f) for f in ("seq", "operation", "tenant_id", "status", "allocation_id")
)
_AT, _DURATION = FIELDS.index("at"), FIELDS.index("duration_ms")
Entry = tuple[Any, ...]


def _as_dict(entry: Entry) -> dict[str, Any]:
    found = dict(zip(FIELDS, entry, strict=True))
    found["at"] = round(entry[_AT], 6)
    found["duration_ms"] = round(entry[_DURATION], 3)
    return found


class Journal:
    def __init__(self, size: int) -> None:
        self._entries: deque[Entry] = deque(maxlen=size)
        self._seq = 0

    def __len__(self) -> int:
        return len(self._entries)

    def record(
        self,
        *,
        request_id: str,
        operation: str,
        method: str,
        path: str,
        status: int | None,
        outcome: Outcome,
        at: float,
        duration_ms: float,
    ) -> None:
        self._seq += 1
        fault = outcome.fault
        self._entries.append(
            (
                self._seq,
                request_id,
                operation,
                method,
                path,
                outcome.tenant_id,
                status if outcome.status_sent else None,
                fault.rule.id if fault is not None else None,
                fault.kind if fault is not None else None,
                outcome.allocation_id,
                outcome.idempotency_key,
                at,
                duration_ms,
            )
        )

    def query(
        self,
        *,
        operation: str | None = None,
        status: int | None = None,
        tenant_id: str | None = None,
        allocation_id: str | None = None,
        since_seq: int = 0,
        limit: int | None = None,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """A page of at most `limit` matching entries after `since_seq` (None: all), oldest first, and
        the `since_seq` of the next page (None when nothing more matches)."""
        found: list[dict[str, Any]] = []
        entries = self._entries
        # Sequence numbers are consecutive in the buffer: start at the first entry after the mark.
        start = max(0, since_seq - entries[0][_SEQ] + 1) if entries else 0
        for i in range(start, len(entries)):
            e = entries[i]
            if (
                (operation is None or e[_OPERATION] == operation)
                and (status is None or e[_STATUS] == status)
                and (tenant_id is None or e[_TENANT] == tenant_id)
                and (allocation_id is None or e[_ALLOCATION] == allocation_id)
            ):
                if len(found) == limit:
                    return found, found[-1]["seq"]
                found.append(_as_dict(e))
        return found, None

    def tail(
        self, limit: int, *, operation: str | None = None, status: int | None = None, tenant_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The newest `limit` matching entries, newest first: O(limit) when most entries match."""
        found = (
            e
            for e in reversed(self._entries)
            if (operation is None or e[_OPERATION] == operation)
            and (status is None or e[_STATUS] == status)
            and (tenant_id is None or e[_TENANT] == tenant_id)
        )
        return [_as_dict(e) for e in itertools.islice(found, limit)]

    def clear(self) -> None:
        """Forget the entries; sequence numbers keep counting, so a mark taken earlier stays valid."""
        self._entries.clear()

    def restart(self) -> None:
        self._entries.clear()
        self._seq = 0
