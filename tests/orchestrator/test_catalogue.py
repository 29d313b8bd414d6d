"""Pool order for fail-over (the configured pool, then the cheapest), and the catalogue's cache."""

from __future__ import annotations

from harness.connector import Model, Pool
from harness.orchestrator import PoolCatalogue, PoolChoice
from tests.orchestrator.support import FakeClock


def _pool(pool_id: str, price: float) -> Pool:
    return Pool(
        pool_id=pool_id,
        gpu_type="H100-80GB",
        gpus=1,
        tflops_total=989,
        tflops_allocated=0,
        vram_mb_total=81920,
        vram_mb_allocated=0,
        overcommit_ratio=1,
        allocations_active=0,
        price_per_tflops_hour=price,
    )


class StubSource:
    def __init__(self, pools: list[Pool], serving: dict[str, list[str]]) -> None:
        self.pools = pools
        self.serving = serving
        self.fetches = 0

    async def list_pools(self) -> list[Pool]:
        self.fetches += 1
        return self.pools

    async def list_models(self) -> list[Model]:
        return [
            Model(model=name, vram_mb=2048, tflops=5, max_tokens=2048, context_tokens=32768, pools=pools)
            for name, pools in self.serving.items()
        ]


SOURCE_POOLS = [_pool("gold", 0.009), _pool("silver", 0.004), _pool("bronze", 0.001), _pool("tin", 0.004)]


async def test_the_preferred_pool_first_then_the_cheapest() -> None:
    source = StubSource(SOURCE_POOLS, {"gemma-270m": ["gold", "silver", "bronze", "tin"]})
    order = await PoolCatalogue(source).candidates("gemma-270m", preferred="gold")
    assert order == [
        PoolChoice("gold", 0.009),
        PoolChoice("bronze", 0.001),
        PoolChoice("silver", 0.004),  # a tie on price is broken by pool id
        PoolChoice("tin", 0.004),
    ]


async def test_only_pools_serving_the_model() -> None:
    source = StubSource(SOURCE_POOLS, {"qwen-30b": ["silver", "gold"]})
    catalogue = PoolCatalogue(source)
    assert [c.pool_id for c in await catalogue.candidates("qwen-30b", preferred="bronze")] == ["silver", "gold"]
    # A model HostedAI does not list: only the preferred pool, so HostedAI gives the real answer.
    assert [c.pool_id for c in await catalogue.candidates("llama-9000", preferred="bronze")] == ["bronze"]


async def test_pools_the_list_leaves_out_belong_to_another_tier_and_are_never_tried() -> None:
    # /v1/pools lists only the key's tier's pools; /v1/models may still name the others.
    source = StubSource([_pool("silver", 0.004), _pool("tin", 0.004)], {"gemma-270m": ["gold", "silver", "tin"]})
    catalogue = PoolCatalogue(source)
    assert [c.pool_id for c in await catalogue.candidates("gemma-270m", preferred="gold")] == ["silver", "tin"]
    # No pool of the tier serves it: the preferred pool alone, so HostedAI answers pool_not_permitted itself.
    source.serving = {"qwen-30b": ["gold"]}
    catalogue.invalidate()
    assert [c.pool_id for c in await catalogue.candidates("qwen-30b", preferred="gold")] == ["gold"]


async def test_the_catalogue_is_cached_for_its_ttl() -> None:
    source = StubSource(SOURCE_POOLS, {"gemma-270m": ["gold"]})
    clock = FakeClock()
    catalogue = PoolCatalogue(source, ttl_s=300, clock=clock)
    for _ in range(3):
        await catalogue.candidates("gemma-270m", preferred="gold")
    assert source.fetches == 1
    clock.advance(300)
    await catalogue.candidates("gemma-270m", preferred="gold")
    assert source.fetches == 2
    catalogue.invalidate()
    await catalogue.candidates("gemma-270m", preferred="gold")
    assert source.fetches == 3
