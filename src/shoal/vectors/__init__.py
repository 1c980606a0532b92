"""Vector stores (Qdrant Edge embedded by default)."""

from shoal.vectors.base import Hit, Point, SearchRequest, SparseVector, VectorStore

__all__ = ["Hit", "Point", "SearchRequest", "SparseVector", "VectorStore"]
