"""What a request asks of a model server: how many tokens its prompt is, and how long its answer runs.

Prompt tokens are counted with the model's characters-per-token ratio (BPE tokenizers average about 4
characters per token in English), plus one for the start of the sequence; no tokenizer package can run
offline here without its vocabulary files, and a ratio is what calibrations fit anyway.

An answer's natural length is drawn from a lognormal (median and spread per model: long answers are
rare but long), the same for the same (model, prompt, seed), and cut by `max_tokens` ("length").
"""

from __future__ import annotations

import math

from mock_server.config import OutputLengths
from mock_server.sim.textgen import Draws


def count_prompt_tokens(text: str, chars_per_token: float) -> int:
    return 1 + math.ceil(len(text) / chars_per_token)


def natural_length(draws: Draws, lengths: OutputLengths, limit: int) -> int:
    """The answer's length had nothing stopped it, at most the model's own limit."""
    if not lengths.sigma:
        return max(lengths.min, min(limit, round(lengths.median)))
    drawn = lengths.median * math.exp(lengths.sigma * draws.normal())
    return max(lengths.min, min(limit, round(drawn)))
