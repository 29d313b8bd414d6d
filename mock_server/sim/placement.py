"""Where an allocation goes: which GPU of a pool, and whom it preempts if it must.

Capacity rules (docs/simulation.md, "Capacity"):
- VRAM: the sum on a GPU never exceeds `vram_mb × vram_overcommit_ratio` (1.0 by default: never overcommitted).
- Compute with `overcommit`: the sum on a GPU may reach `tflops × overcommit_ratio`.
- Compute without it: the allocation needs guaranteed capacity, so the sum after placing it must stay
  within the GPU's physical `tflops`.

`choose_gpu` states the placement policies as a scan over every GPU; `CapacityIndex` gives the same
answer in O(log n) per placement and per change of a GPU, so allocate and release cost does not grow
with the size of the pool (tests/sim/test_placement_index.py checks the two agree).
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass
from heapq import heappop, heappush

from mock_server.config import PoolConfig
from mock_server.sim.model import Allocation, Gpu

# Tolerance for float sums of tflops, so 0.1 + 0.2 fits where 0.3 fits.
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Demand:
    tflops: float
    vram_mb: int
    overcommit: bool
    priority: int


def vram_limit(pool: PoolConfig, gpu: Gpu) -> float:
    return gpu.vram_mb * pool.vram_overcommit_ratio


def compute_limit(pool: PoolConfig, gpu: Gpu, overcommit: bool) -> float:
    return gpu.tflops * (pool.overcommit_ratio if overcommit else 1.0)


def fits(pool: PoolConfig, gpu: Gpu, demand: Demand, tflops_used: float, vram_used: int) -> bool:
    return (
        vram_used + demand.vram_mb <= vram_limit(pool, gpu) + _EPS
        and tflops_used + demand.tflops <= compute_limit(pool, gpu, demand.overcommit) + _EPS
    )


def could_ever_fit(pool: PoolConfig, gpu: Gpu, demand: Demand) -> bool:
    """Whether the demand fits on this GPU when it is empty."""
    return fits(pool, gpu, demand, 0.0, 0)


def choose_gpu(pool: PoolConfig, gpus: list[Gpu], demand: Demand) -> Gpu | None:
    """The GPU to place on without preempting anyone, by the pool's placement policy.

    The definition, by a scan over every GPU; the simulator asks the pool's `CapacityIndex`, which
    answers the same without the scan."""
    best: Gpu | None = None
    best_key: tuple[float, float, int] | None = None
    for gpu in gpus:
        if not gpu.healthy or not fits(pool, gpu, demand, gpu.tflops_allocated, gpu.vram_mb_allocated):
            continue
        if pool.placement == "first_fit":
            return gpu
        free_vram = vram_limit(pool, gpu) - gpu.vram_mb_allocated - demand.vram_mb
        free_tflops = compute_limit(pool, gpu, True) - gpu.tflops_allocated - demand.tflops
        # best_fit packs: the least room left after placing (VRAM first, it is the scarcer resource);
        # spread balances: the most room left.
        sign = 1.0 if pool.placement == "best_fit" else -1.0
        key = (sign * free_vram, sign * free_tflops, gpu.index)
        if best_key is None or key < best_key:
            best, best_key = gpu, key
    return best


@dataclass(frozen=True, slots=True)
class Preemption:
    gpu: Gpu
    victims: list[Allocation]


def plan_preemption(pool: PoolConfig, gpus: list[Gpu], demand: Demand) -> Preemption | None:
    """The cheapest set of lower-priority overcommitted allocations whose eviction makes room.

    Only an overcommitted request may preempt, and only allocations that were themselves overcommitted
    and have a strictly lower priority. Victims are taken lowest priority first, youngest first among
    equals; the GPU needing the fewest (then the lowest-priority) victims wins.
    """
    if not pool.preemption or not demand.overcommit:
        return None
    best: Preemption | None = None
    best_key: tuple[int, int, int] | None = None
    for gpu in gpus:
        if not gpu.healthy or not could_ever_fit(pool, gpu, demand):
            continue
        candidates = sorted(
            (a for a in gpu.allocations.values() if a.overcommit and a.priority < demand.priority),
            key=lambda a: (a.priority, -a.seq),
        )
        tflops, vram = gpu.tflops_allocated, gpu.vram_mb_allocated
        victims: list[Allocation] = []
        for victim in candidates:
            if fits(pool, gpu, demand, tflops, vram):
                break
            victims.append(victim)
            tflops -= victim.tflops
            vram -= victim.vram_mb
        if not victims or not fits(pool, gpu, demand, tflops, vram):
            continue
        key = (len(victims), sum(v.priority for v in victims), gpu.index)
        if best_key is None or key < best_key:
            best, best_key = Preemption(gpu, victims), key
    return best


_INF = math.inf
# The level tree of best_fit and spread pools has at most this many leaves, whatever the pool's size:
# its height, and so the cost of an update, does not grow with the number of GPUs.
_MAX_LEAVES = 1 << 12


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


class _Group:
    """The GPUs of one level holding exactly the same tflops: a set, and a min-heap of their indexes
    whose entries for GPUs that left are dropped when they surface (so no operation moves the others)."""

    __slots__ = ("heap", "members")

    def __init__(self) -> None:
        self.members: set[int] = set()
        self.heap: list[int] = []

    def add(self, position: int) -> None:
        self.members.add(position)
        heappush(self.heap, position)

    def discard(self, position: int) -> None:
        self.members.discard(position)
        if len(self.heap) > 2 * len(self.members) + 8:
            self.heap = sorted(self.members)  # a sorted list is a heap

    def lowest(self) -> int:
        heap, members = self.heap, self.members
        while heap[0] not in members:
            heappop(heap)
        return heap[0]


class _Level:
    """The healthy GPUs holding one amount of VRAM: their distinct tflops held, sorted, and a group each."""

    __slots__ = ("groups", "held")

    def __init__(self) -> None:
        self.held: list[float] = []
        self.groups: dict[float, _Group] = {}


class CapacityIndex:
    """A pool's free capacity, indexed so placement needs no scan; it answers what `choose_gpu` does.

    The GPUs of a pool are identical (same limits), so "least VRAM left" is "most VRAM held", and so on.
    The index watches its GPUs (`Gpu.watcher`): every hold, give-back and change of health updates it.

    best_fit and spread: healthy GPUs are grouped by the VRAM they hold (a "level", in MB), and within a
    level by the tflops they hold (a sorted list of the distinct amounts, a group of GPUs each, whose
    lowest index a heap gives). A min-tree over levels (leaf: the least tflops held at its levels) finds
    the fullest (best_fit) or emptiest (spread) level that has the VRAM for the demand and a GPU with
    the compute for it; a bisection among that level's tflops amounts picks the group, its heap the
    GPU. The tree has at most 4,096 leaves whatever the pool's size (a leaf covers 2^shift MB of levels:
    32 MB for an 80 GB GPU). An update or a placement so costs O(log leaves + levels in a leaf +
    distinct tflops amounts in a level), and nothing in it grows with the number of GPUs but a heap
    push (C, O(log)): GPUs with the same VRAM and tflops held, however many, are one group.

    first_fit: a min-tree over GPU positions of (VRAM held, tflops held); the leftmost GPU that fits
    is found by descending only into subtrees whose minima could fit: O(log n), unless many GPUs with
    VRAM to spare lack the compute and many with compute lack the VRAM.

    Float rounding: `choose_gpu` ranks by `limit − held − demand`, where two slightly different tflops
    sums can round to the same value and the lowest index then wins; the index breaks ties on that
    same computed value, so the two agree exactly.
    """

    __slots__ = (
        "_gpus",
        "_leaf_levels",
        "_levels",
        "_mt",
        "_mv",
        "_policy",
        "_shift",
        "_size",
        "_tflops_cap",
        "_tflops_room",
        "_tree",
        "_view",
        "_vram_cap",
        "_vram_room",
    )

    def __init__(self, pool: PoolConfig, gpus: list[Gpu], *, max_leaves: int = _MAX_LEAVES) -> None:
        """`max_leaves` bounds the level tree (tests shrink it so that leaves hold many levels)."""
        if not gpus:
            raise ValueError("a pool has at least one GPU")
        first = gpus[0]
        for position, gpu in enumerate(gpus):
            if gpu.index != position or gpu.tflops != first.tflops or gpu.vram_mb != first.vram_mb:
                raise ValueError("the GPUs of a pool are identical and listed by index")
        self._gpus = gpus
        self._policy = pool.placement
        # The exact expressions of `fits` and `choose_gpu`, so comparisons round the same way.
        self._vram_room = vram_limit(pool, first)
        self._vram_cap = self._vram_room + _EPS
        self._tflops_room = compute_limit(pool, first, True)
        self._tflops_cap = (compute_limit(pool, first, False) + _EPS, compute_limit(pool, first, True) + _EPS)
        # What the index believes each GPU holds: (VRAM MB, tflops), None while it is unhealthy.
        self._view: list[tuple[int, float] | None] = [None] * len(gpus)
        if self._policy == "first_fit":
            self._size = _pow2_at_least(len(gpus))
            self._shift = 0
            self._mv = array("d", [_INF]) * (2 * self._size)
            self._mt = array("d", [_INF]) * (2 * self._size)
            self._tree = array("d")
        else:
            top = math.floor(self._vram_cap)
            shift = 0
            while (top >> shift) + 1 > max_leaves:
                shift += 1
            self._shift = shift
            self._size = _pow2_at_least((top >> shift) + 1)
            self._tree = array("d", [_INF]) * (2 * self._size)
            self._mv = self._mt = array("d")
        self._levels: dict[int, _Level] = {}
        self._leaf_levels: dict[int, list[int]] = {}
        for gpu in gpus:
            self.gpu_changed(gpu)
            gpu.watcher = self

    # ---- keeping it exact ------------------------------------------------------------------------

    def gpu_changed(self, gpu: Gpu) -> None:
        i = gpu.index
        old = self._view[i]
        new = (gpu.vram_mb_allocated, gpu.tflops_allocated) if gpu.healthy else None
        if new == old:
            return
        self._view[i] = new
        if self._policy == "first_fit":
            self._set_position(i, new)
            return
        if old is not None:
            self._remove(old[0], old[1], i)
        if new is not None:
            self._insert(new[0], new[1], i)

    def _leaf(self, level: int) -> int:
        return min(level >> self._shift, self._size - 1)

    def _remove(self, vram: int, tflops: float, position: int) -> None:
        level = self._levels[vram]
        group = level.groups[tflops]
        group.discard(position)
        if group.members:
            return  # the level still holds this amount of tflops: nothing else changes
        del level.groups[tflops]
        held = level.held
        rank = bisect_left(held, tflops)
        del held[rank]
        leaf = min(vram >> self._shift, self._size - 1)
        if not held:
            del self._levels[vram]
            levels = self._leaf_levels[leaf]
            del levels[bisect_left(levels, vram)]
            if not levels:
                del self._leaf_levels[leaf]
        elif rank:
            return  # the level's least tflops held is unchanged, and so is the tree
        tree = self._tree
        i = leaf + self._size
        if tree[i] < tflops:
            return  # the leaf's minimum comes from another level
        # The leaf's minimum may have gone up: recompute it, then its ancestors until one is unchanged.
        rest = self._leaf_levels.get(leaf)
        value = min(self._levels[lv].held[0] for lv in rest) if rest else _INF
        while i:
            if tree[i] == value:
                return
            tree[i] = value
            sibling = tree[i ^ 1]
            if sibling < value:
                value = sibling
            i >>= 1

    def _insert(self, vram: int, tflops: float, position: int) -> None:
        leaf = min(vram >> self._shift, self._size - 1)
        level = self._levels.get(vram)
        if level is None:
            level = self._levels[vram] = _Level()
            insort(self._leaf_levels.setdefault(leaf, []), vram)
        group = level.groups.get(tflops)
        if group is None:
            group = level.groups[tflops] = _Group()
            insort(level.held, tflops)
        group.add(position)
        # The minimum can only go down: lower it on the path to the root while it is above.
        tree = self._tree
        i = leaf + self._size
        while i and tree[i] > tflops:
            tree[i] = tflops
            i >>= 1

    def _set_position(self, position: int, held: tuple[int, float] | None) -> None:
        mv, mt = self._mv, self._mt
        v, t = (float(held[0]), held[1]) if held is not None else (_INF, _INF)
        i = position + self._size
        while i:
            if mv[i] == v and mt[i] == t:
                return
            mv[i] = v
            mt[i] = t
            j = i ^ 1
            if mv[j] < v:
                v = mv[j]
            if mt[j] < t:
                t = mt[j]
            i >>= 1

    # ---- placing ---------------------------------------------------------------------------------

    def choose(self, demand: Demand) -> Gpu | None:
        """What `choose_gpu(pool, gpus, demand)` answers, without the scan."""
        dv, dt = demand.vram_mb, demand.tflops
        cap = self._tflops_cap[demand.overcommit]
        if self._policy == "first_fit":
            position = self._first_fit(dv, dt, cap)
        else:
            # The most VRAM a GPU may hold and still take the demand (`fits`, solved for the level).
            top = math.floor(self._vram_cap) - dv
            if top < 0:
                return None
            search = self._best_fit if self._policy == "best_fit" else self._spread
            position = search(top, dt, cap)
        return None if position is None else self._gpus[position]

    def _first_fit(self, dv: int, dt: float, cap: float) -> int | None:
        mv, mt, size, vram_cap = self._mv, self._mt, self._size, self._vram_cap
        stack = [1]
        while stack:
            i = stack.pop()
            if mv[i] + dv <= vram_cap and mt[i] + dt <= cap:
                if i >= size:
                    return i - size
                stack.append(2 * i + 1)
                stack.append(2 * i)
        return None

    def _best_fit(self, top: int, dt: float, cap: float) -> int | None:
        # The fullest level at or below `top` holding a GPU with the compute; within it the GPUs with
        # the least compute left (the most tflops held that fits), then the lowest index.
        room = self._tflops_room
        end = self._leaf(top) + 1
        while (leaf := self._rightmost_leaf(end, dt, cap)) >= 0:
            for vram in reversed(self._leaf_levels[leaf]):
                level = self._levels[vram]
                held = level.held
                if vram > top or held[0] + dt > cap:
                    continue
                rank = bisect_right(held, cap, key=lambda t: t + dt) - 1
                least = (room - held[rank]) - dt
                best = len(self._gpus)
                # Amounts a hair apart can leave the same computed room: all of those tie.
                while rank >= 0 and (room - held[rank]) - dt == least:
                    best = min(best, level.groups[held[rank]].lowest())
                    rank -= 1
                return best
            end = leaf  # only the leaf holding `top` can have its fitting levels above `top`
        return None

    def _spread(self, top: int, dt: float, cap: float) -> int | None:
        # The emptiest level holding a GPU with the compute; within it the least tflops held.
        room = self._tflops_room
        leaf = self._leftmost_leaf(dt, cap)
        if leaf < 0 or leaf > self._leaf(top):
            return None
        for vram in self._leaf_levels[leaf]:
            if vram > top:
                return None
            level = self._levels[vram]
            held = level.held
            if held[0] + dt > cap:
                continue
            most = (room - held[0]) - dt
            best = level.groups[held[0]].lowest()
            for rank in range(1, len(held)):
                tflops = held[rank]
                if tflops + dt > cap or (room - tflops) - dt != most:
                    break
                best = min(best, level.groups[tflops].lowest())
            return best
        return None

    def _rightmost_leaf(self, end: int, dt: float, cap: float) -> int:
        """The last leaf before `end` holding a GPU with `dt` tflops free under `cap`; -1 if none."""
        if end <= 0:
            return -1
        tree, size = self._tree, self._size
        i = end + size
        while True:
            i -= 1
            while i > 1 and i & 1:
                i >>= 1
            if tree[i] + dt <= cap:
                while i < size:
                    i = 2 * i + 1
                    if tree[i] + dt > cap:
                        i -= 1
                return i - size
            if i & (i - 1) == 0:
                return -1

    def _leftmost_leaf(self, dt: float, cap: float) -> int:
        tree, size = self._tree, self._size
        if tree[1] + dt > cap:
            return -1
        i = 1
        while i < size:
            i = 2 * i if tree[2 * i] + dt <= cap else 2 * i + 1
        return i - size
