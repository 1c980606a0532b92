"""Vector stores (Qdrant Edge embedded by default)."""

from shoal.vectors.base import Hit, Point, SparseVector, VectorStore

__all__ = ["Hit", "Point", "SparseVector", "VectorStore"]
