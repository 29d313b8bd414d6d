"""One physical GPU: the engines of the allocations placed on it, and how they share it.

Each engine runs on a virtual clock; this layer says how fast each virtual clock runs against
simulated time, from which engines are *active* (have work) — an allocation that runs nothing costs
its neighbours nothing — and the pool's sharing mode:

- `spatial` (MPS-like): active engines run side by side, each slowed by contention for memory
  bandwidth: speed 1 / (1 + interference × (k − 1)) with k active engines (MPS: +19.5 % TPOT for two
  vLLM processes, fidelity.md C3).
- `time_sliced`: active contexts interleave; each gets 1/k of the GPU, less a switching overhead
  (two services on one GPU "twice as slow", C2; time-slicing −24 % against MIG, C4).
- `temporal` (hosted·ai): spatial while the allocations' VRAM fits the GPU; once it is oversubscribed,
  one context at a time is resident for a time quantum, the others stalled (mid-stream), and a switch
  costs the swap-in of the incoming context's memory over PCIe (C5, C6). A context alone runs at full
  speed. Past the VRAM failure ratio a co-tenant is killed (the simulator does that on admission).

Events are processed in time order: an engine's run ending, a quantum ending. Between events every
speed is constant, so virtual and simulated time map linearly. Sequences get their simulated times
(`admitted_t`, `first_token_t`, `finished_t`) as the engine reaches them.

Only *live* slots (an engine with work or a step in flight, or requests not yet stamped) are advanced
event by event; an idle slot's virtual clock is read off its linear map when it is next needed (its
speed only changes through `_reshare`, which rebases it first). A GPU packed with allocations that
mostly wait between requests so costs per event what its busy engines cost, not what all of them do.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from mock_server.sim.serving.engine import Engine, Sequence

Mode = Literal["spatial", "time_sliced", "temporal"]
_INF = math.inf


@dataclass(slots=True)
class Tracked:
    """A sequence as the GPU sees it: its engine's record and its simulated times."""

    seq: Sequence
    arrived_t: float
    admitted_t: float | None = None
    first_token_t: float | None = None
    finished_t: float | None = None


@dataclass(slots=True)
class _Slot:
    engine: Engine
    vram_mb: float
    speed: float = 1.0
    t0: float = 0.0
    v0: float = 0.0
    tracked: dict[int, Tracked] = field(default_factory=dict)
    stamped: int = -1
    """The engine's step count when its sequences were last stamped (-1: a request came or went since).
    Sequences only reach a moment at a step or when one comes or goes, so until then there is nothing
    to stamp: a GPU looked at between steps (a stream per request, under load) costs no walk of them."""

    def v_at(self, t: float) -> float:
        return self.v0 + self.speed * (t - self.t0)

    def t_at(self, v: float) -> float:
        if v <= self.v0:
            return self.t0
        return self.t0 + (v - self.v0) / self.speed if self.speed > 0 else _INF


@dataclass(frozen=True, slots=True)
class Sharing:
    mode: Mode = "spatial"
    vram_mb: float = 0.0
    """The GPU's physical VRAM (temporal mode starts when the allocations' sum exceeds it)."""
    interference: float = 0.195
    switch_overhead: float = 0.1
    quantum_s: float = 30.0
    swap_gb_per_s: float = 25.0


