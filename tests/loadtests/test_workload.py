"""The pure parts of the locustfiles: the workload mix, the event-stream reader and the load shapes."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from loadtests._shapes import SHAPES, plan_shape
from loadtests._sse import Event, SseParser, StreamOutcome
from loadtests._workload import MAX_INFERENCES, MODELS, PROMPT_CLASSES, PromptClass, harpoon_text, plan_session

# ---- workload --------------------------------------------------------------------------------------


def test_the_session_mix_matches_the_documented_weights() -> None:
    rng = random.Random(1)
    sessions = [plan_session(rng) for _ in range(3000)]
    inferences = [i for s in sessions for i in s.inferences]
    assert {len(s.inferences) for s in sessions} == set(range(1, MAX_INFERENCES + 1))
    models = Counter(s.model.name for s in sessions)
    assert models["gemma-270m"] / len(sessions) == pytest.approx(0.7, abs=0.03)
    assert sum(i.stream for i in inferences) / len(inferences) == pytest.approx(0.25, abs=0.02)
    classes = Counter(i.prompt_class for i in inferences)
    for prompt_class in PROMPT_CLASSES:
        assert classes[prompt_class.name] / len(inferences) == pytest.approx(prompt_class.weight / 100, abs=0.02)


@pytest.mark.parametrize("prompt_class", PROMPT_CLASSES, ids=lambda p: p.name)
def test_prompt_length_and_max_tokens_follow_the_class(prompt_class: PromptClass) -> None:
    rng = random.Random(2)
    seen = [i for _ in range(400) for i in plan_session(rng).inferences if i.prompt_class == prompt_class.name]
    assert seen
    for inference in seen:
        body_words = len(inference.prompt.split(":", 1)[1].split())
        assert prompt_class.min_words <= body_words <= prompt_class.max_words
        assert inference.max_tokens == prompt_class.max_tokens


def test_a_workload_replays_from_its_seed() -> None:
    assert plan_session(random.Random("0:3")) == plan_session(random.Random("0:3"))
    assert plan_session(random.Random("0:3")) != plan_session(random.Random("0:4"))


def test_the_requests_match_the_contract_shapes() -> None:
    session = plan_session(random.Random(5))
    assert session.model in MODELS
    body = session.inferences[0].body("alloc_0000000000000000")
    assert set(body) == {"allocation_id", "prompt", "max_tokens", "temperature", "stream"}
    assert set(session.model.requirements()) == {"tflops", "vram_mb", "model"}


@pytest.mark.parametrize("label", ["simple", "complex"])
def test_harpoon_texts_are_nonempty_and_seeded(label: str) -> None:
    assert harpoon_text(random.Random(1), label) == harpoon_text(random.Random(1), label)
    assert 1 <= len(harpoon_text(random.Random(1), label)) <= 100_000


# ---- server-sent events ----------------------------------------------------------------------------

STREAM = (
    'event: token\ndata: {"index": 0, "text": " One"}\n\n'
    'event: token\r\ndata: {"index": 1, "text": " two"}\r\n\r\n'
    ": a comment\n"
    'event: done\ndata: {"usage": {"completion_tokens": 2}, "timings": {"ttft_ms": 8.4, "queue_ms": 0.0}}\n\n'
)


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 64, len(STREAM)])
def test_events_are_read_whatever_pieces_the_text_arrives_in(piece: int) -> None:
    parser, events = SseParser(), []
    for start in range(0, len(STREAM), piece):
        events += parser.feed(STREAM[start : start + piece])
    assert [e.event for e in events] == ["token", "token", "done"]
    assert json.loads(events[1].data) == {"index": 1, "text": " two"}
    outcome = StreamOutcome()
    outcome.add(events)
    assert outcome.problem() is None
    assert outcome.tokens == 2


def test_an_unfinished_event_is_dropped() -> None:
    assert SseParser().feed("event: token\ndata: {}\n") == []


@pytest.mark.parametrize(
    ("events", "problem"),
    [
        ([Event("token", "{}")], "without a `done` event"),
        ([Event("error", '{"code": "allocation_not_active", "detail": "released"}')], "allocation_not_active"),
        ([Event("done", "not json")], "not JSON"),
        ([Event("done", "{}")], "without usage and timings"),
        (
            [Event("done", '{"usage": {"completion_tokens": 3}, "timings": {"ttft_ms": 1, "queue_ms": 0}}')],
            "0 token events but usage.completion_tokens = 3",
        ),
        ([Event("done", "{}"), Event("token", "{}")], "`token` event after the stream ended"),
    ],
)
def test_a_broken_stream_says_what_is_wrong(events: list[Event], problem: str) -> None:
    outcome = StreamOutcome()
    outcome.add(events)
    assert problem in (outcome.problem() or "")


# ---- shapes -----------------------------------------------------------------------------------------


def _users(name: str, peak: int, duration: float) -> list[int]:
    plan = plan_shape(name, peak, None, duration)
    return [tick[0] for t in range(int(duration)) if (tick := plan.tick(float(t))) is not None]


def test_every_shape_ends_by_itself_at_its_duration() -> None:
    for name in SHAPES:
        plan = plan_shape(name, 10, 2.0, 30)
        assert plan.tick(29.9) is not None
        assert plan.tick(30.0) is None
        assert plan.tick(0) == (max(1, SHAPES[name].users_at(0, 10)), 2.0)


def test_without_a_run_time_each_shape_has_its_own_duration() -> None:
    assert {name: plan_shape(name, None, None, None).duration_s for name in SHAPES} == {
        "ramp": 60,
        "spike": 60,
        "step": 120,
        "soak": 1800,
    }


def test_the_shapes_are_what_their_names_say() -> None:
    assert _users("ramp", 8, 10) == [1, 1, 2, 3, 4, 5, 6, 7, 8, 8]
    assert _users("spike", 10, 10) == [2, 2, 2, 2, 10, 10, 2, 2, 2, 2]
    assert _users("step", 8, 8) == [2, 2, 4, 4, 6, 6, 8, 8]
    soak = _users("soak", 4, 100)
    assert soak[:3] == [1, 1, 1]
    assert set(soak[10:]) == {4}


def test_the_peak_defaults_to_ten_users_and_the_rate_to_the_peak() -> None:
    plan = plan_shape("step", None, None, 40)
    assert (plan.peak, plan.spawn_rate) == (10, 10.0)
