"""Inbound rate limits per client key: ``rate`` requests per second, with bursts.

Both limiters run GCRA (the generic cell rate algorithm): a token bucket of ``burst`` tokens that
refills at ``rate`` per second, kept as one number per key (the "theoretical arrival time").
``MemoryRateLimiter`` holds it in this process; ``RedisRateLimiter`` holds it in Redis and updates it in
one Lua script using Redis' clock, so the limit holds across every API process sharing that Redis.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self

from cachetools import TLRUCache

from shoal.errors import MissingDependencyError

if TYPE_CHECKING:
    import redis.asyncio as aioredis


class RateLimiter(abc.ABC):
    """Answers "may ``key`` spend ``cost`` now?" at ``rate`` requests per second, bursts up to ``burst``
    (default: one second's worth, at least 1). Use as an async context manager."""

    def __init__(self, rate: float, burst: int | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.burst = max(1, math.ceil(rate)) if burst is None else burst
        if self.burst < 1:
            raise ValueError("burst must be >= 1")
        self.interval = 1 / rate  # seconds one unit of cost takes to refill

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    async def hit(self, key: str, cost: int = 1) -> float | None:
        """Spend ``cost`` for ``key``: ``None`` if allowed, else the seconds to wait before retrying.

        A denied hit spends nothing. A ``cost`` above ``burst`` is charged as ``burst`` (it passes only
        with a full bucket and empties it) so that no request is refused for ever.
        """
        if cost < 1:
            raise ValueError("cost must be >= 1")
        return await self._hit(key, min(cost, self.burst))

    @abc.abstractmethod
    async def _hit(self, key: str, cost: int) -> float | None: ...


def _until_tat(_key: str, tat: float, _now: float) -> float:
    # Once its arrival time has passed, a key's bucket is full again: forgetting it changes nothing.
    return tat


class MemoryRateLimiter(RateLimiter):
    """GCRA state per key in this process, for at most ``max_keys`` keys.

    Past ``max_keys`` the least recently seen keys are forgotten (they start again with a full bucket);
    keys whose bucket has refilled are dropped on their own. ``clock`` is a monotonic seconds source.
    """

    def __init__(
        self,
        rate: float,
        burst: int | None = None,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(rate, burst)
        self._clock = clock
        self._tats = TLRUCache(max_keys, _until_tat, timer=clock)

    async def _hit(self, key: str, cost: int) -> float | None:
        now = self._clock()
        tat = max(self._tats.get(key, now), now)
        new_tat = tat + cost * self.interval
        allow_at = new_tat - self.burst * self.interval
        # The epsilon absorbs float drift from summing intervals like 1/3 s.
        if allow_at - now > 1e-9:
            return allow_at - now
        self._tats[key] = new_tat
        return None


# KEYS[1]: the key's state; ARGV: interval (µs), burst span (µs), cost. Returns µs to wait, 0 = allowed.
# Waits under 1 µs are float drift from fractional intervals, not a real excess.
# Times are Redis' own clock in microseconds (< 2^53, exact in Lua's doubles), so API processes with
# skewed clocks still agree. The key expires when its bucket is full again.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst_span = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + tonumber(ARGV[3]) * interval
local wait = new_tat - burst_span - now
if wait >= 1 then return math.ceil(wait) end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return 0
"""


class RedisRateLimiter(RateLimiter):
    """GCRA state per key in Redis under ``<prefix><key>``, shared by every process using that Redis.

    A limiter handed a client leaves it open on close; one given a URL makes its own and closes it.
    Redis errors raise ``BackendError``; whether to fail open is the caller's choice.
    """

    def __init__(
        self,
        url_or_client: str | aioredis.Redis,
        rate: float,
        burst: int | None = None,
        *,
        prefix: str = "shoal:ratelimit:",
    ) -> None:
        super().__init__(rate, burst)
        try:
            from shoal.cache.redis import redis_client, translate_errors
        except ModuleNotFoundError as exc:
            raise MissingDependencyError("redis", "redis") from exc
        self._translate_errors = translate_errors
        self._client, self._owns_client = redis_client(url_or_client)
        self._script = self._client.register_script(_GCRA)
        self.prefix = prefix
        self._args = (repr(self.interval * 1e6), repr(self.burst * self.interval * 1e6))

    async def close(self) -> None:
        if self._owns_client:
            with self._translate_errors("redis rate limiter"):
                await self._client.aclose()

    async def _hit(self, key: str, cost: int) -> float | None:
        with self._translate_errors("redis rate limiter"):
            wait = await self._script(keys=[self.prefix + key], args=[*self._args, cost])
        return None if int(wait) <= 0 else int(wait) / 1e6

    async def ping(self) -> None:
        with self._translate_errors("redis rate limiter ping"):
            await self._client.ping()
