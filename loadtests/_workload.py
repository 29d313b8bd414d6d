"""What a simulated customer sends: the model a session allocates, how many inferences it runs, how long
each prompt is, how many tokens it asks for, and whether it streams.

Pure and seeded: every choice is drawn from the `random.Random` passed in, so a user's whole workload
replays from `--workload-seed` and its index.

The mix (docs/load.md): a session allocates gemma-270m 7 times in 10 and qwen-30b otherwise, then runs
1 to 5 inferences; each is streamed 1 time in 4; prompts are short (20–60 words) 70 % of the time,
medium (200–400) 25 % and long (~1,500) 5 %, and `max_tokens` follows the prompt's class.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MAX_INFERENCES = 5
STREAM_WEIGHT = 1
PLAIN_WEIGHT = 3


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    tflops: int
    vram_mb: int
    weight: int

    def requirements(self) -> dict[str, object]:
        return {"tflops": self.tflops, "vram_mb": self.vram_mb, "model": self.name}


# The catalogue's models with the resources configs/models.yaml reserves for them.
MODELS = (Model("gemma-270m", 5, 2048, 7), Model("qwen-30b", 30, 20480, 3))


@dataclass(frozen=True, slots=True)
class PromptClass:
    name: str
    weight: int
    min_words: int
    max_words: int
    max_tokens: int


PROMPT_CLASSES = (
    PromptClass("short", 70, 20, 60, 128),
    PromptClass("medium", 25, 200, 400, 256),
    PromptClass("long", 5, 1400, 1600, 512),
)


@dataclass(frozen=True, slots=True)
class Inference:
    prompt_class: str
    prompt: str
    max_tokens: int
    stream: bool

    def body(self, allocation_id: str) -> dict[str, object]:
        return {
            "allocation_id": allocation_id,
            "prompt": self.prompt,
            "max_tokens": self.max_tokens,
            "temperature": 0.7,
            "stream": self.stream,
        }


@dataclass(frozen=True, slots=True)
class Session:
    model: Model
    inferences: tuple[Inference, ...]


_VOCABULARY = (
    "allocation gpu pool tenant latency throughput token model prompt context budget cluster node "
    "request response stream batch queue lease release capacity overcommit priority preemption memory "
    "compute schedule region failover retry backoff circuit breaker metric trace label cost invoice "
    "customer report summary analysis dataset pipeline feature ranking search index cache shard replica "
    "deploy rollout canary incident outage recovery alert dashboard service contract schema version "
    "the a of and to in for on with by from that this which when while because after before during "
    "quickly carefully briefly clearly reliably nightly weekly monthly every each some many few more "
    "explain describe list compare summarise translate classify extract rewrite draft review check"
)
_WORDS = tuple(_VOCABULARY.split())

_OPENERS = (
    "Summarise the following notes for an engineering manager:",
    "Answer the customer's question using the context below:",
    "Extract the action items from this incident write-up:",
    "Rewrite this paragraph in plain English:",
    "Classify the following support ticket and explain the label:",
)


def words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(count))


def prompt(rng: random.Random, prompt_class: PromptClass) -> str:
    body = words(rng, rng.randint(prompt_class.min_words, prompt_class.max_words))
    return f"{rng.choice(_OPENERS)} {body}."


def plan_session(rng: random.Random) -> Session:
    (model,) = rng.choices(MODELS, weights=[m.weight for m in MODELS])
    inferences = []
    for _ in range(rng.randint(1, MAX_INFERENCES)):
        (prompt_class,) = rng.choices(PROMPT_CLASSES, weights=[p.weight for p in PROMPT_CLASSES])
        stream = rng.random() < STREAM_WEIGHT / (STREAM_WEIGHT + PLAIN_WEIGHT)
        inferences.append(Inference(prompt_class.name, prompt(rng, prompt_class), prompt_class.max_tokens, stream))
    return Session(model, tuple(inferences))


# Harpoon's /v2/process: texts its classifier labels `simple` (short, no reasoning words) and
# `complex` (asks for analysis, comparison or justification, or is long).
_SIMPLE = (
    "What is the capital of {topic}?",
    "Translate '{topic}' into French.",
    "Give me a one-line definition of {topic}.",
    "Spell {topic} backwards.",
)
_COMPLEX = (
    "Compare {topic} with {other} and explain why one scales better; justify each step.",
    "Analyse the trade-offs of {topic} for a GPU pool, then evaluate {other} step by step.",
    "Explain how {topic} affects tail latency and derive a bound for {other}. Why? What changes under load?",
)
_TOPICS = ("overcommit", "preemption", "spatial sharing", "batching", "leases", "idempotency", "failover")
HARPOON_TEXTS = {"simple": _SIMPLE, "complex": _COMPLEX}


def harpoon_text(rng: random.Random, label: str) -> str:
    topic, other = rng.sample(_TOPICS, 2)
    text = rng.choice(HARPOON_TEXTS[label]).format(topic=topic, other=other)
    if label == "complex" and rng.random() < 0.3:
        text += " Context: " + words(rng, rng.randint(100, 300)) + "."
    return text
