"""Generated text, the usage ledger, idempotency, quotas, rate limits, release and tenant isolation."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping

import pytest

from mock_server.sim import textgen
from mock_server.sim.clock import ManualClock
from mock_server.sim.errors import IdempotencyConflict, NotFound, QuotaExceeded, RateLimited
from mock_server.sim.model import Allocation, AllocationState, EndReason
from mock_server.sim.simulator import (
    AllocateResult,
    AllocationSpec,
    InferencePlan,
    InferenceSpec,
    Simulator,
    fingerprint,
)

SimFactory = Callable[..., Simulator]


def allocate(
    sim: Simulator, tflops: float = 10.0, vram_mb: int = 100, *, tenant: str = "dev", pool: str = "p"
) -> Allocation:
    return sim.allocate(tenant, AllocationSpec(pool, "m", tflops, vram_mb), request_id="req").allocation


def infer(sim: Simulator, alloc: Allocation, prompt: str = "tell me a story", **kwargs: object) -> InferencePlan:
    spec = InferenceSpec(alloc.allocation_id, prompt, **kwargs)  # type: ignore[arg-type]
    return sim.start_inference(alloc.tenant_id, spec)


# ---- generated text --------------------------------------------------------------------------------


def test_same_model_prompt_and_seed_give_the_same_output(make_sim: SimFactory) -> None:
    sim = make_sim()
    alloc = allocate(sim)
    first = infer(sim, alloc, seed=7)
    second = infer(sim, alloc, seed=7)
    other_sim = make_sim(seed=99, clock_override=ManualClock())
    third = infer(other_sim, allocate(other_sim), seed=7)
    assert first.output == second.output == third.output
    assert first.tokens == third.tokens
    assert first.output != infer(sim, alloc, seed=8).output
    assert first.output != infer(sim, alloc, prompt="tell me another story", seed=7).output


def test_temperature_zero_without_a_seed_is_greedy(make_sim: SimFactory) -> None:
    sim = make_sim()
    alloc = allocate(sim)
    outputs = {infer(sim, alloc, temperature=0.0).output for _ in range(5)}
    assert len(outputs) == 1
    sampled = {infer(sim, alloc, temperature=1.0).output for _ in range(5)}
    assert len(sampled) > 1


def test_max_tokens_caps_completion_and_sets_finish_reason_length(make_sim: SimFactory) -> None:
    sim = make_sim()
    alloc = allocate(sim)
    natural = infer(sim, alloc, seed=3)
    assert natural.finish_reason == "stop"
    assert natural.completion_tokens >= 8
    capped = infer(sim, alloc, seed=3, max_tokens=5)
    assert capped.completion_tokens == 5
    assert capped.finish_reason == "length"
    assert capped.tokens == natural.tokens[:5]  # the cut output is a prefix of the natural one
    exact = infer(sim, alloc, seed=3, max_tokens=natural.completion_tokens)
    assert exact.tokens == natural.tokens
    assert exact.finish_reason == "stop"


def test_stop_sequences_cut_the_output(make_sim: SimFactory) -> None:
    sim = make_sim()
    alloc = allocate(sim)
    full = infer(sim, alloc, seed=11)
    stop = full.tokens[5]
    assert stop.strip()  # a word (or punctuation), so the stop sequence is not blank
    expected = full.output[: full.output.find(stop)]
    cut = infer(sim, alloc, seed=11, stop=(stop,))
    assert cut.output == expected
    assert stop not in cut.output
    assert cut.completion_tokens < full.completion_tokens
    assert cut.finish_reason == "stop"


def test_the_earliest_stop_sequence_wins_and_an_unmatched_one_leaves_finish_reason_length() -> None:
    full = textgen.generate(textgen.Draws("m", "a prompt", 5), length=100)
    text = full.text
    late, early = full.tokens[6], full.tokens[2]
    cut = textgen.generate(textgen.Draws("m", "a prompt", 5), length=100, stop=[late, early])
    assert cut.text == text[: min(text.find(late), text.find(early))]
    short = textgen.generate(textgen.Draws("m", "a prompt", 5), length=2, stop=["no such stop sequence"])
    assert len(short.tokens) == 2
    assert short.finish_reason == "length"


# ---- usage ledger ----------------------------------------------------------------------------------


def priced_sim(make_sim: SimFactory) -> Simulator:
    return make_sim([{"price_per_tflops_hour": 0.36, "tflops_per_gpu": 100.0, "vram_mb_per_gpu": 1000}])


def test_usage_bills_tflops_and_vram_for_the_time_held(make_sim: SimFactory, clock: ManualClock) -> None:
    sim = priced_sim(make_sim)
    alloc = allocate(sim, 10, 200)
    clock.advance(100)
    sim.release("dev", alloc.allocation_id)
    clock.advance(500)  # nothing is billed after the release
    usage = sim.usage("dev")
    (record,), totals = usage.records, usage.totals
    assert record.allocation_id == alloc.allocation_id
    assert record.tflops_seconds == pytest.approx(10 * 100)
    assert record.vram_mb_seconds == pytest.approx(200 * 100)
    assert record.cost == pytest.approx(1000 / 3600 * 0.36)
    assert record.started_at == 0.0
    assert record.ended_at == 100.0
    assert totals.allocations == 1
    assert totals.cost == pytest.approx(0.1)


def test_an_active_allocation_accrues_until_now(make_sim: SimFactory, clock: ManualClock) -> None:
    sim = priced_sim(make_sim)
    allocate(sim, 4, 100)
    clock.advance(30)
    assert sim.usage("dev").totals.tflops_seconds == pytest.approx(120)
    clock.advance(30)
    (record,) = sim.usage("dev").records
    assert record.tflops_seconds == pytest.approx(240)
    assert record.vram_mb_seconds == pytest.approx(6000)
    assert record.ended_at is None


def test_usage_totals_are_the_sum_of_the_records(make_sim: SimFactory, clock: ManualClock) -> None:
    sim = priced_sim(make_sim)
    a = allocate(sim, 10, 200)
    clock.advance(10)
    allocate(sim, 2.5, 150)
    clock.advance(7)
    sim.release("dev", a.allocation_id)
    allocate(sim, 0.1, 100)
    clock.advance(3.3)
    allocate(sim, 1, 100, tenant="team-b")  # another tenant's usage is not in dev's bill
    usage = sim.usage("dev")
    records, totals = usage.records, usage.totals
    assert totals.allocations == len(records) == 3
    assert totals.tflops_seconds == pytest.approx(sum(r.tflops_seconds for r in records))
    assert totals.vram_mb_seconds == pytest.approx(sum(r.vram_mb_seconds for r in records))
    assert totals.cost == pytest.approx(sum(r.cost for r in records))
    assert totals.tflops_seconds == pytest.approx(10 * 17 + 2.5 * 10.3 + 0.1 * 3.3)
    assert totals.vram_mb_seconds == pytest.approx(200 * 17 + 150 * 10.3 + 100 * 3.3)
    assert totals.cost == pytest.approx(totals.tflops_seconds / 3600 * 0.36)


def test_a_usage_window_clips_the_time_held_to_whole_periods(make_sim: SimFactory, clock: ManualClock) -> None:
    sim = make_sim(
        [{"price_per_tflops_hour": 0.36, "tflops_per_gpu": 100.0, "vram_mb_per_gpu": 1000}],
        simulation={"usage_period_seconds": 25},
    )
    a = allocate(sim, 10, 100)  # held 0 → 100
    clock.advance(50)
    b = allocate(sim, 2, 300)  # held 50 → now (200)
    clock.advance(50)
    sim.release("dev", a.allocation_id)
    clock.advance(50)
    late = allocate(sim, 1, 100)  # created at 150
    clock.advance(50)
    usage = sim.usage("dev", since=30, until=70)  # widened to the periods [25, 75)
    assert (usage.window.since, usage.window.until) == (25, 75)
    by_id = {r.allocation_id: r for r in usage.records}
    assert set(by_id) == {a.allocation_id, b.allocation_id}  # `late` starts after the window
    assert by_id[a.allocation_id].tflops_seconds == pytest.approx(10 * 50)
    assert by_id[b.allocation_id].tflops_seconds == pytest.approx(2 * 25)
    assert by_id[b.allocation_id].vram_mb_seconds == pytest.approx(300 * 25)
    assert usage.totals.tflops_seconds == pytest.approx(550)
    after = sim.usage("dev", since=120).records  # from 100
    assert {r.allocation_id for r in after} == {b.allocation_id, late.allocation_id}  # `a` ended at 100
    assert {r.allocation_id: r.tflops_seconds for r in after} == pytest.approx(
        {b.allocation_id: 2 * 100, late.allocation_id: 1 * 50}
    )


def test_tokens_accumulate_per_allocation(make_sim: SimFactory) -> None:
    sim = make_sim()
    a = allocate(sim)
    b = allocate(sim)
    first = infer(sim, a, seed=1)
    second = infer(sim, a, prompt="a much longer prompt than the first one", seed=2)
    third = infer(sim, b, seed=3)
    sim.finish_inference(first, first.completion_tokens)
    sim.finish_inference(second, 3)  # cut short: only the delivered tokens count
    sim.finish_inference(third, third.completion_tokens)
    sim.finish_inference(third, third.completion_tokens)  # finishing twice counts once
    by_id = {r.allocation_id: r for r in sim.usage("dev").records}
    assert by_id[a.allocation_id].prompt_tokens == first.prompt_tokens + second.prompt_tokens
    assert by_id[a.allocation_id].completion_tokens == first.completion_tokens + 3
    assert by_id[b.allocation_id].prompt_tokens == third.prompt_tokens
    assert by_id[b.allocation_id].completion_tokens == third.completion_tokens
    totals = sim.usage("dev").totals
    assert totals.completion_tokens == first.completion_tokens + 3 + third.completion_tokens


# ---- idempotency -----------------------------------------------------------------------------------

BODY: dict[str, object] = {"pool_id": "p", "model": "m", "requirements": {"tflops": 10, "vram_mb": 100}}


def keyed(sim: Simulator, key: str, body: Mapping[str, object], tflops: float = 10.0) -> AllocateResult:
    spec = AllocationSpec("p", "m", tflops, 100)
    return sim.allocate("dev", spec, request_id="req", idempotency_key=key, body_fingerprint=fingerprint(body))


def test_same_idempotency_key_and_body_replays_the_allocation(make_sim: SimFactory) -> None:
    sim = make_sim()
    first = keyed(sim, "k1", BODY)
    stats = sim.pool_stats("p")[0]
    replay = keyed(sim, "k1", dict(reversed(BODY.items())))  # key order does not change the fingerprint
    assert first.replayed is False
    assert replay.replayed is True
    assert replay.allocation.allocation_id == first.allocation.allocation_id
    assert sim.pool_stats("p")[0] == stats  # nothing new was allocated
    assert len(sim.allocations) == 1
    assert sim.usage("dev").totals.allocations == 1


def test_same_idempotency_key_with_a_different_body_is_a_conflict(make_sim: SimFactory) -> None:
    sim = make_sim()
    keyed(sim, "k1", BODY)
    with pytest.raises(IdempotencyConflict) as err:
        keyed(sim, "k1", BODY | {"priority": 9}, tflops=20)
    assert err.value.code == "idempotency_conflict"
    assert sim.pool_stats("p")[0].tflops_allocated == 10.0
    other_key = keyed(sim, "k2", BODY)  # another key is another request
    assert other_key.replayed is False
    assert sim.pool_stats("p")[0].tflops_allocated == 20.0


def test_idempotency_keys_are_per_tenant(make_sim: SimFactory) -> None:
    sim = make_sim()
    mine = keyed(sim, "k1", BODY)
    spec = AllocationSpec("p", "m", 10, 100)
    theirs = sim.allocate("team-b", spec, request_id="r", idempotency_key="k1", body_fingerprint=fingerprint(BODY))
    assert theirs.replayed is False
    assert theirs.allocation.allocation_id != mine.allocation.allocation_id


def test_idempotency_record_expires_after_its_ttl(make_sim: SimFactory, clock: ManualClock) -> None:
    sim = make_sim(simulation={"idempotency_ttl_seconds": 600})
    first = keyed(sim, "k1", BODY)
    clock.advance(599)
    assert keyed(sim, "k1", BODY).replayed is True
    with pytest.raises(IdempotencyConflict):
        keyed(sim, "k1", BODY | {"labels": {"x": "y"}})
    clock.advance(1)
    fresh = keyed(sim, "k1", BODY | {"labels": {"x": "y"}})  # the old record is gone: no conflict
    assert fresh.replayed is False
    assert fresh.allocation.allocation_id != first.allocation.allocation_id
    assert sim.pool_stats("p")[0].allocations_active == 2


# ---- quota and rate limit --------------------------------------------------------------------------

QUOTA_TENANTS = {
    "dev": {"api_keys": ["dev-key"], "quota": {"max_active_allocations": 2}},
    "team-b": {"api_keys": ["team-b-key"], "quota": {"max_tflops": 25}},
}


def test_max_active_allocations_quota(make_sim: SimFactory) -> None:
    sim = make_sim(tenants=QUOTA_TENANTS)
    first = allocate(sim)
    allocate(sim)
    with pytest.raises(QuotaExceeded) as err:
        allocate(sim)
    assert err.value.code == "quota_exceeded"
    assert sim.pool_stats("p")[0].allocations_active == 2
    sim.release("dev", first.allocation_id)
    assert allocate(sim).active  # the released one no longer counts


def test_max_tflops_quota(make_sim: SimFactory) -> None:
    sim = make_sim(tenants=QUOTA_TENANTS)
    big = allocate(sim, 15, tenant="team-b")
    allocate(sim, 10, tenant="team-b")  # exactly 25
    with pytest.raises(QuotaExceeded):
        allocate(sim, 0.5, tenant="team-b")
    sim.release("team-b", big.allocation_id)
    with pytest.raises(QuotaExceeded):
        allocate(sim, 15.5, tenant="team-b")
    assert allocate(sim, 15, tenant="team-b").tflops == 15


def test_rate_limit_refuses_past_the_burst_and_refills_with_the_clock(make_sim: SimFactory, clock: ManualClock) -> None:
    tenants = {"dev": {"api_keys": ["dev-key"], "rate_limit": {"rps": 0.5, "burst": 2}}}
    sim = make_sim(tenants=tenants)
    sim.take_rate_token("dev")
    sim.take_rate_token("dev")
    with pytest.raises(RateLimited) as err:
        sim.take_rate_token("dev")
    assert err.value.code == "rate_limited"
    assert err.value.retry_after >= 1
    assert err.value.retry_after == 2  # one token at 0.5 per second
    clock.advance(1)  # half a token
    with pytest.raises(RateLimited) as again:
        sim.take_rate_token("dev")
    assert again.value.retry_after == 1
    clock.advance(1)
    sim.take_rate_token("dev")  # refilled
    with pytest.raises(RateLimited):
        sim.take_rate_token("dev")
    clock.advance(1000)  # a long pause refills only up to the burst
    sim.take_rate_token("dev")
    sim.take_rate_token("dev")
    with pytest.raises(RateLimited):
        sim.take_rate_token("dev")


def test_tenant_without_rate_limit_is_never_limited(make_sim: SimFactory) -> None:
    sim = make_sim()
    for _ in range(1000):
        sim.take_rate_token("dev")
    assert sim.config.tenants["dev"].rate_limit is None


# ---- release and tenant isolation ------------------------------------------------------------------


def test_release_is_idempotent_and_gives_capacity_back_once(make_sim: SimFactory, clock: ManualClock) -> None:
    sim = make_sim(tenants={"dev": {"api_keys": ["dev-key"], "quota": {"max_active_allocations": 2}}})
    keeper = allocate(sim, 30, 200)
    alloc = allocate(sim, 20, 300)
    assert keeper.gpu_id == alloc.gpu_id
    clock.advance(10)
    first = sim.release("dev", alloc.allocation_id)
    clock.advance(10)
    second = sim.release("dev", alloc.allocation_id)
    assert first.state is second.state is AllocationState.RELEASED
    assert second.end_reason is EndReason.RELEASED
    assert second.ended_at == 10.0  # the second release changed nothing
    gpu = sim.gpus[keeper.gpu_id]
    assert gpu.tflops_allocated == 30.0
    assert gpu.vram_mb_allocated == 200
    assert gpu.allocations.keys() == {keeper.allocation_id}
    # The tenant's quota was given back once: one more allocation fits, a second does not.
    allocate(sim)
    with pytest.raises(QuotaExceeded):
        allocate(sim)


def test_another_tenants_allocation_is_not_found(make_sim: SimFactory) -> None:
    sim = make_sim()
    alloc = allocate(sim, tenant="dev")
    with pytest.raises(NotFound):
        sim.get_allocation("team-b", alloc.allocation_id)
    with pytest.raises(NotFound):
        sim.release("team-b", alloc.allocation_id)
    with pytest.raises(NotFound):
        sim.start_inference("team-b", InferenceSpec(alloc.allocation_id, "hi"))
    assert sim.list_allocations("team-b")[0] == []
    assert sim.usage("team-b").totals.allocations == 0
    assert sim.get_allocation("dev", alloc.allocation_id).state is AllocationState.ACTIVE


def test_token_and_length_draws_follow_their_distributions() -> None:
    # The lookup tables stand in for weighted choices and a Gaussian: their shares must be the weights.
    table = textgen._TABLE
    assert sum(t.startswith(" ") for t in table) / len(table) == pytest.approx(0.88, abs=1 / len(table))
    assert table.count("\n\n") / len(table) == pytest.approx(0.02, abs=1 / len(table))
    normal = textgen._NORMAL
    assert statistics.fmean(normal) == pytest.approx(0.0, abs=1e-9)
    assert statistics.pstdev(normal) == pytest.approx(1.0, abs=0.01)
    draws = [textgen.Draws("m", "p", seed).normal() for seed in range(20_000)]
    assert statistics.median(draws) == pytest.approx(0.0, abs=0.03)
    assert sum(d > 1.0 for d in draws) / len(draws) == pytest.approx(0.1587, abs=0.01)
    # A longer answer runs on from a shorter one's text (the stream is read in order, block after block).
    long, short = textgen.generate(textgen.Draws("m", "p", 1), 300), textgen.generate(textgen.Draws("m", "p", 1), 40)
    assert long.tokens[:40] == short.tokens
    # The same request draws the same; another seed, other tokens.
    assert (
        textgen.generate(textgen.Draws("m", "p", 1), 30).tokens
        == textgen.generate(textgen.Draws("m", "p", 1), 30).tokens
    )
    assert (
        textgen.generate(textgen.Draws("m", "p", 1), 30).tokens
        != textgen.generate(textgen.Draws("m", "p", 2), 30).tokens
    )
