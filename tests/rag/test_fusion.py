"""Reciprocal rank fusion: k, weights and ties."""

from __future__ import annotations

import pytest

from shoal.rag.fusion import fuse_hits, rrf
from shoal.vectors.base import Hit


def test_rrf_sums_reciprocal_ranks_with_k() -> None:
    fused = dict(rrf([["a", "b"], ["b", "c"]], k=60))
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["c"] == pytest.approx(1 / 62)


def test_weights_shift_the_order() -> None:
    lists = [["dense-top", "shared"], ["sparse-top", "shared"]]
    assert rrf(lists, weights=[1.0, 1.0])[0][0] == "shared"
    assert rrf(lists, weights=[1.0, 0.0])[0][0] == "dense-top"
    assert rrf(lists, weights=[0.0, 1.0])[0][0] == "sparse-top"
    with pytest.raises(ValueError):
        rrf(lists, weights=[1.0])


def test_fuse_hits_keeps_payloads_and_reports_fused_scores() -> None:
    dense = [Hit("x", 0.9, {"_text": "x"}), Hit("y", 0.8, {"_text": "y"})]
    sparse = [Hit("y", 12.0, {"_text": "y"})]
    fused = fuse_hits([dense, sparse], k=60)
    assert [h.id for h in fused] == ["y", "x"]
    assert fused[0].payload == {"_text": "y"}
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
