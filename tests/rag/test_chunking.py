"""Chunking: sentence boundaries, the token bound, and overlap between neighbours."""

from __future__ import annotations

import itertools

import pytest

from shoal.rag.chunking import Chunker, split_sentences

SENTENCES = [f"Sentence number {i} talks about topic {i} in a few words." for i in range(30)]
TEXT = " ".join(SENTENCES)


def test_sentences_split_on_terminal_punctuation_not_abbreviations() -> None:
    text = "Dr. Smith arrived. He saw e.g. the cat! Did it purr? Yes.\n\nNew paragraph here"
    parts = [text[s:e] for s, e in split_sentences(text)]
    assert parts == ["Dr. Smith arrived.", "He saw e.g. the cat!", "Did it purr?", "Yes.", "New paragraph here"]


def test_chunks_end_on_sentence_boundaries_within_the_token_bound() -> None:
    chunker = Chunker(max_tokens=50, overlap_tokens=15)
    chunks = chunker.chunk(TEXT)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.tokens <= 50
        assert chunker.count_tokens(chunk.text) <= 50
        assert chunk.text.startswith("Sentence number") and chunk.text.endswith(".")
        assert chunk.text == TEXT[chunk.start : chunk.end]


def test_neighbouring_chunks_overlap_by_whole_sentences_within_the_overlap_bound() -> None:
    chunker = Chunker(max_tokens=50, overlap_tokens=15)
    chunks = chunker.chunk(TEXT)
    for before, after in itertools.pairwise(chunks):
        shared = before.text[after.start - before.start :] if after.start < before.end else ""
        assert shared, "consecutive chunks must overlap"
        assert shared.startswith("Sentence number")  # the overlap is whole sentences
        assert chunker.count_tokens(shared) <= 15
        assert after.start > before.start  # always moving forward


def test_every_sentence_is_covered_in_order() -> None:
    chunks = Chunker(max_tokens=40, overlap_tokens=10).chunk(TEXT)
    covered = " ".join(c.text for c in chunks)
    positions = [covered.find(s) for s in SENTENCES]
    assert all(p >= 0 for p in positions)


def test_no_overlap_when_zero() -> None:
    chunks = Chunker(max_tokens=40, overlap_tokens=0).chunk(TEXT)
    assert all(b.start >= a.end for a, b in itertools.pairwise(chunks))
    assert "".join(c.text for c in chunks).replace(" ", "") == TEXT.replace(" ", "")


def test_overlong_sentence_is_cut_into_overlapping_token_windows() -> None:
    chunker = Chunker(max_tokens=20, overlap_tokens=5)
    long_sentence = "Then " + " ".join(f"word{i}" for i in range(60)) + "."
    chunks = chunker.chunk(f"Short start. {long_sentence} Short end.")
    windows = [c for c in chunks if "word" in c.text]
    assert len(windows) > 2
    for chunk in windows:
        assert chunker.count_tokens(chunk.text) <= 20
    for a, b in itertools.pairwise(windows):
        assert b.start < a.end  # windows overlap
    assert chunks[0].text == "Short start." and chunks[-1].text == "Short end."


def test_blank_text_has_no_chunks_and_bad_settings_are_refused() -> None:
    assert Chunker().chunk("   \n ") == []
    with pytest.raises(ValueError):
        Chunker(max_tokens=10, overlap_tokens=10)
