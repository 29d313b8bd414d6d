"""Idempotency keys of allocate: the same key and body within the window replay the first answer.

A record maps (tenant, key) to the digest of the request body and a snapshot of the allocation as it
was first answered. The same key with another body is a conflict. Records are kept for `ttl_s`
simulated seconds and at most `max_keys` of them (the oldest go first): both bounds are the contract's
guarantee (docs/simulation.md), and they keep memory flat over a soak however many keys clients send.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from mock_server.sim.errors import IdempotencyConflict
from mock_server.sim.model import Allocation


@dataclass(frozen=True, slots=True)
class _Record:
    fingerprint: str
    snapshot: Allocation
    created_at: float


class IdempotencyStore:
    def __init__(self, ttl_s: float, max_keys: int) -> None:
        self._ttl_s = ttl_s
        self._max_keys = max_keys
        # Insertion order is creation order: the oldest record is always first.
        self._records: OrderedDict[tuple[str, str], _Record] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def replay(self, tenant_id: str, key: str, fingerprint: str) -> Allocation | None:
        """The allocation first answered for this key, or None for a key not seen (or forgotten).
        Raises IdempotencyConflict when the key came with another body."""
        record = self._records.get((tenant_id, key))
        if record is None:
            return None
        if record.fingerprint != fingerprint:
            raise IdempotencyConflict(f"Idempotency-Key {key} was used with a different request body.")
        return record.snapshot

    def remember(self, tenant_id: str, key: str, fingerprint: str, snapshot: Allocation, now: float) -> None:
        self._records[(tenant_id, key)] = _Record(fingerprint, snapshot, now)
        while len(self._records) > self._max_keys:
            self._records.popitem(last=False)

    def expire(self, now: float) -> None:
        """Forget the records older than the window."""
        records = self._records
        while records:
            oldest = next(iter(records.values()))
            if oldest.created_at + self._ttl_s > now:
                return
            records.popitem(last=False)
