"""Embedding providers and the batching, caching engine in front of them."""

from shoal.embedding.base import EmbeddingProvider, Vectors

__all__ = ["EmbeddingProvider", "Vectors"]
