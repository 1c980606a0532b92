"""In-process cache (L1): a bounded LRU where every item carries its own deadline."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

from cachetools import TLRUCache

from shoal.cache.base import Cache

# value, monotonic deadline (``math.inf``: never expires)
_Entry = tuple[bytes, float]


def _deadline(_key: str, entry: _Entry, _now: float) -> float:
    return entry[1]


class MemoryCache(Cache):
    """At most ``maxsize`` items in this process; least recently used go first, expired ones never show.

    ``ttl`` is the default lifetime in seconds (``None``: items live until evicted). Nothing is shared
    between processes and nothing survives a restart. ``maxsize=0`` turns the cache off (every get
    misses), which keeps callers free of "is there an L1" branches.
    """

    def __init__(self, maxsize: int = 100_000, ttl: float | None = None) -> None:
        if maxsize < 0:
            raise ValueError("maxsize must be >= 0")
        self.maxsize = maxsize
        self.default_ttl = ttl
        # cachetools cannot hold a zero-sized cache; a disabled cache simply never stores.
        self._data: TLRUCache[str, _Entry] | None = (
            TLRUCache(maxsize, _deadline, timer=time.monotonic) if maxsize else None
        )

    async def close(self) -> None:
        if self._data is not None:
            self._data.clear()

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        data = self._data
        if data is None:
            return [None] * len(keys)
        out: list[bytes | None] = []
        for key in keys:
            entry: _Entry | None = data.get(key)
            out.append(None if entry is None else entry[0])
        return out

    async def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        data = self._data
        if data is None:
            return
        lifetime = self.default_ttl if ttl is None else ttl
        deadline = math.inf if lifetime is None else time.monotonic() + lifetime
        for key, value in items.items():
            data[key] = (bytes(value), deadline)

    async def delete_many(self, keys: Sequence[str]) -> None:
        data = self._data
        if data is None:
            return
        for key in keys:
            data.pop(key, None)

    async def ttl(self, key: str) -> float | None:
        """Seconds left for ``key``; ``math.inf`` if it never expires, ``None`` if missing."""
        if self._data is None:
            return None
        entry: _Entry | None = self._data.get(key)
        if entry is None:
            return None
        return max(0.0, entry[1] - time.monotonic())

    def __len__(self) -> int:
        return 0 if self._data is None else len(self._data)
