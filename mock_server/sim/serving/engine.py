"""One model server: a continuous-batching engine, iteration by iteration, on its own (virtual) clock.

The engine of one allocation runs *steps*, as vLLM does: each step decodes one token for every running
sequence and, within a token budget (`max_num_batched_tokens`), prefills a chunk of the sequences still
reading their prompt. Every sequence in a step shares that step's time, so a request's inter-token
latency changes as the batch changes. Admission is FIFO while sequence slots (`max_num_seqs`) and
KV-cache tokens last; when a growing sequence finds no KV left, the youngest running sequence is
preempted (recompute: its KV is freed and it prefills prompt and output again later) — a stall, not an
error. An optional waiting-queue limit refuses new work (`QueueFull`, a 503 on the wire).

Event-driven: while nothing changes (no arrival, no sequence starts or ends decoding, no preemption),
steps are identical but for the KV they read, which grows linearly; so a *run* of such steps is one
record (start, first step's time, growth per step, count), and the time of any step end is a closed
form. Nothing ticks per token. The clock here is *virtual*: the sharing layer (`gpu.py`) says how fast
it runs against simulated time when several engines share a GPU.

Step time comes from the profile (`StepCost`); noise is a pure function of the engine's seed and the
step number (no random state), so looking ahead (`project`) never changes what happens.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from mock_server.sim.serving.cost import StepCost

# Virtual times are sums of floats: a step that ends within this of a moment has ended by it.
EPS = 1e-9
# Futures remembered per engine (`project_alone`, `Serving.answer_at_once`), at most; then forgotten at once.
_REMEMBERED = 256

K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    """A bounded memo: when full it forgets everything at once (load tests repeat a few request shapes,
    so it refills in a few requests; no ordering to maintain on the hot path)."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._known.get(key)

    def remember(self, key: K, value: V) -> None:
        if len(self._known) >= _REMEMBERED:
            self._known.clear()
        self._known[key] = value

    def __len__(self) -> int:
        return len(self._known)


class QueueFull(Exception):
    """The engine's waiting queue is at its limit."""


@dataclass(eq=False, slots=True)
class Sequence:
    """One request inside an engine. Times are the engine's virtual seconds."""

    seq_id: int
    prompt_tokens: int
    output_tokens: int
    """How many tokens it will generate in all (decided before it starts: the workload's draw)."""
    submitted_v: float
    prefill_left: int = 0
    """Tokens still to prefill: the prompt, or prompt and output again after a preemption."""
    generated: int = 0
    admitted_v: float | None = None
    first_token_v: float | None = None
    last_token_v: float | None = None
    finished_v: float | None = None
    preemptions: int = 0
    kv: int = 0
    """KV-cache tokens it holds."""

    def __post_init__(self) -> None:
        self.prefill_left = self.prompt_tokens

    @property
    def done(self) -> bool:
        return self.finished_v is not None

    @property
    def decoding(self) -> bool:
        return self.prefill_left == 0 and not self.done