class GpuRuntime:
    def __init__(self, sharing: Sharing) -> None:
        self.sharing = sharing
        self.slots: dict[str, _Slot] = {}
        self.live: dict[str, _Slot] = {}
        """The slots that may change on their own or have requests to stamp (see the module's doc)."""
        self._active_now: list[str] = []
        """The busy engines' keys as the last `_reshare` saw them."""
        self._vram_mb = 0.0
        self.t = 0.0
        self.resident: str | None = None
        """Temporal mode: the allocation whose context is on the GPU now."""
        self.slice_end_t = _INF
        self.swap_end_t = 0.0

    # ---- membership ---------------------------------------------------------------------------------

    def add(self, key: str, engine: Engine, vram_mb: float, t: float) -> None:
        self.sync(t)
        self.slots[key] = slot = _Slot(engine, vram_mb, t0=t, v0=engine.v)
        self._vram_mb += vram_mb
        self._note(key, slot)
        self._reshare(t)

    def remove(self, key: str, t: float) -> list[Tracked]:
        """The allocation ended: its engine leaves the GPU; what it was still running is returned."""
        self.sync(t)
        slot = self.slots.pop(key, None)
        if slot is None:
            return []
        self.live.pop(key, None)
        self._vram_mb -= slot.vram_mb
        if self.resident == key:
            self.resident, self.slice_end_t = None, _INF
        self._reshare(t)
        return [tr for tr in slot.tracked.values() if tr.finished_t is None]

    def __contains__(self, key: str) -> bool:
        return key in self.slots

    # ---- requests -----------------------------------------------------------------------------------

    def submit(self, key: str, seq: Sequence, t: float) -> Tracked:
        self.sync(t)
        slot = self.slots[key]
        self._bring_up_to(key, slot, t)
        tracked = Tracked(seq, t)
        was_busy = slot.engine.busy
        slot.engine.submit(seq, slot.v_at(t))
        slot.tracked[seq.seq_id] = tracked
        slot.stamped = -1
        self._note(key, slot)
        if not was_busy:
            self._reshare(t)
        return tracked

    def cancel(self, key: str, tracked: Tracked, t: float) -> bool:
        """The request leaves its engine (False: it had already finished, or its engine is gone, and
        nothing changed)."""
        self.sync(t)
        slot = self.slots.get(key)
        if slot is None or tracked.finished_t is not None:
            return False
        slot.engine.cancel(tracked.seq, slot.v_at(t))
        tracked.finished_t = t
        slot.tracked.pop(tracked.seq.seq_id, None)
        slot.stamped = -1
        self._note(key, slot)
        if not slot.engine.busy:
            self._reshare(t)
        return True

    # ---- time ---------------------------------------------------------------------------------------

    def next_event_t(self, excluding: str | None = None) -> float:
        """When something next happens on this GPU of its own accord (inf: nothing will); `excluding`:
        but on that slot's engine."""
        events = [
            slot.t_at(v)
            for key, slot in self.live.items()
            if key != excluding and (v := slot.engine.next_event_v()) is not None
        ]
        if self.sharing.mode == "temporal" and self._oversubscribed():
            events += [self.slice_end_t, self.swap_end_t if self.swap_end_t > self.t else _INF]
        return min(events, default=_INF)

    def sync(self, t: float) -> None:
        """Let everything that happens by simulated time `t` happen, in time order."""
        for _ in range(1_000_000):
            at = self.next_event_t()
            if at > t:
                break
            self._advance(max(at, self.t))
            # A run ending changes the sharing only if an engine went idle (or a quantum ended).
            if self._active() != self._active_now or self._timeshared():
                self._reshare(self.t)
        self._advance(max(t, self.t))

    def _advance(self, t: float) -> None:
        for key, slot in list(self.live.items()):
            v = slot.v_at(t)
            engine = slot.engine
            engine.advance_to(v)
            if engine.steps != slot.stamped:
                self._stamp(slot, t)
                slot.stamped = engine.steps
            slot.t0, slot.v0 = t, v
            self._note(key, slot)
        self.t = t

    def _bring_up_to(self, key: str, slot: _Slot, t: float) -> None:
        """An idle slot's linear map moved onto `t` before something happens to it: a stalled one (speed
        0, temporal mode) would otherwise map its new request's moments to when it last moved."""
        if key not in self.live and slot.t0 != t:
            slot.v0, slot.t0 = slot.v_at(t), t

    def _note(self, key: str, slot: _Slot) -> None:
        """Keep `live` true for one slot after something happened to it."""
        engine = slot.engine
        if engine.run is not None or engine.busy or slot.tracked:
            self.live[key] = slot
        else:
            self.live.pop(key, None)

    def _stamp(self, slot: _Slot, t: float) -> None:
        """Give newly reached moments of the slot's sequences their simulated times (speed was constant
        since `slot.t0`, so the map is linear)."""
        for tracked in list(slot.tracked.values()):
            seq = tracked.seq
            if tracked.admitted_t is None and seq.admitted_v is not None:
                tracked.admitted_t = slot.t_at(seq.admitted_v)
            if tracked.first_token_t is None and seq.first_token_v is not None:
                tracked.first_token_t = slot.t_at(seq.first_token_v)
            if seq.finished_v is not None and tracked.finished_t is None:
                tracked.finished_t = min(t, slot.t_at(seq.finished_v))
                del slot.tracked[seq.seq_id]

    def _active(self) -> list[str]:
        return [key for key, slot in self.live.items() if slot.engine.busy]

    def _oversubscribed(self) -> bool:
        return self._vram_mb > self.sharing.vram_mb

    def _timeshared(self) -> bool:
        """Temporal mode taking turns: a quantum's end or a swap's changes the speeds on its own."""
        return self.sharing.mode == "temporal" and len(self._active_now) > 1 and self._oversubscribed()

    def _reshare(self, t: float) -> None:
        """New speeds from now on, after the set of active engines (or the quantum) changed."""
        active = self._active()
        k = len(active)
        sharing = self.sharing
        temporal = sharing.mode == "temporal" and k > 1 and self._oversubscribed()
        speeds: dict[str, float] | None = None
        """Per slot (temporal turns); None: every slot at `uniform`."""
        uniform = 1.0
        memory = 1.0
        if temporal:
            speeds = self._temporal(active, t)
        elif sharing.mode in ("temporal", "spatial"):
            # Side by side (MPS): the engines' memory-bound decode shares the GPU's bandwidth.
            memory = 1.0 + sharing.interference * max(0, k - 1)
        elif sharing.mode == "time_sliced" and k > 1:
            uniform = 1.0 / (k * (1.0 + sharing.switch_overhead))
        if not temporal:
            self.resident, self.slice_end_t = None, _INF
        self._active_now = active
        for key, slot in self.slots.items():
            speed = uniform if speeds is None else speeds[key]
            # A slot whose speed and slowdown stay as they are keeps its linear map (no rebase needed).
            if speed == slot.speed and memory == slot.engine.memory_slowdown:
                continue
            if slot.t0 != t:
                slot.v0, slot.t0 = slot.v_at(t), t
            slot.speed = speed
            slot.engine.set_memory_slowdown(memory, slot.v0)

    def _temporal(self, active: list[str], t: float) -> dict[str, float]:
        """One context resident for a quantum; at its end (or when it idles) the next active one swaps in."""
        sharing = self.sharing
        if self.resident not in active or t >= self.slice_end_t:
            order = sorted(active)
            following = [k for k in order if self.resident is None or k > self.resident] or order
            self.resident = following[0]
            swap = self.slots[self.resident].vram_mb / 1024 / sharing.swap_gb_per_s
            self.swap_end_t = t + swap
            self.slice_end_t = t + swap + sharing.quantum_s
        speeds = dict.fromkeys(self.slots, 0.0)
        speeds[self.resident] = 1.0 if t >= self.swap_end_t else 0.0
        return speeds

    # ---- looking ahead ------------------------------------------------------------------------------

    def project(self, key: str, tracked: Tracked, horizon_s: float = 86_400.0) -> Tracked:
        """What becomes of one request if nothing else arrives: a copy of this GPU run forward."""
        if self._runs_alone(key):
            return self._project_alone(key, tracked, horizon_s)
        return self._project_on_copy(key, tracked, horizon_s)

    def _project_on_copy(self, key: str, tracked: Tracked, horizon_s: float) -> Tracked:
        """The general way: the whole GPU copied and run forward event by event."""
        ghost = self.clone()
        slot = ghost.slots[key]
        mine = next((tr for tr in slot.tracked.values() if tr.seq.seq_id == tracked.seq.seq_id), None)
        if mine is None:
            return tracked
        deadline = self.t + horizon_s
        while mine.finished_t is None:
            at = ghost.next_event_t()
            if at == _INF or at > deadline:
                break
            ghost.sync(at)
        return mine

    def _runs_alone(self, key: str) -> bool:
        """Whether `key`'s engine is the only busy one: then no sharing decision can change before its
        requests end (an engine alone runs at full speed in every mode, and nothing else has work to
        start), so its virtual clock maps to simulated time linearly from now on."""
        slot = self.slots[key]
        return slot.speed > 0 and all(s is slot or not s.engine.busy for s in self.live.values())

    def _project_alone(self, key: str, tracked: Tracked, horizon_s: float) -> Tracked:
        """`project` for an engine that runs alone (the common case: the request path of the manual
        clock): only that engine is copied and run forward, without the GPU's event loop."""
        slot = self.slots[key]
        seq = slot.engine.project_alone(tracked.seq)
        if seq is None:
            return tracked
        mine = Tracked(seq, tracked.arrived_t, tracked.admitted_t, tracked.first_token_t, tracked.finished_t)
        return self._stamped(slot, mine, horizon_s)

    def answer_alone(self, key: str, seq: Sequence, t: float, horizon_s: float = 86_400.0) -> Tracked:
        """`submit`, `project` and `cancel` at one instant, on a GPU where nothing runs (no live slot):
        the request's future on a copy of its engine, the GPU left as those three would leave it (the
        slot's map moved onto `t`, the engine idle, nobody's speed changed)."""
        self.sync(t)
        if self.live:
            raise RuntimeError("answer_alone needs a GPU where nothing runs")
        slot = self.slots[key]
        self._bring_up_to(key, slot, t)
        return self._stamped(slot, Tracked(slot.engine.answer_alone(seq, slot.v0), t), horizon_s)

    def _stamped(self, slot: _Slot, mine: Tracked, horizon_s: float) -> Tracked:
        """A projected copy's moments in simulated time, those within the horizon (the slot runs alone
        at its present speed until then)."""
        seq = mine.seq
        deadline = self.t + horizon_s
        if mine.admitted_t is None and seq.admitted_v is not None:
            mine.admitted_t = slot.t_at(seq.admitted_v)
        if mine.first_token_t is None and seq.first_token_v is not None and slot.t_at(seq.first_token_v) <= deadline:
            mine.first_token_t = slot.t_at(seq.first_token_v)
        if mine.finished_t is None and seq.finished_v is not None and slot.t_at(seq.finished_v) <= deadline:
            mine.finished_t = slot.t_at(seq.finished_v)
        return mine

    def clone(self) -> GpuRuntime:
        ghost = GpuRuntime(self.sharing)
        ghost.t, ghost.resident, ghost.slice_end_t, ghost.swap_end_t = (
            self.t,
            self.resident,
            self.slice_end_t,
            self.swap_end_t,
        )
        for key, slot in self.slots.items():
            engine, copies = slot.engine.clone()
            tracked = {
                sid: Tracked(
                    copies[id(tr.seq)],
                    tr.arrived_t,
                    tr.admitted_t,
                    tr.first_token_t,
                    tr.finished_t,
                )
                for sid, tr in slot.tracked.items()
                if id(tr.seq) in copies
            }
            ghost.slots[key] = copy = _Slot(engine, slot.vram_mb, slot.speed, slot.t0, slot.v0, tracked, slot.stamped)
            if key in self.live:
                ghost.live[key] = copy
        ghost._active_now = list(self._active_now)
        ghost._vram_mb = self._vram_mb
        return ghost

    def next_token_t(self, key: str, tracked: Tracked) -> float:
        """When the request's next token comes if nothing else changes (inf: not scheduled yet)."""
        slot = self.slots.get(key)
        if slot is None:
            return _INF
        v = slot.engine.next_token_v(tracked.seq)
        return _INF if v is None else slot.t_at(v)

    def earliest_end_t(self, key: str, tracked: Tracked) -> float:
        """The soonest the request could end (inf: not scheduled yet), in simulated time, unless a request
        leaves the GPU before: until another engine's next event (or a quantum's end) the GPU is shared
        as it is now, and that event may speed this slot up (an engine going idle), so this is never
        later than it."""
        if tracked.finished_t is not None:
            return tracked.finished_t
        slot = self.slots.get(key)
        v = None if slot is None else slot.engine.earliest_end_v(tracked.seq)
        if slot is None or v is None:
            return _INF
        return min(slot.t_at(v), self.next_event_t(excluding=key))

    def tracked(self) -> Iterator[Tracked]:
        for slot in self.live.values():
            yield from slot.tracked.values()
