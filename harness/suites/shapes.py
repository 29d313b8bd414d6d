"""What a suite allocates on a target: shapes read from the target's own catalogue, once per run.

The smallest model and the largest, each in the pool with the most free VRAM that serves it, asking
exactly the TFLOPS and VRAM the model needs. Read once before a run starts, so that what a generated
test may choose never depends on what the server answers later, and the same on a mock and on a live
HostedAI with other pools and models.
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
