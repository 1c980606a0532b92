"""Rate limiters: one contract over memory and Redis, plus what only each one promises."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from shoal.errors import BackendError
from shoal.factory import make_rate_limiter
from shoal.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from shoal.settings import Settings

MakeLimiter = Callable[..., RateLimiter]


@pytest.fixture(params=["memory", "redis"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[MakeLimiter]:
    """Builds limiters of one kind; Redis ones share a per-test prefix (so two model two processes)."""
    made: list[RateLimiter] = []
    prefix = f"test:{uuid.uuid4().hex}:rl:"
    url = request.getfixturevalue("redis_url") if request.param == "redis" else ""

    def build(rate: float, burst: int | None = None) -> RateLimiter:
        limiter: RateLimiter
        if request.param == "memory":
            limiter = MemoryRateLimiter(rate=rate, burst=burst)
        else:
            limiter = RedisRateLimiter(url, rate=rate, burst=burst, prefix=prefix)
        made.append(limiter)
        return limiter

    yield build
    for limiter in made:
        await limiter.close()
    if url:
        async with aioredis.Redis.from_url(url) as client:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
            if keys:
                await client.delete(*keys)


# Slow rates make refills during a test negligible, so denials are deterministic.
async def test_denies_after_the_limit(make: MakeLimiter) -> None:
    limiter = make(rate=0.05, burst=3)
    assert [await limiter.hit("client") for _ in range(3)] == [None, None, None]
    wait = await limiter.hit("client")
    assert wait is not None
    assert 19 < wait <= 20  # one request refills in 1 / 0.05 s


async def test_default_burst_is_one_seconds_worth(make: MakeLimiter) -> None:
    limiter = make(rate=2.5)
    assert limiter.burst == 3
    assert make(rate=0.01).burst == 1


async def test_a_denied_hit_spends_nothing(make: MakeLimiter) -> None:
    limiter = make(rate=0.05, burst=2)
    await limiter.hit("client")
    await limiter.hit("client")
    first = await limiter.hit("client")
    second = await limiter.hit("client")
    assert first is not None and second is not None
    assert second <= first  # the wait only shrinks with time; denials do not push it back


async def test_keys_are_independent(make: MakeLimiter) -> None:
    limiter = make(rate=0.05, burst=1)
    assert await limiter.hit("alice") is None
    assert await limiter.hit("alice") is not None
    assert await limiter.hit("bob") is None


async def test_cost_counts_several_requests(make: MakeLimiter) -> None:
    limiter = make(rate=0.05, burst=5)
    assert await limiter.hit("client", cost=4) is None
    assert await limiter.hit("client", cost=2) is not None
    assert await limiter.hit("client", cost=1) is None


async def test_burst_below_limit(make: MakeLimiter) -> None:
    limiter = make(rate=1, burst=2)
    assert await limiter.hit("client") is None
    assert await limiter.hit("client") is None
    wait = await limiter.hit("client")
    assert wait is not None and 0 < wait <= 1


async def test_cost_beyond_burst_needs_a_full_bucket(make: MakeLimiter) -> None:
    limiter = make(rate=0.05, burst=3)
    assert await limiter.hit("fresh", cost=10) is None  # a full bucket lets it through and is emptied
    assert await limiter.hit("fresh") is not None
    assert await limiter.hit("used") is None
    assert await limiter.hit("used", cost=10) is not None
    with pytest.raises(ValueError):
        await limiter.hit("client", cost=0)


async def test_factory_builds_each_kind(redis_url: str) -> None:
    async with make_rate_limiter(Settings(_env_file=None)) as memory:
        assert isinstance(memory, MemoryRateLimiter)
    async with make_rate_limiter(Settings(_env_file=None, cache_url=redis_url)) as shared:
        assert isinstance(shared, RedisRateLimiter)


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        MemoryRateLimiter(rate=0)
    with pytest.raises(ValueError):
        MemoryRateLimiter(rate=1, burst=0)


# -- memory ---------------------------------------------------------------------------------------
class Clock:
    """A clock the test moves by hand (the limiter's own seam, not a patch)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_refills_at_the_rate() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(rate=3, clock=clock)
    for _ in range(3):
        assert await limiter.hit("k") is None
    wait = await limiter.hit("k")
    assert wait == pytest.approx(1 / 3)
    clock.now += 1 / 3
    assert await limiter.hit("k") is None
    assert await limiter.hit("k") is not None
    clock.now += 10  # idle: the bucket is full again, never fuller
    assert [await limiter.hit("k") for _ in range(4)] == [None, None, None, pytest.approx(1 / 3)]


async def test_memory_tracks_a_bounded_number_of_keys() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(rate=0.05, max_keys=10, clock=clock)
    for i in range(100):
        await limiter.hit(f"client-{i}")
    assert len(limiter._tats) == 10


# -- redis ----------------------------------------------------------------------------------------
async def test_redis_limit_is_shared_between_processes(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:rl:"
    async with (
        RedisRateLimiter(redis_url, rate=0.05, burst=3, prefix=prefix) as api_one,
        RedisRateLimiter(redis_url, rate=0.05, burst=3, prefix=prefix) as api_two,
        aioredis.Redis.from_url(redis_url) as client,
    ):
        assert await api_one.hit("client") is None
        assert await api_two.hit("client") is None
        assert await api_one.hit("client") is None
        assert await api_two.hit("client") is not None
        assert await api_one.hit("client") is not None
        # State expires once the bucket would be full again (3 requests refill in 60 s).
        assert 0 < await client.pttl(f"{prefix}client") <= 60_000
        await client.delete(f"{prefix}client")


async def test_redis_handed_client_stays_open(redis_url: str) -> None:
    async with aioredis.Redis.from_url(redis_url) as client:
        async with RedisRateLimiter(client, rate=1, prefix=f"test:{uuid.uuid4().hex}:") as limiter:
            await limiter.ping()
        assert await client.ping()


async def test_redis_unreachable_is_a_backend_error() -> None:
    async with RedisRateLimiter("redis://127.0.0.1:1/0", rate=1) as limiter:
        with pytest.raises(BackendError):
            await limiter.hit("client")
