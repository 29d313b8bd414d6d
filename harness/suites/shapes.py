"""What a suite allocates on a target: shapes read from the target's own catalogue, once per run.

The smallest model and the largest, each in the pool with the most free VRAM that serves it, asking
exactly the TFLOPS and VRAM the model needs. Read once before a run starts, so that what a generated
test may choose never depends on what the server answers later, and the same on a mock and on a live
HostedAI with other pools and models.

`catalogue_tiers` reads the same for two tenants (two keys): which pools each may use, so a suite can
ask each to allocate across the tier boundary and know beforehand what the answer must be.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.connector import HostedAiConnector, Requirements


@dataclass(frozen=True, slots=True)
class Shape:
    """What one allocate asks for."""

    name: str
    pool_id: str
    requirements: Requirements


async def catalogue_shapes(connector: HostedAiConnector) -> dict[str, Shape]:
    """`small` and `large`; ValueError when no model is served in a pool the target lists."""
    models = sorted(await connector.list_models(), key=lambda m: (m.vram_mb, m.tflops, m.model))
    pools = {p.pool_id: p for p in await connector.list_pools()}
    usable = [m for m in models if any(p in pools for p in m.pools)]
    if not usable:
        raise ValueError("no model is served in any pool the target lists")
    shapes: dict[str, Shape] = {}
    for name, model in (("small", usable[0]), ("large", usable[-1])):
        pool = max(
            (pools[p] for p in model.pools if p in pools),
            key=lambda p: (p.vram_mb_total - p.vram_mb_allocated, p.pool_id),
        )
        requirements = Requirements(model=model.model, tflops=model.tflops, vram_mb=model.vram_mb)
        shapes[name] = Shape(model.model, pool.pool_id, requirements)
    return shapes


@dataclass(frozen=True, slots=True)
class TierView:
    """Which pools each of two tenants may use (pool segregation by customer tier), read once before a
    run from each tenant's own `GET /v1/pools` and `/v1/models`, with a shape to allocate in each pool:
    the smallest model served there, as a tenant that lists the pool sees it."""

    ours: frozenset[str]
    theirs: frozenset[str]
    shapes: dict[str, Shape]

    def pools(self, side: str, *, listed: bool) -> list[str]:
        """`side`'s own pools (`listed`), or the pools only the other tenant lists; sorted."""
        mine, other = (self.ours, self.theirs) if side == "ours" else (self.theirs, self.ours)
        return sorted(mine if listed else other - mine)

    @property
    def has_boundary(self) -> bool:
        return self.ours != self.theirs

    @property
    def crossings(self) -> list[tuple[str, bool]]:
        """What a tier check can try here, as (side, listed): each side in the pools only the other
        lists, and the second tenant (`theirs`) in its own pools; only the cases that have a pool."""
        cases = [("ours", False), ("theirs", False), ("theirs", True)]
        return [(side, listed) for side, listed in cases if self.pools(side, listed=listed)]


async def _usable(connector: HostedAiConnector) -> tuple[frozenset[str], dict[str, Shape]]:
    pools = {p.pool_id for p in await connector.list_pools()}
    shapes: dict[str, Shape] = {}
    for model in sorted(await connector.list_models(), key=lambda m: (m.vram_mb, m.tflops, m.model)):
        for pool_id in model.pools:
            if pool_id in pools and pool_id not in shapes:
                requirements = Requirements(model=model.model, tflops=model.tflops, vram_mb=model.vram_mb)
                shapes[pool_id] = Shape(model.model, pool_id, requirements)
    return frozenset(pools), shapes


async def catalogue_tiers(ours: HostedAiConnector, theirs: HostedAiConnector) -> TierView:
    """Each tenant's pools, and a shape for every pool either may use."""
    our_pools, our_shapes = await _usable(ours)
    their_pools, their_shapes = await _usable(theirs)
    return TierView(our_pools, their_pools, {**their_shapes, **our_shapes})
