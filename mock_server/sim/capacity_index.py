"""A pool's free capacity, indexed so placement needs no scan: it answers what `placement.choose_gpu` does.

Two data structures, one per placement policy family, each a class of its own:

- `LevelIndex` (best_fit and spread): healthy GPUs grouped by the VRAM they hold (a "level", in MB),
  and within a level by the tflops they hold (a sorted list of the distinct amounts, a group of GPUs
  each, whose lowest index a heap gives). A min-tree over levels (leaf: the least tflops held at its
  levels) finds the fullest (best_fit) or emptiest (spread) level that has the VRAM for the demand and
  a GPU with the compute for it; a bisection among that level's tflops amounts picks the group, its
  heap the GPU. The tree has at most 4,096 leaves whatever the pool's size (a leaf covers 2^shift MB of
  levels: 32 MB for an 80 GB GPU). An update or a placement so costs O(log leaves + levels in a leaf +
  distinct tflops amounts in a level); nothing in it grows with the number of GPUs but a heap push (C,
  O(log)): GPUs with the same VRAM and tflops held, however many, are one group.
- `PositionIndex` (first_fit): a min-tree over GPU positions of (VRAM held, tflops held); the leftmost
  GPU that fits is found by descending only into subtrees whose minima could fit: O(log n), unless many
  GPUs with VRAM to spare lack the compute and many with compute lack the VRAM.

The GPUs of a pool are identical (same limits), so "least VRAM left" is "most VRAM held", and so on. An
index watches its GPUs (`Gpu.watcher`): every hold, give-back and change of health updates it.

Float rounding: `choose_gpu` ranks by `limit − held − demand`, where two slightly different tflops sums
can round to the same value and the lowest index then wins; the indexes break ties on that same
computed value, so they agree with the scan exactly.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right, insort
from heapq import heappop, heappush
from typing import Protocol

from mock_server.config import PoolConfig
from mock_server.sim.model import Gpu
from mock_server.sim.placement import EPS, Demand, compute_limit, vram_limit

_INF = math.inf
# The level tree has at most this many leaves, whatever the pool's size: its height, and so the cost
# of an update, does not grow with the number of GPUs.
MAX_LEAVES = 1 << 12


class CapacityIndex(Protocol):
    def gpu_changed(self, gpu: Gpu) -> None:
        """Told after a GPU's capacity held or health changed."""
        ...

    def choose(self, demand: Demand) -> Gpu | None:
        """What `choose_gpu(pool, gpus, demand)` answers, without the scan."""
        ...


def capacity_index(pool: PoolConfig, gpus: list[Gpu], *, max_leaves: int = MAX_LEAVES) -> CapacityIndex:
    """The index for the pool's placement policy, watching its GPUs from now on. `max_leaves` bounds
    the level tree (tests shrink it so that leaves hold many levels)."""
    if pool.placement == "first_fit":
        return PositionIndex(pool, gpus)
    return LevelIndex(pool, gpus, max_leaves=max_leaves)


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _check_identical(gpus: list[Gpu]) -> Gpu:
    if not gpus:
        raise ValueError("a pool has at least one GPU")
    first = gpus[0]
    for position, gpu in enumerate(gpus):
        if gpu.index != position or gpu.tflops != first.tflops or gpu.vram_mb != first.vram_mb:
            raise ValueError("the GPUs of a pool are identical and listed by index")
    return first


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


class LevelIndex:
    """best_fit and spread: levels of VRAM held, a min-tree over them (see the module docstring)."""

    __slots__ = (
        "_gpus",
        "_leaf_levels",
        "_levels",
        "_search",
        "_shift",
        "_size",
        "_tflops_cap",
        "_tflops_room",
        "_tree",
        "_view",
        "_vram_cap",
    )

    def __init__(self, pool: PoolConfig, gpus: list[Gpu], *, max_leaves: int = MAX_LEAVES) -> None:
        first = _check_identical(gpus)
        self._gpus = gpus
        self._search = self._best_fit if pool.placement == "best_fit" else self._spread
        # The exact expressions of `fits` and `choose_gpu`, so comparisons round the same way.
        self._vram_cap = vram_limit(pool, first) + EPS
        self._tflops_room = compute_limit(pool, first, True)
        self._tflops_cap = (compute_limit(pool, first, False) + EPS, compute_limit(pool, first, True) + EPS)
        # What the index believes each GPU holds: (VRAM MB, tflops), None while it is unhealthy.
        self._view: list[tuple[int, float] | None] = [None] * len(gpus)
        top = math.floor(self._vram_cap)
        shift = 0
        while (top >> shift) + 1 > max_leaves:
            shift += 1
        self._shift = shift
        self._size = _pow2_at_least((top >> shift) + 1)
        self._tree = array("d", [_INF]) * (2 * self._size)
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
        leaf = self._leaf(vram)
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
        leaf = self._leaf(vram)
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

    # ---- placing ---------------------------------------------------------------------------------

    def choose(self, demand: Demand) -> Gpu | None:
        # The most VRAM a GPU may hold and still take the demand (`fits`, solved for the level).
        top = math.floor(self._vram_cap) - demand.vram_mb
        if top < 0:
            return None
        position = self._search(top, demand.tflops, self._tflops_cap[demand.overcommit])
        return None if position is None else self._gpus[position]

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


class PositionIndex:
    """first_fit: a min-tree over GPU positions of (VRAM held, tflops held)."""

    __slots__ = ("_gpus", "_mt", "_mv", "_size", "_tflops_cap", "_view", "_vram_cap")

    def __init__(self, pool: PoolConfig, gpus: list[Gpu]) -> None:
        first = _check_identical(gpus)
        self._gpus = gpus
        self._vram_cap = vram_limit(pool, first) + EPS
        self._tflops_cap = (compute_limit(pool, first, False) + EPS, compute_limit(pool, first, True) + EPS)
        self._view: list[tuple[int, float] | None] = [None] * len(gpus)
        self._size = _pow2_at_least(len(gpus))
        self._mv = array("d", [_INF]) * (2 * self._size)
        self._mt = array("d", [_INF]) * (2 * self._size)
        for gpu in gpus:
            self.gpu_changed(gpu)
            gpu.watcher = self

    def gpu_changed(self, gpu: Gpu) -> None:
        new = (gpu.vram_mb_allocated, gpu.tflops_allocated) if gpu.healthy else None
        if new == self._view[gpu.index]:
            return
        self._view[gpu.index] = new
        mv, mt = self._mv, self._mt
        v, t = (float(new[0]), new[1]) if new is not None else (_INF, _INF)
        i = gpu.index + self._size
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

    def choose(self, demand: Demand) -> Gpu | None:
        dv, dt = demand.vram_mb, demand.tflops
        cap = self._tflops_cap[demand.overcommit]
        mv, mt, size, vram_cap = self._mv, self._mt, self._size, self._vram_cap
        stack = [1]
        while stack:
            i = stack.pop()
            if mv[i] + dv <= vram_cap and mt[i] + dt <= cap:
                if i >= size:
                    return self._gpus[i - size]
                stack.append(2 * i + 1)
                stack.append(2 * i)
        return None
