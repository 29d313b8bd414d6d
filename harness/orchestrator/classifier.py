"""Request classification: is a text `simple` (a small model will do) or `complex` (it needs a large one)?

The integration guide classifies locally, before any GPU is reserved, so classification must be fast and
must never call HostedAI. `Classifier` is the seam: a learned classifier (the guide's local Gemma-270M)
can replace `HeuristicClassifier` without touching the orchestrator.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

Label = Literal["simple", "complex"]


class Classification(BaseModel):
    """A label, the score it was derived from (0 = trivially simple, 1 = clearly complex) and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: Label
    score: Annotated[float, Field(ge=0, le=1)]
    reasons: list[str]


class Classifier(Protocol):
    def classify(self, text: str) -> Classification: ...


# Each rule's points, in hundredths of the score: integers, so sums are exact and the threshold is never
# missed by a float rounding error.
_LONG_WORDS = 80
_MEDIUM_WORDS = 30
_LONG_POINTS = 50
_MEDIUM_POINTS = 20
_ONE_KEYWORD_POINTS = 30
_MANY_KEYWORDS_POINTS = 50
_CODE_POINTS = 50
_QUESTIONS = 2
_QUESTIONS_POINTS = 30
_STEPS = 3
_STEPS_POINTS = 20
_THRESHOLD_POINTS = 50

# Words that ask for reasoning or analysis rather than recall. Matched whole-word, case-insensitively.
REASONING_KEYWORDS: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern, re.IGNORECASE)
    for name, pattern in {
        "analyse": r"\banaly[sz](e|es|ed|ing|is)\b",
        "compare": r"\b(compare[sd]?|comparing|comparison)\b",
        "contrast": r"\bcontrast\b",
        "evaluate": r"\bevaluat(e|es|ed|ing|ion)\b",
        "explain why/how": r"\bexplain\s+(why|how)\b",
        "derive": r"\bderiv(e|es|ed|ing|ation)\b",
        "prove": r"\b(prove[sn]?|proof)\b",
        "justify": r"\bjustif(y|ies|ied|ication)\b",
        "step by step": r"\bstep[\s-]by[\s-]step\b",
        "trade-off": r"\btrade[\s-]?offs?\b",
        "design": r"\b(design|architect|architecture)\b",
        "optimise": r"\boptimi[sz](e|es|ed|ing|ation)\b",
        "implications": r"\bimplications?\b",
        "critique": r"\bcritique\b",
        "reason": r"\breason(ing)?\s+(about|through)\b",
        "debug": r"\bdebug(ging)?\b",
        "refactor": r"\brefactor(ing)?\b",
    }.items()
}

# Code: a fenced block, or a line that starts like a statement of a common language, or ends like one.
_FENCE = re.compile(r"```")
_CODE_LINE = re.compile(
    r"^\s*(def |class |import |from \S+ import |return\b|function\b|const |let |#include\b|SELECT\b|fn |pub fn )"
    r"|[;{}]\s*$"
    r"|\)\s*(\{|=>)\s*$",
    re.MULTILINE,
)
_STEP_LINE = re.compile(r"^\s*(\d+[.)]|[-*•])\s+\S", re.MULTILINE)


class HeuristicClassifier:
    """A fast, deterministic rule-based classifier (no model, no I/O; microseconds per text).

    Each rule that fires adds points; the score is the sum capped at 1.0, and the label is `complex` when
    the score is at least 0.5 (`threshold`), else `simple`. Every rule that fired is named in `reasons`.

    1. Length: more than 80 words (whitespace-separated) adds 0.5; else more than 30 words adds 0.2.
       A long input needs a larger context and usually a longer, more careful answer.
    2. Reasoning: words asking for analysis rather than recall (`REASONING_KEYWORDS`: analyse, compare,
       contrast, evaluate, explain why/how, derive, prove, justify, step by step, trade-off,
       design/architecture, optimise, implications, critique, reason about/through, debug, refactor),
       each counted once: one adds 0.3, two or more add 0.5. So "explain why X" alone stays simple,
       "explain why X and compare it with Y" is complex.
    3. Code: a fenced block (```), or a line starting like a statement (def, class, import, return,
       function, const, let, #include, SELECT, fn) or ending in `;`, `{`, `}`, `) {` or `) =>`,
       adds 0.5: small models handle code poorly.
    4. Several questions: two or more `?` add 0.3: one request, several answers.
    5. Steps: three or more enumerated lines (`1.`, `2)`, `-`, `*`, `•`) add 0.2: a multi-part task.

    A short plain question ("What is the capital of France?") fires nothing and scores 0.
    """

    def __init__(self, threshold: float = _THRESHOLD_POINTS / 100) -> None:
        if not 0 < threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        self._threshold_points = round(threshold * 100)

    def classify(self, text: str) -> Classification:
        points = 0
        reasons: list[str] = []

        words = len(text.split())
        if words > _LONG_WORDS:
            points += _LONG_POINTS
            reasons.append(f"long: {words} words (> {_LONG_WORDS})")
        elif words > _MEDIUM_WORDS:
            points += _MEDIUM_POINTS
            reasons.append(f"medium length: {words} words (> {_MEDIUM_WORDS})")

        keywords = [name for name, pattern in REASONING_KEYWORDS.items() if pattern.search(text)]
        if keywords:
            points += _MANY_KEYWORDS_POINTS if len(keywords) > 1 else _ONE_KEYWORD_POINTS
            reasons.append(f"reasoning keywords: {', '.join(keywords)}")

        if _FENCE.search(text):
            points += _CODE_POINTS
            reasons.append("code: a fenced block")
        elif _CODE_LINE.search(text):
            points += _CODE_POINTS
            reasons.append("code: a line that looks like source code")

        questions = text.count("?")
        if questions >= _QUESTIONS:
            points += _QUESTIONS_POINTS
            reasons.append(f"several questions: {questions}")

        steps = len(_STEP_LINE.findall(text))
        if steps >= _STEPS:
            points += _STEPS_POINTS
            reasons.append(f"multi-step: {steps} enumerated lines")

        if not reasons:
            reasons.append("short plain request: no complexity signal")
        points = min(points, 100)
        label: Label = "complex" if points >= self._threshold_points else "simple"
        return Classification(label=label, score=points / 100, reasons=reasons)
