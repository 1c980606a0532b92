"""A cache in Redis: the L2 shared by every Shoal process (API and workers) at scale.

Keys are ``<prefix><key>``; values are raw bytes with a per-key expiry (``SET ... PX``). Needs the
``redis`` extra: the factory imports this module lazily, so a missing driver surfaces as
``MissingDependencyError``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shoal.cache.base import Cache
from shoal.errors import BackendError, ConfigurationError


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn a driver error raised inside the block into ``BackendError`` naming ``what``."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise BackendError(f"{what}: {exc}") from exc


def redis_client(url_or_client: str | aioredis.Redis) -> tuple[aioredis.Redis, bool]:
    """The client to use and whether we own it (made it, so must close it)."""
    if isinstance(url_or_client, str):
        return aioredis.Redis.from_url(url_or_client, decode_responses=False), True
    if url_or_client.connection_pool.connection_kwargs.get("decode_responses"):
        raise ConfigurationError("Shoal needs a Redis client with decode_responses=False (values are bytes)")
    return url_or_client, False


class RedisCache(Cache):
    """Bytes by key in Redis under ``prefix``; ``ttl`` is the default lifetime in seconds.

    ``ttl=None`` stores without expiry. A cache handed a client leaves it open on close; one given a
    URL makes its own client and closes it.
    """

    def __init__(self, url_or_client: str | aioredis.Redis, ttl: float | None = None, prefix: str = "shoal:") -> None:
        self._client, self._owns_client = redis_client(url_or_client)
        self.default_ttl = ttl
        self.prefix = prefix

    async def close(self) -> None:
        if self._owns_client:
            with translate_errors("redis cache"):
                await self._client.aclose()

    def _key(self, key: str) -> str:
        return self.prefix + key

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        with translate_errors("redis cache get"):
            values = await self._client.mget([self._key(k) for k in keys])
        # decode_responses=False (enforced in redis_client) makes every value bytes or None.
        return cast(list[bytes | None], values)

    async def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        if not items:
            return
        lifetime = self.default_ttl if ttl is None else ttl
        # Milliseconds so sub-second TTLs work; at least 1 ms since PX 0 is an error.
        px = None if lifetime is None else max(1, math.ceil(lifetime * 1000))
        with translate_errors("redis cache set"):
            async with self._client.pipeline(transaction=False) as pipe:
                for key, value in items.items():
                    pipe.set(self._key(key), value, px=px)
                await pipe.execute()

    async def delete_many(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        with translate_errors("redis cache delete"):
            # UNLINK frees memory off Redis' main thread.
            await self._client.unlink(*(self._key(k) for k in keys))

    async def ttl(self, key: str) -> float | None:
        """Seconds left for ``key``; ``math.inf`` if it never expires, ``None`` if missing."""
        with translate_errors("redis cache ttl"):
            millis = await self._client.pttl(self._key(key))
        if millis == -2:
            return None
        if millis == -1:
            return math.inf
        return millis / 1000

    async def ping(self) -> None:
        with translate_errors("redis cache ping"):
            await self._client.ping()
