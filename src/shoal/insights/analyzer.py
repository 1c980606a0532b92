"""The local analyzer: sentiment + online topic clusters + confidence + a reasoning sentence.

No network. CPU only, on vectors the embedding engine already computed (and cached) for the indexer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from shoal.blas import one_blas_thread
from shoal.insights.clusters import Assignment, OnlineClusterer
from shoal.insights.sentiment import Label, Sentiment, SentimentAnalyzer


@dataclass(frozen=True, slots=True)
class Analysis:
    """What is stored for one conversation (``grok_analysis`` in the API)."""

    sentiment_score: float
    sentiment: Label
    clusters: list[str]
    confidence: float
    reasoning: str
    analyzer: str
    cluster: str | None = None
    """The online cluster's label (what the ``cluster`` filter and summaries use)."""
    cluster_id: int | None = None
    similarity: float | None = None
    evidence: list[str] = field(default_factory=list)


BRIEF = ("sentiment", "sentiment_score", "cluster", "cluster_id", "confidence", "analyzer")
"""What live views show of an analysis (the insights store has a column of each name)."""


def brief(analysis: Analysis) -> dict[str, Any]:
    """The ``BRIEF`` fields of ``analysis``: what ``WS /ws`` pushes and the dashboard's hits carry."""
    return {name: getattr(analysis, name) for name in BRIEF}


class Analyzer(Protocol):
    """Turns texts and their unit embeddings into analyses (one per text, same order)."""

    name: str

    async def analyze(self, texts: Sequence[str], vectors: npt.NDArray[np.float32]) -> list[Analysis]: ...


def _quote(words: Sequence[str]) -> str:
    return ", ".join(f"'{w}'" for w in words)


def reasoning_for(sentiment: Sentiment, label: str | None, similarity: float | None) -> str:
    """One sentence citing the evidence: words, cues, nearest cluster and its similarity."""
    parts = [f"{sentiment.label.capitalize()} ({sentiment.score:+.2f})"]
    if sentiment.evidence:
        parts.append(f"from {_quote(sentiment.evidence[:4])}")
    else:
        parts.append("with no sentiment-bearing words")
    text = " ".join(parts)
    if sentiment.cues:
        text += f"; sarcasm cues ({', '.join(sentiment.cues[:2])}) reverse the surface praise"
    if label is not None and similarity is not None:
        text += f"; nearest topic '{label}' (similarity {similarity:.2f})"
    return text + "."


class LocalAnalyzer:
    """Combines ``SentimentAnalyzer`` and ``OnlineClusterer``. Updates the clusters as it goes.

    ``confidence`` = 0.6 × sentiment confidence + 0.4 × similarity to the assigned cluster (clipped to
    [0, 1]): a clear-cut sentiment on a text close to a well-formed topic scores high.
    """

    name = "local"

    def __init__(self, sentiment: SentimentAnalyzer, clusterer: OnlineClusterer) -> None:
        self.sentiment = sentiment
        self.clusterer = clusterer

    async def analyze(self, texts: Sequence[str], vectors: npt.NDArray[np.float32]) -> list[Analysis]:
        # CPU-bound (~0.1 ms a text): off the event loop so the API keeps answering
        return await asyncio.to_thread(self.analyze_sync, texts, vectors)

    def assign(self, texts: Sequence[str], vectors: npt.NDArray[np.float32]) -> list[tuple[Assignment, str]]:
        """Add to the clusters; each text's cluster and that cluster's label."""
        assignments = self.clusterer.add(vectors, list(texts))
        return [(a, self.clusterer.clusters[a.cluster_id].label) for a in assignments]

    def analyze_sync(self, texts: Sequence[str], vectors: npt.NDArray[np.float32]) -> list[Analysis]:
        with one_blas_thread():
            sentiments = self.sentiment.analyze_many(list(texts), vectors)
            assigned = self.assign(texts, vectors)
        out = []
        for sentiment, (assignment, label) in zip(sentiments, assigned, strict=True):
            similarity = max(0.0, min(1.0, assignment.similarity))
            out.append(
                Analysis(
                    sentiment_score=round(sentiment.score, 4),
                    sentiment=sentiment.label,
                    clusters=[label],
                    confidence=round(0.6 * sentiment.confidence + 0.4 * similarity, 4),
                    reasoning=reasoning_for(sentiment, label, assignment.similarity),
                    analyzer=self.name,
                    cluster=label,
                    cluster_id=assignment.cluster_id,
                    similarity=round(assignment.similarity, 4),
                    evidence=sentiment.evidence,
                )
            )
        return out
