"""``Vader.compound`` is the library's ``polarity_scores(...)["compound"]``, exactly."""

from __future__ import annotations

import csv

from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.insights.sentiment import DOMAIN_LEXICON
from shoal.insights.vader import Vader
from tests.conftest import require_data

VADER = Vader(DOMAIN_LEXICON)
LIBRARY = VADER.library

# Every rule's trigger: lexicon words in several cases, boosters (also multi-word), negations, "no",
# "least", "but", "kind of", idioms, punctuation, emoticons and emoji.
WORDS = [
    "good", "GOOD", "Good", "bad", "BAD", "great", "terrible", "love", "hate", "happy", "sad", "no", "No",
    "not", "never", "isn't", "dont", "without", "doubt", "so", "this", "very", "VERY", "extremely",
    "kind", "of", "sort", "just", "enough", "least", "at", "but", "BUT", "the", "bomb", "shit", "yeah",
    "right", "kiss", "death", "to", "die", "for", "bad", "ass", "badass", "bus", "stop", "outage", "late",
    "refund", "fixed", "delayed", "a", "is", "was", "or", "nor", "I", "OK", ":)", ":(", ":D", "<3", "lol",
    "!", "!!", "?", "??", "???", "????", "...", "good!", "(bad)", "'love'", "😀", "😡", "👍", "🙂x", "x😢",
    "İstanbul", "ΣΑΣ", "café",
]  # fmt: skip


def test_matches_the_library_on_sentences_that_exercise_each_rule() -> None:
    sentences = [
        "VADER is smart, handsome, and funny!",
        "VADER is VERY SMART, handsome, and FUNNY!!!",
        "The book was kind of good.",
        "At least it isn't a horrible book.",
        "Not bad at all, but the ending was the shit :)",
        "no problems, no worries, never so happy",
        "without doubt the best, kiss of death otherwise",
        "Today SUX!    But I'll get by, lol",
        "",
        "   ",
        "😀😀 great 😡",
    ]
    for text in sentences:
        assert VADER.compound(text) == LIBRARY.polarity_scores(text)["compound"], text


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=30), st.sampled_from([" ", "  ", "\n", " , "]))
def test_matches_the_library_on_generated_texts(words: list[str], sep: str) -> None:
    text = sep.join(words)
    assert VADER.compound(text) == LIBRARY.polarity_scores(text)["compound"]


def test_matches_the_library_on_real_tweets() -> None:
    path = require_data("twcs", "twcs_random_sample.csv")
    with path.open(newline="", encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh) if row["text"]]
    texts += require_data("tweeteval", "sentiment", "val_text.txt").read_text(encoding="utf-8").splitlines()
    mismatched = [t for t in texts if VADER.compound(t) != LIBRARY.polarity_scores(t)["compound"]]
    assert not mismatched, mismatched[:3]
