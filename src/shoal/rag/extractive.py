"""Extractive answers (no LLM configured): the retrieved sentences that best cover the question,
each followed by the number of the source it came from.

A sentence scores by the share of the question's BM25 terms (stemmed, stop words removed) it holds,
slightly favouring better-ranked sources. Nothing is generated, so nothing can be unsupported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shoal.rag.bm25 import Bm25Encoder
from shoal.rag.chunking import split_sentences
from shoal.rag.llm import NO_ANSWER, ContextSource

# Each step down the ranking costs a sentence this much of its score: rank breaks ties.
_RANK_DECAY = 0.05


@dataclass(frozen=True, slots=True)
class _Candidate:
    score: float
    n: int
    position: int
    text: str


def extractive_answer(
    question: str, sources: Sequence[ContextSource], encoder: Bm25Encoder, *, max_sentences: int = 3
) -> str:
    """Up to ``max_sentences`` sentences from ``sources`` cited ``[n]``, or ``NO_ANSWER``."""
    wanted = encoder.terms(question)
    if not wanted:
        return NO_ANSWER
    candidates: list[_Candidate] = []
    seen: set[str] = set()
    for rank, source in enumerate(sources):
        for position, (start, end) in enumerate(split_sentences(source.text)):
            sentence = source.text[start:end]
            if sentence in seen:  # overlapping chunks repeat sentences
                continue
            seen.add(sentence)
            covered = len(wanted & encoder.terms(sentence)) / len(wanted)
            if covered > 0:
                candidates.append(_Candidate(covered * (1 - _RANK_DECAY * rank), source.n, position, sentence))
    if not candidates:
        return NO_ANSWER
    best = sorted(candidates, key=lambda c: c.score, reverse=True)[:max_sentences]
    best.sort(key=lambda c: (c.n, c.position))
    return " ".join(f"{c.text} [{c.n}]" for c in best)
