"""HeuristicClassifier: each documented rule, its thresholds, and determinism."""

from __future__ import annotations

import pytest

from harness.orchestrator import Classification, Classifier, HeuristicClassifier

classifier: Classifier = HeuristicClassifier()  # it satisfies the Protocol the orchestrator takes


def words(n: int) -> str:
    return " ".join(["word"] * n)


@pytest.mark.parametrize(
    "text",
    [
        "What is the capital of France?",
        "Translate 'good morning' into Spanish.",
        "Explain photosynthesis.",  # "explain" alone asks for recall, not reasoning
        "Explain why the sky is blue.",  # one reasoning keyword: 0.3
        "Who wrote Hamlet? When?",  # two questions: 0.3
        words(31),  # medium length: 0.2
        "",
    ],
)
def test_simple_requests(text: str) -> None:
    result = classifier.classify(text)
    assert result.label == "simple"
    assert result.score < 0.5
    assert result.reasons


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Explain why overcommit raises latency and compare spatial with temporal sharing.", "reasoning keywords"),
        ("Why does this fail?\n```python\nprint(x[1])\n```", "code: a fenced block"),
        ("Fix this:\nint main() {\n  return 0;\n}", "code: a line that looks like source code"),
        ("def f(x):\n    return x[1]\nWhat is wrong here?", "code: a line that looks like source code"),
        (words(81), "long: 81 words (> 80)"),
        ("Explain why it fails. What is the cause? How do I fix it?", "several questions: 2"),
        ("Plan the launch:\n1. budget\n2. staffing\n3. timeline\nEvaluate the risk.", "multi-step: 3"),
    ],
)
def test_complex_requests(text: str, reason: str) -> None:
    result = classifier.classify(text)
    assert result.label == "complex", result
    assert result.score >= 0.5
    assert any(r.startswith(reason) for r in result.reasons), result.reasons


def test_the_points_add_up_and_are_capped_at_one() -> None:
    text = f"Analyse and compare these designs step by step. Why? How?\n```\ncode\n```\n{words(90)}"
    result = classifier.classify(text)
    assert result == Classification(label="complex", score=1.0, reasons=result.reasons)
    assert len(result.reasons) == 4  # length, keywords, code, questions


@pytest.mark.parametrize(("n", "score"), [(30, 0.0), (31, 0.2), (80, 0.2), (81, 0.5)])
def test_length_thresholds(n: int, score: float) -> None:
    assert classifier.classify(words(n)).score == score


def test_one_keyword_is_not_enough_but_two_are() -> None:
    assert classifier.classify("Evaluate the plan.").score == 0.3
    assert classifier.classify("Evaluate the plan and justify it.").score == 0.5


def test_keywords_match_whole_words_only() -> None:
    # "redesigned" and "proofreading" contain keywords but do not ask for reasoning.
    assert classifier.classify("The redesigned page needs proofreading.").reasons == [
        "short plain request: no complexity signal"
    ]


def test_deterministic() -> None:
    fresh = HeuristicClassifier()
    for text in ("What is 2+2?", "Compare and contrast A and B.", words(100)):
        assert fresh.classify(text) == classifier.classify(text) == classifier.classify(text)


def test_threshold_is_configurable() -> None:
    assert HeuristicClassifier(threshold=0.3).classify("Explain why the sky is blue.").label == "complex"
    with pytest.raises(ValueError, match="threshold"):
        HeuristicClassifier(threshold=0)
