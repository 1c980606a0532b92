"""Reciprocal rank fusion of ranked lists, with a weight per list.

``score(d) = sum_i w_i / (k + rank_i(d))`` with ranks from 1 (Cormack et al., 2009; k = 60). Done
here rather than in the engine so the weights work on every vector store and the fused scores can
be reported.
"""

from __future__ import annotations

from collections.abc import Sequence

from shoal.vectors.base import Hit


def rrf(
    rankings: Sequence[Sequence[str]], *, k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Ids by fused score, best first (ties keep first-seen order)."""
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda kv: kv[1], reverse=True)


def fuse_hits(lists: Sequence[Sequence[Hit]], *, k: int = 60, weights: Sequence[float] | None = None) -> list[Hit]:
    """Hits of several searches fused by RRF; each hit's score becomes its fused score."""
    by_id: dict[str, Hit] = {}
    for hits in lists:
        for hit in hits:
            by_id.setdefault(hit.id, hit)
    fused = rrf([[h.id for h in hits] for hits in lists], k=k, weights=weights)
    return [Hit(id=i, score=score, payload=by_id[i].payload) for i, score in fused]
