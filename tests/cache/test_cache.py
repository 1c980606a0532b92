"""One contract suite over every cache: memory, SQLite file and Redis (db 15, a prefix per test)."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from shoal.cache import Cache
from shoal.cache.memory import MemoryCache
from shoal.cache.redis import RedisCache
from shoal.cache.sqlite import SqliteCache
from shoal.errors import BackendError, ConfigurationError
from shoal.factory import make_cache
from tests.waiting import eventually

THIRTY_DAYS = 30 * 24 * 3600.0

MakeCache = Callable[[float | None], Cache]


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def make(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeCache]:
    """Builds unopened caches of one kind; Redis ones share a per-test prefix that is wiped after."""
    kind = request.param
    prefix = f"test:{uuid.uuid4().hex}:"
    url = request.getfixturevalue("redis_url") if kind == "redis" else ""

    def build(ttl: float | None) -> Cache:
        if kind == "memory":
            return MemoryCache(maxsize=10_000, ttl=ttl)
        if kind == "sqlite":
            return SqliteCache(tmp_path / "cache.db", ttl=ttl)
        return RedisCache(url, ttl=ttl, prefix=prefix)

    yield build
    if kind == "redis":
        async with aioredis.Redis.from_url(url) as client:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
            if keys:
                await client.delete(*keys)


@pytest.fixture
async def cache(make: MakeCache) -> AsyncIterator[Cache]:
    async with make(THIRTY_DAYS) as opened:
        yield opened


async def test_set_then_get(cache: Cache) -> None:
    await cache.set("a", b"alpha")
    assert await cache.get("a") == b"alpha"


async def test_missing_is_none(cache: Cache) -> None:
    assert await cache.get("nope") is None
    assert await cache.ttl("nope") is None


async def test_many_keeps_order_and_marks_missing(cache: Cache) -> None:
    await cache.set_many({"k1": b"1", "k2": b"2", "k3": b"3"})
    assert await cache.get_many(["k3", "missing", "k1", "k3"]) == [b"3", None, b"1", b"3"]
    assert await cache.get_many([]) == []
    await cache.set_many({})


async def test_many_beyond_one_query_chunk(cache: Cache) -> None:
    items = {f"key-{i}": str(i).encode() for i in range(1200)}
    await cache.set_many(items)
    assert await cache.get_many(list(items)) == list(items.values())
    await cache.delete_many(list(items))
    assert await cache.get_many(list(items)) == [None] * len(items)


async def test_overwrite(cache: Cache) -> None:
    await cache.set("a", b"old")
    await cache.set("a", b"new")
    assert await cache.get("a") == b"new"


async def test_delete(cache: Cache) -> None:
    await cache.set_many({"a": b"1", "b": b"2"})
    await cache.delete("a")
    await cache.delete_many(["b", "never-there"])
    await cache.delete_many([])
    assert await cache.get_many(["a", "b"]) == [None, None]


async def test_binary_values(cache: Cache) -> None:
    blob = bytes(range(256)) * 4
    await cache.set_many({"blob": blob, "empty": b"", "nul": b"\x00"})
    assert await cache.get_many(["blob", "empty", "nul"]) == [blob, b"", b"\x00"]


async def test_default_ttl_is_thirty_days(cache: Cache) -> None:
    await cache.set("a", b"1")
    left = await cache.ttl("a")
    assert left is not None
    assert THIRTY_DAYS - 60 < left <= THIRTY_DAYS


async def test_explicit_ttl_wins(cache: Cache) -> None:
    await cache.set("a", b"1", ttl=3600)
    left = await cache.ttl("a")
    assert left is not None
    assert 3500 < left <= 3600


async def test_item_expires(cache: Cache) -> None:
    await cache.set("short", b"1", ttl=0.05)
    await cache.set("long", b"2")
    await eventually(lambda: cache.get("short"), until=lambda value: value is None, timeout=5)
    assert await cache.ttl("short") is None
    assert await cache.get("long") == b"2"


async def test_no_default_ttl_never_expires(make: MakeCache) -> None:
    async with make(None) as cache:
        await cache.set("a", b"1")
        assert await cache.ttl("a") == math.inf
        assert await cache.get("a") == b"1"


async def test_ping(cache: Cache) -> None:
    await cache.ping()


# -- memory -------------------------------------------------------------------------------------
async def test_memory_evicts_least_recently_used() -> None:
    async with MemoryCache(maxsize=2, ttl=60) as cache:
        await cache.set_many({"a": b"1", "b": b"2"})
        await cache.get("a")  # now "b" is the least recently used
        await cache.set("c", b"3")
        assert await cache.get_many(["a", "b", "c"]) == [b"1", None, b"3"]
        assert len(cache) == 2


async def test_memory_size_zero_stores_nothing() -> None:
    async with MemoryCache(maxsize=0, ttl=60) as cache:
        await cache.set("a", b"1")
        assert await cache.get("a") is None
        assert await cache.ttl("a") is None


# -- sqlite -------------------------------------------------------------------------------------
async def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    async with SqliteCache(tmp_path / "c.db", ttl=60) as cache:
        await cache.set("a", b"1")
    async with SqliteCache(tmp_path / "c.db", ttl=60) as cache:
        assert await cache.get("a") == b"1"


async def test_sqlite_purge_deletes_expired_rows(tmp_path: Path) -> None:
    async with SqliteCache(tmp_path / "c.db", ttl=60) as cache:
        await cache.set_many({"a": b"1", "b": b"2"}, ttl=0.01)
        await cache.set("keep", b"3")
        await eventually(lambda: cache.get("a"), until=lambda value: value is None, timeout=5)
        assert await cache.purge() == 2
        assert await cache.get("keep") == b"3"


async def test_sqlite_not_open_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError):
        await SqliteCache(tmp_path / "c.db").get("a")


# -- redis --------------------------------------------------------------------------------------
async def test_redis_keys_carry_the_prefix(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    async with aioredis.Redis.from_url(redis_url) as client:
        async with RedisCache(client, ttl=60, prefix=prefix) as cache:
            await cache.set("a", b"1")
        assert await client.get(f"{prefix}a") == b"1"
        await client.delete(f"{prefix}a")


async def test_redis_handed_client_stays_open(redis_url: str) -> None:
    async with aioredis.Redis.from_url(redis_url) as client:
        async with RedisCache(client, ttl=60, prefix=f"test:{uuid.uuid4().hex}:") as cache:
            await cache.ping()
        assert await client.ping()


async def test_redis_refuses_decoding_client(redis_url: str) -> None:
    async with aioredis.Redis.from_url(redis_url, decode_responses=True) as client:
        with pytest.raises(ConfigurationError):
            RedisCache(client, ttl=60)


async def test_redis_unreachable_is_a_backend_error() -> None:
    # Port 1 on loopback refuses connections: a real failure, no mock.
    async with RedisCache("redis://127.0.0.1:1/0", ttl=60) as cache:
        with pytest.raises(BackendError):
            await cache.get("a")
        with pytest.raises(BackendError):
            await cache.ping()


# -- factory ------------------------------------------------------------------------------------
async def test_factory_builds_each_kind(tmp_path: Path, redis_url: str) -> None:
    assert isinstance(make_cache("memory://", ttl=1), MemoryCache)
    assert isinstance(make_cache(f"sqlite://{tmp_path}/c.db", ttl=1), SqliteCache)
    redis_cache = make_cache(redis_url, ttl=1)
    assert isinstance(redis_cache, RedisCache)
    await redis_cache.close()
