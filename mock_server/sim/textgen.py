"""Deterministic generated text and a stand-in tokenizer.

The output depends only on (model, prompt, seed): the same request gives the same tokens, so a test can
assert on them. Tokens are words with their leading space, as BPE tokenizers print them.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from dataclasses import dataclass

_TOKEN = re.compile(r"\w+|[^\w\s]")

# A word list reads better as a sentence than as 100 quoted items.
_VOCABULARY = tuple(
    (  # noqa: SIM905
        "the a of to and in is for on that with as it be by this are from at or an GPU pool model token "
        "allocation inference latency capacity overcommit tenant request compute memory result answer "
        "simple complex fast slow first next then because however therefore each every more less data "
        "batch stream queue lease release cost price usage share time quantum system service client "
        "server value check test run step plan"
    ).split()
)
_WORDS = tuple(" " + word for word in _VOCABULARY)
_PUNCTUATION = (".", ",", ".", ";", ":")
# After the first token: words 88%, punctuation 10%, paragraph breaks 2%, drawn in one `choices` call.
_LATER = (*_WORDS, *_PUNCTUATION, "\n\n")
_LATER_CUM_WEIGHTS = list(
    itertools.accumulate([0.88 / len(_WORDS)] * len(_WORDS) + [0.10 / len(_PUNCTUATION)] * len(_PUNCTUATION) + [0.02])
)


def count_tokens(text: str) -> int:
    """Words and punctuation marks, plus one for the start-of-sequence token."""
    return 1 + len(_TOKEN.findall(text))


@dataclass(frozen=True, slots=True)
class Generation:
    tokens: list[str]
    finish_reason: str

    @property
    def text(self) -> str:
        return "".join(self.tokens)


def stable_seed(*parts: object) -> int:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def generate(model: str, prompt: str, seed: int, length: int, stop: list[str] | None = None) -> Generation:
    """`length` tokens of text drawn from the seed (the caller decides how long the answer runs), cut at
    the first stop sequence (which is not included). `finish_reason` is "stop" when a stop sequence cut
    it, else "length" — the caller says "stop" for an answer that ended at its natural length."""
    rng = random.Random(stable_seed(model, prompt, seed))
    tokens = [rng.choice(_WORDS), *rng.choices(_LATER, cum_weights=_LATER_CUM_WEIGHTS, k=length - 1)] if length else []
    if stop:
        tokens, cut = _cut_at_stop(tokens, stop)
        if cut:
            return Generation(tokens, "stop")
    return Generation(tokens, "length")


def _cut_at_stop(tokens: list[str], stop: list[str]) -> tuple[list[str], bool]:
    text = "".join(tokens)
    positions = [p for p in (text.find(s) for s in stop) if p >= 0]
    if not positions:
        return tokens, False
    end = min(positions)
    kept: list[str] = []
    length = 0
    for token in tokens:
        if length + len(token) > end:
            # Keep the part of the token before the stop sequence, as streaming servers do.
            if end > length:
                kept.append(token[: end - length])
            break
        kept.append(token)
        length += len(token)
    return kept, True
