"""The local sentiment analyzer: the cases a plain lexicon gets wrong."""

from __future__ import annotations

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from shoal.insights.sentiment import SentimentAnalyzer

RULES = SentimentAnalyzer()
VADER = SentimentIntensityAnalyzer()


@pytest.mark.parametrize(
    "text",
    [
        "Great, another delay.",
        "Thanks for nothing",
        "I just love waiting on hold for 2 hours /s",
        'Wow, the "helpful" support strikes again',
        "Oh great, the app crashed again 🙄",
    ],
)
def test_sarcasm_reads_negative_where_vader_reads_positive(text: str) -> None:
    assert VADER.polarity_scores(text)["compound"] > 0
    result = RULES.analyze(text)
    assert result.score < 0 and result.label == "negative"
    assert result.cues


@pytest.mark.parametrize(
    ("text", "sign"),
    [
        ("the app is not working 😡", -1),  # emoji next to a negation is not itself negated
        ("still waiting for my refund, no response", -1),
        ("I was charged twice", -1),
        ("not happy at all", -1),
        ("👍 sorted, thanks!", 1),
        ("Thank you so much, problem solved!", 1),
        ("The delivery was not bad, but the driver was rude", -1),  # contrastive "but"
    ],
)
def test_domain_phrases_emoji_negation_and_but(text: str, sign: int) -> None:
    assert RULES.analyze(text).score * sign > 0.05


def test_evidence_names_negated_words() -> None:
    result = RULES.analyze("I am not happy with this")
    assert "happy (negated)" in result.evidence


def test_thresholds_decide_the_label() -> None:
    strict = SentimentAnalyzer(positive_threshold=0.9, negative_threshold=0.9)
    assert strict.analyze("this is nice").label == "neutral"
    assert RULES.analyze("this is nice").label == "positive"