@dataclass(slots=True)
class Run:
    """Steps of one composition: `count` steps from `start_v`, the first lasting `first_s`, each next
    `growth_s` longer (its decode reads more KV). `prefill` is set only for a single prefill step."""

    start_v: float
    first_s: float
    growth_s: float
    count: int
    decoding: list[Sequence]
    prefill: list[tuple[Sequence, int]] = field(default_factory=list)
    factor: float = 1.0
    """What its steps were multiplied by (noise, co-tenants' slowdown): both factors ≥ 1, drawn afresh
    when the run is cut and planned again, so its steps without them are the fastest a re-plan gives."""

    def end_of(self, steps: int) -> float:
        """The virtual time at which its `steps`-th step ends."""
        return self.start_v + steps * self.first_s + self.growth_s * steps * (steps - 1) / 2

    @property
    def end_v(self) -> float:
        return self.end_of(self.count)

    def steps_done_by(self, v: float) -> int:
        """How many of its steps have ended at virtual time `v` (closed form, then nudged for rounding)."""
        v += EPS
        if v <= self.start_v:
            return 0
        elapsed = v - self.start_v
        if self.growth_s <= 0:
            k = int(elapsed // self.first_s) if self.first_s > 0 else self.count
        else:
            a, b = self.growth_s / 2, self.first_s - self.growth_s / 2
            k = int((-b + math.sqrt(b * b + 4 * a * elapsed)) / (2 * a))
        k = max(0, min(self.count, k))
        while k < self.count and self.end_of(k + 1) <= v:
            k += 1
        while k > 0 and self.end_of(k) > v:
            k -= 1
        return k


class Engine:
    """A continuous-batching model server (see the module docstring)."""

    def __init__(
        self,
        cost: StepCost,
        *,
        kv_capacity: int,
        max_num_seqs: int,
        max_batched_tokens: int,
        max_waiting: int | None = None,
        on_finish: Callable[[Sequence], None] | None = None,
    ) -> None:
        if kv_capacity <= 0:
            raise ValueError("an engine needs KV-cache room for at least one token")
        self.cost = cost
        self.kv_capacity = kv_capacity
        self.max_num_seqs = max_num_seqs
        self.max_batched_tokens = max_batched_tokens
        self.max_waiting = max_waiting
        self.on_finish = on_finish
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.kv_used = 0
        self.steps = 0
        """Steps completed: the noise of a step is keyed on its number."""
        self.run: Run | None = None
        self.memory_slowdown = 1.0
        """Set by the GPU's sharing layer: co-tenants running on the same memory bandwidth (MPS)."""
        self.v = 0.0
        """Virtual time up to which the engine has been advanced."""
        self._projections: Memo[tuple[object, ...], tuple[float | None, float | None, float | None, int, int]] = Memo()
        """`project_alone`'s memo: the future of a lone sequence, as offsets from `v`, by engine state."""
        self.answers: Memo[tuple[object, ...], object] = Memo()
        """`Serving.answer_at_once`'s memo: a request's timeline on this engine while its GPU is idle."""

    # ---- the outside world --------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether it has anything to do (an idle engine costs its GPU's other tenants nothing)."""
        return bool(self.running or self.waiting)

    def submit(self, seq: Sequence, v: float) -> None:
        self.advance_to(v)
        if self.max_waiting is not None:
            # Requests that a free sequence slot will take at the next step do not count as waiting.
            queued = len(self.waiting) + 1 - max(0, self.max_num_seqs - len(self.running))
            if queued > self.max_waiting:
                raise QueueFull(f"{len(self.waiting)} requests already wait for {self.max_num_seqs} running")
        self.waiting.append(seq)
        if self.run is None:
            self._plan(v)
        else:
            self._cut_after_current_step(v)

    def cancel(self, seq: Sequence, v: float) -> None:
        """The request went away (client gone, allocation ended): it stops taking part from the next step."""
        self.advance_to(v)
        if seq in self.waiting:
            self.waiting.remove(seq)
        elif seq in self.running:
            run = self.run
            if run is not None and run.steps_done_by(v) == 0 and v <= run.start_v + EPS:
                # The step it was to be in has not begun: it is planned again without it below,
                # rather than run empty (on the manual clock, where a request is answered and gone at
                # the instant it came, that empty step delayed every next request by one step).
                self.run = None
            else:
                self._cut_after_current_step(v)
            # The step in progress finishes without it: it is dropped from the run now.
            if self.run is not None:
                self.run.decoding = [s for s in self.run.decoding if s is not seq]
                self.run.prefill = [(s, n) for s, n in self.run.prefill if s is not seq]
            self.running.remove(seq)
            self.kv_used -= seq.kv
            seq.kv = 0
        if seq.finished_v is None:
            seq.finished_v = v
        if self.run is None and self.busy:
            self._plan(v)

    def set_memory_slowdown(self, factor: float, v: float) -> None:
        """Co-tenants changed: the step in progress ends as planned, the next ones take the new factor."""
        if factor == self.memory_slowdown:
            return
        self.advance_to(v)
        self.memory_slowdown = factor
        self._cut_after_current_step(v)

    def next_event_v(self) -> float | None:
        """When the engine next changes on its own (the end of its current run), or None when idle."""
        return self.run.end_v if self.run is not None else None

    def next_token_v(self, seq: Sequence) -> float | None:
        """When `seq` next gets a token, without arrivals in between: the end of the next step it is in."""
        run = self.run
        if run is None or seq.done:
            return None
        if any(s is seq for s in run.decoding) or any(s is seq and _finishes_prefill(s, n) for s, n in run.prefill):
            k = run.steps_done_by(self.v)
            return run.end_of(min(run.count, k + 1))
        return None

    def earliest_end_v(self, seq: Sequence) -> float | None:
        """The soonest `seq` could end, whatever arrives (None: nothing is scheduled). The step under way
        ends as planned; the rest of the run may be cut and planned again (an arrival, a co-tenant),
        with other noise and slowdown but a batch no smaller, so its steps take at least their time
        without those factors (on a profile whose step time does not fall as the batch grows); every
        token beyond takes at least the shortest step there is."""
        if seq.finished_v is not None:
            return seq.finished_v
        run = self.run
        if run is None:
            return None
        left = max(1, seq.output_tokens - seq.generated)
        shortest = self.cost.shortest_step_s
        done = run.steps_done_by(self.v)
        step_end = run.end_of(min(run.count, done + 1))
        if not any(s is seq for s in run.decoding):
            # Waiting or prefilling: its first token comes at the end of this step at the soonest.
            return step_end + (left - 1) * shortest
        in_run = min(left, run.count - done)
        planned = run.end_of(done + in_run) - step_end
        rest = planned / run.factor if self.cost.monotone else (in_run - 1) * shortest
        return step_end + rest + (left - in_run) * shortest

    def advance_to(self, v: float) -> None:
        """Let every step that ends by virtual time `v` happen."""
        while self.run is not None and self.run.end_v <= v + EPS:
            run = self.run
            self._complete(run, run.count)
            self.run = None
            self._plan(run.end_v)
        if self.run is not None:
            done = self.run.steps_done_by(v)
            if done:
                self._complete(self.run, done, partial=True)
        self.v = max(self.v, v)

    # ---- steps --------------------------------------------------------------------------------------

    def _cut_after_current_step(self, v: float) -> None:
        """Something changed at `v`: the step in progress ends as planned, then the engine plans afresh."""
        run = self.run
        if run is None:
            return
        done = run.steps_done_by(v)
        if done < run.count:
            run.count = done + 1  # the step in progress still completes

    def _complete(self, run: Run, steps: int, *, partial: bool = False) -> None:
        """Account `steps` steps of `run` (on a partial completion, the run continues after them)."""
        end = run.end_of(steps)
        for seq, chunk in run.prefill:
            seq.prefill_left -= chunk
            if seq.prefill_left == 0:
                self._emit(seq, end, 1)
        for seq in run.decoding:
            self._emit(seq, run.start_v, steps, run)
        self.steps += steps
        if partial:
            # The rest of the run starts where these steps ended, each step as long as it was planned.
            run.first_s += run.growth_s * steps
            run.start_v = end
            run.count -= steps
            run.prefill = []
        for seq in [s for s in self.running if s.generated >= s.output_tokens and not s.done]:
            self._finish(seq, seq.last_token_v if seq.last_token_v is not None else end)

    def _emit(self, seq: Sequence, start_or_end: float, tokens: int, run: Run | None = None) -> None:
        if seq.done or tokens <= 0:
            return
        if run is None:
            first_end = last_end = start_or_end
        else:
            first_end, last_end = run.end_of(1), run.end_of(tokens)
        if seq.first_token_v is None:
            seq.first_token_v = first_end
        seq.generated += tokens
        seq.kv += tokens
        self.kv_used += tokens
        seq.last_token_v = last_end

    def _finish(self, seq: Sequence, at: float) -> None:
        seq.finished_v = at
        self.running.remove(seq)
        self.kv_used -= seq.kv
        seq.kv = 0
        if self.on_finish is not None:
            self.on_finish(seq)

    def _admit(self, v: float) -> None:
        while self.waiting and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            need = seq.prefill_left + 1
            if self.kv_used + need > self.kv_capacity and self.running:
                return  # FIFO: the head waits for room; nothing overtakes it
            if need > self.kv_capacity:
                # Longer than the whole cache: it can never run (the simulator refuses such requests).
                self.waiting.popleft()
                seq.finished_v = v
                continue
            self.waiting.popleft()
            if seq.admitted_v is None:
                seq.admitted_v = v
            seq.kv = seq.prefill_left
            self.kv_used += seq.kv
            self.running.append(seq)

    def _make_room(self, v: float, growth: int) -> None:
        """Preempt the youngest running sequences until the next step's KV growth fits."""
        while self.kv_used + growth > self.kv_capacity and len(self.running) > 1:
            victim = self.running.pop()
            self.kv_used -= victim.kv
            victim.kv = 0
            victim.prefill_left = victim.prompt_tokens + victim.generated
            victim.preemptions += 1
            self.waiting.appendleft(victim)
            growth = sum(1 for s in self.running if s.decoding)

    def _plan(self, v: float) -> None:
        """The next run, from a step boundary at `v`."""
        self.run = None
        self._admit(v)
        if not self.running:
            return
        decoding = [s for s in self.running if s.decoding]
        self._make_room(v, len(decoding))
        decoding = [s for s in self.running if s.decoding]
        prefilling = [s for s in self.running if s.prefill_left > 0]
        budget = max(0, self.max_batched_tokens - len(decoding))
        chunks: list[tuple[Sequence, int]] = []
        for seq in prefilling:
            if budget <= 0:
                break
            chunk = min(seq.prefill_left, budget)
            chunks.append((seq, chunk))
            budget -= chunk
        n = len(decoding)
        kv = self.kv_used
        noise = self.cost.noise(self.steps)
        if chunks:
            prefill_tokens = sum(c for _, c in chunks)
            context = sum(s.prompt_tokens + s.generated - s.prefill_left for s, _ in chunks)
            step = self.cost.step_s(n, kv, prefill_tokens, context, self.memory_slowdown) * noise
            self.run = Run(v, step, 0.0, 1, decoding, chunks)
            return
        if not decoding:
            return
        left = min(s.output_tokens - s.generated for s in decoding)
        room = (self.kv_capacity - self.kv_used) // n
        count = max(1, min(left, room)) if room > 0 else 1
        first = self.cost.step_s(n, kv, 0, 0, self.memory_slowdown) * noise
        growth = self.cost.kv_growth_s(n, self.memory_slowdown) * noise
        self.run = Run(v, first, growth, count, decoding, factor=noise * self.memory_slowdown)

    # ---- looking ahead ------------------------------------------------------------------------------

    def project(self, watched: Iterable[Sequence]) -> dict[int, Sequence]:
        """What becomes of the watched sequences if nothing else arrives: their copies, run to the end on
        a copy of the engine (the engine itself is left as it is)."""
        ghost, copies = self.clone()
        mine = [copies[id(s)] for s in watched if id(s) in copies]
        ghost._run_until_done(mine)
        return {s.seq_id: s for s in mine}

    def answer_alone(self, seq: Sequence, v: float) -> Sequence:
        """What becomes of `seq` submitted at `v` to this idle engine if nothing else arrives: `submit`
        and `project` on a copy, the engine itself untouched (a request answered and gone at one
        instant leaves it idle, as it was)."""
        ghost, _ = self.clone()
        ghost.submit(seq, v)
        ghost._run_until_done([seq])
        return seq

    def _run_until_done(self, watched: list[Sequence]) -> None:
        """Run from step to step until every watched sequence is done (or nothing is left to run)."""
        for _ in range(1_000_000):
            if all(s.done for s in watched) or self.run is None:
                break
            self.advance_to(self.run.end_v)

    def project_alone(self, seq: Sequence) -> Sequence | None:
        """`project([seq])` for a sequence that is the engine's only one: the projection is then a pure
        function of the engine's state and the sequence's, which is remembered. Load tests send the same
        shape of request over and over, and on the manual clock the engine's state does not move between
        them, so the request path mostly looks its answer up. Offsets are kept relative to `v`."""
        if self.sequences() != [seq]:
            return self.project([seq]).get(seq.seq_id)
        key = self._state_key(seq)
        known = self._projections.get(key)
        if known is None:
            copy = self.project([seq]).get(seq.seq_id)
            if copy is None:
                return None
            known = (
                _offset(copy.admitted_v, self.v),
                _offset(copy.first_token_v, self.v),
                _offset(copy.finished_v, self.v),
                copy.generated,
                copy.preemptions,
            )
            self._projections.remember(key, known)
        admitted, first, finished, generated, preemptions = known
        copy = _copy(seq)
        copy.admitted_v = seq.admitted_v if seq.admitted_v is not None else _at(admitted, self.v)
        copy.first_token_v = seq.first_token_v if seq.first_token_v is not None else _at(first, self.v)
        copy.finished_v = _at(finished, self.v)
        copy.generated, copy.preemptions = generated, preemptions
        return copy

    def _state_key(self, seq: Sequence) -> tuple[object, ...]:
        """Everything a lone sequence's future depends on, relative to `v` (the cost model, the capacity
        and the limits belong to the engine and never change)."""
        run = self.run
        shape = (
            None
            if run is None
            else (
                run.start_v - self.v,
                run.first_s,
                run.growth_s,
                run.count,
                len(run.decoding),
                tuple(n for _, n in run.prefill),
                any(s is seq for s in run.decoding),
            )
        )
        return (
            self.steps,
            self.kv_used,
            self.memory_slowdown,
            shape,
            seq.prompt_tokens,
            seq.output_tokens,
            seq.prefill_left,
            seq.generated,
            seq.kv,
            seq.preemptions,
            seq.admitted_v is None,
            seq.first_token_v is None,
            bool(self.waiting),
        )

    def sequences(self) -> list[Sequence]:
        return [*self.running, *self.waiting]

    def clone(self) -> tuple[Engine, dict[int, Sequence]]:
        """A copy with copied sequences (by `id()` of the originals), for looking ahead."""
        copies = {id(s): _copy(s) for s in self.sequences()}
        ghost = Engine(
            self.cost,
            kv_capacity=self.kv_capacity,
            max_num_seqs=self.max_num_seqs,
            max_batched_tokens=self.max_batched_tokens,
            max_waiting=self.max_waiting,
        )
        ghost.waiting = deque(copies[id(s)] for s in self.waiting)
        ghost.running = [copies[id(s)] for s in self.running]
        ghost.kv_used = self.kv_used
        ghost.steps = self.steps
        ghost.memory_slowdown = self.memory_slowdown
        ghost.v = self.v
        run = self.run
        if run is not None:
            ghost.run = Run(
                run.start_v,
                run.first_s,
                run.growth_s,
                run.count,
                [copies[id(s)] for s in run.decoding if id(s) in copies],
                [(copies[id(s)], n) for s, n in run.prefill if id(s) in copies],
                run.factor,
            )
        return ghost, copies


def _finishes_prefill(seq: Sequence, chunk: int) -> bool:
    return seq.prefill_left - chunk == 0


def _offset(v: float | None, origin: float) -> float | None:
    return None if v is None else v - origin


def _at(offset: float | None, origin: float) -> float | None:
    return None if offset is None else origin + offset


def _copy(seq: Sequence) -> Sequence:
    copy = Sequence(seq.seq_id, seq.prompt_tokens, seq.output_tokens, seq.submitted_v)
    copy.prefill_left = seq.prefill_left
    copy.generated = seq.generated
    copy.admitted_v = seq.admitted_v
    copy.first_token_v = seq.first_token_v
    copy.last_token_v = seq.last_token_v
    copy.finished_v = seq.finished_v
    copy.preemptions = seq.preemptions
    copy.kv = seq.kv
    return copy
