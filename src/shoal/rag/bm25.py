"""BM25 sparse vectors, made by qdrant-edge's ``Bm25`` (tokenizer, stop words, stemmer, hashing).

A document vector holds each term's saturated, length-normalised frequency
``tf * (k + 1) / (tf + k * (1 - b + b * len / avg_len))``; a query vector holds 1.0 per term. The
vector store multiplies by the IDF it keeps for the collection (Qdrant's IDF ``Modifier``), so the
dot product of the two is the BM25 score and new documents never require re-encoding old ones.
"""

from __future__ import annotations

from qdrant_edge import Bm25, Bm25Config

from shoal.errors import ConfigurationError
from shoal.vectors.base import SparseVector


class Bm25Encoder:
    """Encodes documents and queries as sparse vectors for one BM25 configuration."""

    def __init__(self, *, k: float = 1.2, b: float = 0.75, avg_len: float = 120.0, language: str = "english") -> None:
        try:
            self._model = Bm25(Bm25Config(k=k, b=b, avg_len=avg_len, language=language))
        except ValueError as exc:
            raise ConfigurationError(f"BM25: {exc}") from exc

    def document(self, text: str) -> SparseVector:
        vector = self._model.embed_document(text)
        return SparseVector(indices=list(vector.indices), values=list(vector.values))

    def query(self, text: str) -> SparseVector:
        vector = self._model.embed_query(text)
        return SparseVector(indices=list(vector.indices), values=list(vector.values))

    def terms(self, text: str) -> set[int]:
        """The hashed, stemmed, stop-word-free terms of ``text`` (for lexical overlap)."""
        return set(self._model.embed_query(text).indices)
