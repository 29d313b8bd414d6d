"""Which pools can serve a model, in the order to try them, and what each costs.

Pools and models change rarely, so both lists are fetched together and cached for `ttl_s` (one fetch
shared by concurrent requests), instead of costing two extra calls per request.

Pool segregation: HostedAI lists (`GET /v1/pools`) only the pools the key's customer tier may use, so a
pool serving the model that the list leaves out is never tried — a provider that lists every model's
pools in `/v1/models` regardless of tier is still kept to the tier's pools.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from harness.connector import Model, Pool

log = logging.getLogger("harness.orchestrator")


class CatalogueSource(Protocol):
    """What the catalogue needs of the connector (a stub in unit tests)."""

    async def list_pools(self) -> list[Pool]: ...

    async def list_models(self) -> list[Model]: ...


@dataclass(frozen=True, slots=True)
class PoolChoice:
    pool_id: str
    price_per_tflops_hour: float


@dataclass(frozen=True, slots=True)
class _Snapshot:
    prices: dict[str, float]
    """price_per_tflops_hour by pool id."""
    serving: dict[str, tuple[str, ...]]
    """pool ids by model."""
    context_tokens: dict[str, int]
    """The largest prompt plus completion, by model."""
    fetched_at: float


class PoolCatalogue:
    def __init__(
        self, source: CatalogueSource, *, ttl_s: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._source = source
        self._ttl_s = ttl_s
        self._clock = clock
        self._snapshot: _Snapshot | None = None
        self._lock = asyncio.Lock()

    async def candidates(self, model: str, preferred: str) -> list[PoolChoice]:
        """The pools to try for `model`: `preferred` first when it serves the model, then the others
        serving it, cheapest first (ties by pool id, so the order is deterministic).

        Never empty: a model the catalogue does not list (or lists on no pool the tier may use) gets only
        `preferred`, so HostedAI gives the real answer (404, 403 `pool_not_permitted` or 422) rather than
        the orchestrator guessing."""
        snapshot = await self._current()
        # Only pools HostedAI lists for this key: the others belong to other customer tiers.
        serving = [pool for pool in snapshot.serving.get(model, ()) if pool in snapshot.prices]
        if not serving:
            return [self._choice(snapshot, preferred)]
        others = sorted(
            (pool for pool in serving if pool != preferred),
            key=lambda pool: (snapshot.prices.get(pool, math.inf), pool),
        )
        ordered = [preferred, *others] if preferred in serving else others
        return [self._choice(snapshot, pool) for pool in ordered]

    async def context_tokens(self, model: str) -> int | None:
        """The model's context (prompt plus completion, in tokens), or None when HostedAI lists no such model."""
        return (await self._current()).context_tokens.get(model)

    @staticmethod
    def _choice(snapshot: _Snapshot, pool_id: str) -> PoolChoice:
        price = snapshot.prices.get(pool_id)
        if price is None:
            # Only a pool HostedAI does not list lands here (unknown, or another tier's); its allocate
            # will fail, but if it does not, the request is still served, just accounted at no cost.
            log.warning("pool %s is not in HostedAI's pool list; its price is unknown", pool_id)
        return PoolChoice(pool_id, price or 0.0)

    def invalidate(self) -> None:
        self._snapshot = None

    async def _current(self, *, force: bool = False) -> _Snapshot:
        async with self._lock:
            snapshot = self._snapshot
            if force or snapshot is None or self._clock() - snapshot.fetched_at >= self._ttl_s:
                snapshot = await self._fetch()
                self._snapshot = snapshot
            return snapshot

    async def _fetch(self) -> _Snapshot:
        pools = await self._source.list_pools()
        models = await self._source.list_models()
        return _Snapshot(
            prices={p.pool_id: p.price_per_tflops_hour for p in pools},
            serving={m.model: tuple(m.pools) for m in models},
            context_tokens={m.model: m.context_tokens for m in models},
            fetched_at=self._clock(),
        )
