"""Caches (in-process, SQLite, Redis)."""

from shoal.cache.base import Cache

__all__ = ["Cache"]
