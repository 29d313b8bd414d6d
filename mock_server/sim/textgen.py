"""Deterministic generated text and a stand-in tokenizer.

The output depends only on (model, prompt, seed): the same request gives the same tokens, so a test can
assert on them. Tokens are words with their leading space, as BPE tokenizers print them.

The draws come from an extendable-output hash of the request (SHAKE-128), two bytes a token looked up
in a table laid out by the tokens' weights, rather than from a `random.Random` seeded per request:
seeding a Mersenne Twister costs more than the whole hash (≈ 10 µs against ≈ 1 µs), and this runs on
every inference.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import re
import sys
from array import array
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


# Every two-byte draw names a token: entry i is the token at (i + ½) / 65,536 of the cumulative weights.
_DRAWS = 1 << 16
_TABLE = tuple(_LATER[bisect.bisect(_LATER_CUM_WEIGHTS, (i + 0.5) / _DRAWS)] for i in range(_DRAWS))


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


def draws(count: int, *parts: object) -> array[int]:
    """`count` numbers in [0, 65,536), the same for the same parts (little-endian on every machine)."""
    numbers = array("H", hashlib.shake_128("\x1f".join(map(str, parts)).encode()).digest(2 * count))
    if sys.byteorder == "big":
        numbers.byteswap()
    return numbers


def standard_normal(*parts: object) -> float:
    """A standard normal draw, the same for the same parts (Box–Muller on two 53-bit uniforms)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).digest()
    u1 = ((int.from_bytes(digest[:8], "little") >> 11) + 1) / (1 << 53)  # (0, 1]: the logarithm is finite
    u2 = (int.from_bytes(digest[8:], "little") >> 11) / (1 << 53)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def generate(model: str, prompt: str, seed: int, length: int, stop: list[str] | None = None) -> Generation:
    """`length` tokens of text drawn from the seed (the caller decides how long the answer runs), cut at
    the first stop sequence (which is not included). `finish_reason` is "stop" when a stop sequence cut
    it, else "length" — the caller says "stop" for an answer that ended at its natural length."""
    if length:
        numbers = draws(length, model, prompt, seed)
        # The first token is a word; the later ones follow the weights (words, punctuation, breaks).
        tokens = [_WORDS[numbers[0] % len(_WORDS)], *map(_TABLE.__getitem__, numbers[1:])]
    else:
        tokens = []
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
