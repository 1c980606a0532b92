"""The bus over Redis pub/sub: events reach subscribers in every Shoal process sharing the Redis.

One pub/sub connection and one reader task per bus, whatever the number of subscriptions: the reader
fans each message out to the local subscriptions' bounded buffers, so a thousand WebSockets cost one
Redis connection. Channels are Redis channels (no prefix); patterns use ``PSUBSCRIBE``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shoal.bus.base import Bus, Event
from shoal.bus.memory import BufferedSubscription, Registry, encode, is_pattern, unique
from shoal.cache.redis import redis_client, translate_errors
from shoal.errors import BackendError

_Confirmation = tuple[str, str]  # ("subscribe" | "psubscribe", channel or pattern)


class RedisBus(Bus):
    """Fan-out through Redis pub/sub. ``subscribe()`` returns once Redis has confirmed the
    subscription, so an event published after that is delivered.

    A lost connection is re-made and every subscription renewed (events published in between are
    missed); after ``reconnect_attempts`` failures in a row (~10 s by default) every open
    subscription ends with ``BackendError`` and later calls raise it too. A bus handed a client
    leaves it open on close; one given a URL makes its own and closes it.
    """

    def __init__(
        self,
        url_or_client: str | aioredis.Redis,
        *,
        subscribe_timeout: float = 10.0,
        reconnect_attempts: int = 8,
    ) -> None:
        self._client, self._owns_client = redis_client(url_or_client)
        self.subscribe_timeout = subscribe_timeout
        self.reconnect_attempts = reconnect_attempts
        self._pubsub = self._client.pubsub()
        self._registry = Registry()
        # Serialises (un)subscribe commands so confirmations arrive in the order we wait for them.
        self._lock = asyncio.Lock()
        self._confirmations: dict[_Confirmation, deque[asyncio.Future[None]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------------
    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sub in self._registry.all():
            await sub.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.wait([self._reader])
        with translate_errors("redis bus close"):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 8.2
            if self._owns_client:
                await self._client.aclose()

    async def ping(self) -> None:
        self._check()
        with translate_errors("redis bus ping"):
            await self._client.ping()

    def _check(self) -> None:
        if self._closed:
            raise BackendError("redis bus is closed")
        if self._failure is not None:
            raise BackendError(f"redis bus connection lost: {self._failure}") from self._failure

    # -- publish / subscribe -------------------------------------------------------------------
    async def publish(self, channel: str, event: Event) -> None:
        self._check()
        data = encode(event)
        with translate_errors("redis bus publish"):
            await self._client.publish(channel, data)

    @asynccontextmanager
    async def subscribe(self, *channels: str, maxsize: int = 1000) -> AsyncIterator[BufferedSubscription]:
        names = unique(channels)

        async def release() -> None:
            await self._release(sub, names)

        sub = BufferedSubscription(maxsize, on_close=release)
        await self._acquire(sub, names)
        try:
            yield sub
        finally:
            await sub.close()

    async def _acquire(self, sub: BufferedSubscription, names: Sequence[str]) -> None:
        self._check()
        async with self._lock:
            new = self._registry.add(sub, names)
            channels = [name for name in new if not is_pattern(name)]
            patterns = [name for name in new if is_pattern(name)]
            waits = [self._expect("subscribe", c) for c in channels]
            waits += [self._expect("psubscribe", p) for p in patterns]
            try:
                with translate_errors("redis bus subscribe"):
                    if channels:
                        await self._pubsub.subscribe(*channels)
                    if patterns:
                        await self._pubsub.psubscribe(*patterns)
                if self._reader is None:
                    self._reader = asyncio.create_task(self._read(), name="shoal-redis-bus-reader")
                if waits:
                    async with asyncio.timeout(self.subscribe_timeout):
                        await asyncio.gather(*waits)
            except BaseException as exc:
                for wait in waits:
                    wait.cancel()
                gone = self._registry.remove(sub, names)
                # Best effort: the subscribe itself failed, so the undo may fail the same way.
                with suppress(RedisError, OSError):
                    await self._unsubscribe(gone)
                if isinstance(exc, TimeoutError):
                    raise BackendError(f"redis bus: no subscribe confirmation for {new}") from exc
                raise

    async def _release(self, sub: BufferedSubscription, names: Sequence[str]) -> None:
        async with self._lock:
            gone = self._registry.remove(sub, names)
            if gone and not self._closed and self._failure is None:
                with translate_errors("redis bus unsubscribe"):
                    await self._unsubscribe(gone)

    async def _unsubscribe(self, names: Sequence[str]) -> None:
        channels = [name for name in names if not is_pattern(name)]
        patterns = [name for name in names if is_pattern(name)]
        if channels:
            await self._pubsub.unsubscribe(*channels)
        if patterns:
            await self._pubsub.punsubscribe(*patterns)

    def _expect(self, kind: str, name: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirmations.setdefault((kind, name), deque()).append(future)
        return future

    # -- the reader ----------------------------------------------------------------------------
    async def _read(self) -> None:
        failures = 0
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                # The next read reconnects and redis-py resubscribes everything on connect; events
                # published meanwhile are missed, which the bus allows (notifications, not records).
                failures += 1
                if failures > self.reconnect_attempts:
                    self._fail(exc)
                    return
                await asyncio.sleep(min(2.0, 0.05 * 2**failures))  # back-off before reconnecting
                continue
            except Exception as exc:  # anything else ends the bus: subscribers get it, not a log line
                self._fail(exc)
                return
            failures = 0
            if message is not None:
                self._dispatch(message)

    def _fail(self, exc: BaseException) -> None:
        self._failure = exc
        for sub in self._registry.all():
            sub.fail(exc)
        for futures in self._confirmations.values():
            for future in futures:
                if not future.done():
                    future.set_exception(BackendError(f"redis bus connection lost: {exc}"))
        self._confirmations.clear()

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "message":
            subs = self._registry.channels.get(_text(message["channel"]), ())
        elif kind == "pmessage":
            subs = self._registry.patterns.get(_text(message["pattern"]), ())
        elif kind in {"subscribe", "psubscribe"}:
            self._confirm((kind, _text(message["channel"])))
            return
        else:
            return
        for sub in subs:
            sub.put(message["data"])

    def _confirm(self, key: _Confirmation) -> None:
        futures = self._confirmations.get(key)
        while futures:
            future = futures.popleft()
            if not future.done():
                future.set_result(None)
                break
        if not futures:
            self._confirmations.pop(key, None)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
