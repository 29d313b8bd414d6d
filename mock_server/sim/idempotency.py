"""Idempotency keys of allocate: the same key and body within the window replay the first answer.

A record maps (tenant, key) to the digest of the request body and the allocation it made; a replay
answers the allocation as it was first answered (active, never used), whatever happened to it since.
The same key with another body is a conflict. Records are kept for `ttl_s` simulated seconds and at
most `max_keys` of them per tenant (the tenant's oldest go first, so one tenant's flood of keys never
evicts another's): both bounds are the contract's guarantee (contracts/hostedai.v1.yaml,
docs/simulation.md), and they keep memory flat over a soak however many keys clients send.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, defaultdict
from dataclasses import dataclass

from mock_server.sim.errors import IdempotencyConflict
from mock_server.sim.model import Allocation, AllocationState


@dataclass(frozen=True, slots=True)
class _Record:
    fingerprint: str
    allocation: Allocation
    created_at: float


def as_first_answered(alloc: Allocation) -> Allocation:
    """The allocation as its allocate answered it: unused, its lease counted from creation, and active, or
    provisioning when it was not ready at once (its readiness time is part of what was answered)."""
    ready_later = alloc.ready_at is not None and alloc.ready_at > alloc.created_at
    return dataclasses.replace(
        alloc,
        state=AllocationState.PROVISIONING if ready_later else AllocationState.ACTIVE,
        ends_at=None,
        holds_capacity=True,
        ended_at=None,
        end_reason=None,
        preempted_by=None,
        last_used_at=alloc.created_at,
        inflight=0,
        prompt_tokens=0,
        completion_tokens=0,
        tokens_by_period=None,
        lease_queued=False,
    )


class IdempotencyStore:
    def __init__(self, ttl_s: float, max_keys: int) -> None:
        self._ttl_s = ttl_s
        self._max_keys = max_keys
        # Per tenant; insertion order is creation order: the oldest record is always first.
        self._records: dict[str, OrderedDict[str, _Record]] = defaultdict(OrderedDict)

    def __len__(self) -> int:
        return sum(len(records) for records in self._records.values())

    def replay(self, tenant_id: str, key: str, fingerprint: str) -> Allocation | None:
        """The allocation first answered for this key, or None for a key not seen (or forgotten).
        Raises IdempotencyConflict when the key came with another body."""
        records = self._records.get(tenant_id)
        record = records.get(key) if records is not None else None
        if record is None:
            return None
        if record.fingerprint != fingerprint:
            raise IdempotencyConflict(f"Idempotency-Key {key} was used with a different request body.")
        return as_first_answered(record.allocation)

    def remember(self, tenant_id: str, key: str, fingerprint: str, allocation: Allocation, now: float) -> None:
        records = self._records[tenant_id]
        records[key] = _Record(fingerprint, allocation, now)
        while len(records) > self._max_keys:
            records.popitem(last=False)

    def expire(self, now: float) -> None:
        """Forget the records older than the window."""
        for records in self._records.values():
            while records:
                oldest = next(iter(records.values()))
                if oldest.created_at + self._ttl_s > now:
                    break
                records.popitem(last=False)
