"""Deterministic generated text and a stand-in tokenizer.

The output depends only on (model, prompt, seed): the same request gives the same tokens, so a test can
assert on them. Tokens are words with their leading space, as BPE tokenizers print them.

The draws come from a hash of the request (BLAKE2b blocks, `Draws`), two bytes a draw looked up in
tables laid out by the tokens' weights and by the normal quantiles, rather than from a
`random.Random` seeded per request: seeding a Mersenne Twister costs more than the whole hash, and this
runs on every inference (one hash for the length and the text together).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import re
import sys
from array import array
from dataclasses import dataclass
from statistics import NormalDist

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


# A token from the top 12 bits of a two-byte draw: entry i is the token at (i + ½) / 4,096 of the
# cumulative weights. 4,096 entries (32 KB) rather than 65,536: the table is read at random, once a
# token, and a small one stays in the CPU's cache between requests.
_DRAWS = 1 << 12
_ENDS = [bisect.bisect_left(range(_DRAWS), w * _DRAWS - 0.5) for w in _LATER_CUM_WEIGHTS[:-1]] + [_DRAWS]
_TABLE = tuple(
    itertools.chain.from_iterable(
        itertools.repeat(token, end - start) for token, start, end in zip(_LATER, [0, *_ENDS[:-1]], _ENDS, strict=True)
    )
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


# A standard normal draw from two bytes: entry i is the normal quantile at (i + ½) / 16,384 (±4σ).
_NORMAL_LEVELS = 1 << 14
_NORMAL = tuple(NormalDist().inv_cdf((i + 0.5) / _NORMAL_LEVELS) for i in range(_NORMAL_LEVELS))
# BLAKE2b's longest digest: the stream's block.
_BLOCK = 64


class Draws:
    """One request's draws, the same for the same (model, prompt, seed): a stream of bytes made of
    64-byte BLAKE2b blocks of the three (block i salted with i), read in order — two bytes for the
    answer's length (`normal`), then two a token (`generate`). Reading a prefix of the stream again gives
    the same bytes, so each reader asks for what it needs; most answers fit the first block."""

    __slots__ = ("_first", "_key")

    def __init__(self, model: str, prompt: str, seed: int) -> None:
        self._key = f"{model}\x1f{prompt}\x1f{seed}".encode()
        self._first = hashlib.blake2b(self._key, digest_size=_BLOCK).digest()

    def _stream(self, size: int) -> bytes:
        if size <= _BLOCK:
            return self._first[:size]
        later = (
            hashlib.blake2b(self._key, digest_size=_BLOCK, salt=i.to_bytes(16, "little")).digest()
            for i in range(1, -(-size // _BLOCK))
        )
        return b"".join((self._first, *later))[:size]

    def normal(self) -> float:
        """A standard normal draw (by its quantile table, to ±4σ)."""
        first = self._first
        return _NORMAL[(first[0] | first[1] << 8) % _NORMAL_LEVELS]

    def numbers(self, count: int) -> array[int]:
        """`count` numbers in [0, 65,536), after the normal's two bytes (little-endian on every machine)."""
        numbers = array("H", self._stream(2 + 2 * count)[2:])
        if sys.byteorder == "big":
            numbers.byteswap()
        return numbers


def generate(draws: Draws, length: int, stop: list[str] | None = None) -> Generation:
    """`length` tokens of text from the request's draws (the caller decides how long the answer runs),
    cut at the first stop sequence (which is not included). `finish_reason` is "stop" when a stop
    sequence cut it, else "length" — the caller says "stop" for an answer that ended at its natural length."""
    if length:
        numbers = draws.numbers(length)
        # The first token is a word; the later ones follow the weights (words, punctuation, breaks).
        tokens = [_WORDS[numbers[0] % len(_WORDS)], *[_TABLE[n >> 4] for n in numbers[1:]]]
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
