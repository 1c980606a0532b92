"""The in-process bus (default) and the bounded subscription buffer every bus uses.

Events are JSON-encoded once on publish and decoded per subscriber on read, exactly as on Redis:
an event that would not survive Redis fails here too, and subscribers never share a mutable dict.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager

import orjson

from shoal.bus.base import Bus, Event, Subscription
from shoal.errors import BackendError

_GLOB = frozenset("*?[")


def is_pattern(channel: str) -> bool:
    """Whether ``channel`` is a glob pattern (``indexed:*``) rather than an exact name."""
    return not _GLOB.isdisjoint(channel)


def encode(event: Event) -> bytes:
    """The wire form of ``event``; a ``TypeError`` for anything JSON cannot carry is a publisher bug."""
    return orjson.dumps(event)


class BufferedSubscription(Subscription):
    """Encoded events in a bounded buffer; iterating decodes them in order.

    Full buffer: the oldest event goes and ``dropped`` grows. Messages that are not a JSON object
    (another program publishing on a shared Redis channel) are skipped and counted in ``malformed``.
    Iteration ends once the subscription is closed, and raises ``BackendError`` (after the buffered
    events) if the bus behind it failed.
    """

    def __init__(self, maxsize: int, on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self.dropped = 0
        self.malformed = 0
        self._buffer: deque[bytes] = deque(maxlen=maxsize)
        self._ready = asyncio.Event()
        self._closed = False
        self._error: BaseException | None = None
        self._on_close = on_close

    def put(self, data: bytes) -> None:
        """Buffer one encoded event (called by the bus)."""
        if self._closed:
            return
        if len(self._buffer) == self.maxsize:
            self.dropped += 1  # the deque's maxlen pushes the oldest out on append
        self._buffer.append(data)
        self._ready.set()

    def fail(self, error: BaseException) -> None:
        """End iteration with ``BackendError`` once the buffer is drained (called by the bus)."""
        self._error = error
        self._ready.set()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._buffer)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._buffer:
                data = self._buffer.popleft()
                try:
                    event = orjson.loads(data)
                except orjson.JSONDecodeError:
                    # Someone else published junk on a shared Redis channel: skip it, do not die.
                    self.malformed += 1
                    continue
                if isinstance(event, dict):
                    return event
                self.malformed += 1
                continue
            if self._error is not None:
                raise BackendError(f"bus subscription lost: {self._error}") from self._error
            self._ready.clear()
            await self._ready.wait()

    async def close(self) -> None:
        """Stop iterating and unsubscribe; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._buffer.clear()
        self._ready.set()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            await on_close()


class Registry:
    """Which subscriptions listen on which exact channels and patterns."""

    def __init__(self) -> None:
        self.channels: dict[str, set[BufferedSubscription]] = {}
        self.patterns: dict[str, set[BufferedSubscription]] = {}

    def _table(self, channel: str) -> dict[str, set[BufferedSubscription]]:
        return self.patterns if is_pattern(channel) else self.channels

    def add(self, sub: BufferedSubscription, channels: Iterable[str]) -> list[str]:
        """Register ``sub``; returns the channels/patterns nobody listened on before."""
        new = []
        for channel in channels:
            subs = self._table(channel).setdefault(channel, set())
            if not subs:
                new.append(channel)
            subs.add(sub)
        return new

    def remove(self, sub: BufferedSubscription, channels: Iterable[str]) -> list[str]:
        """Unregister ``sub``; returns the channels/patterns nobody listens on any more."""
        gone = []
        for channel in channels:
            table = self._table(channel)
            subs = table.get(channel)
            if subs is None:
                continue
            subs.discard(sub)
            if not subs:
                del table[channel]
                gone.append(channel)
        return gone

    def all(self) -> set[BufferedSubscription]:
        subs: set[BufferedSubscription] = set()
        for table in (self.channels, self.patterns):
            for group in table.values():
                subs |= group
        return subs


def unique(channels: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(channels))
    if not names:
        raise ValueError("subscribe() needs at least one channel")
    return names


class MemoryBus(Bus):
    """Fan-out to subscribers in this process only. Channels are exact names or glob patterns
    (``indexed:*``); a subscription matching a channel both ways receives the event twice, as on Redis."""

    def __init__(self) -> None:
        self._registry = Registry()

    async def close(self) -> None:
        for sub in self._registry.all():
            await sub.close()

    async def publish(self, channel: str, event: Event) -> None:
        data = encode(event)
        for sub in self._registry.channels.get(channel, ()):
            sub.put(data)
        for pattern, subs in self._registry.patterns.items():
            if fnmatch.fnmatchcase(channel, pattern):
                for sub in subs:
                    sub.put(data)

    @asynccontextmanager
    async def subscribe(self, *channels: str, maxsize: int = 1000) -> AsyncIterator[BufferedSubscription]:
        names = unique(channels)

        async def unregister() -> None:
            self._registry.remove(sub, names)

        sub = BufferedSubscription(maxsize, on_close=unregister)
        self._registry.add(sub, names)
        try:
            yield sub
        finally:
            await sub.close()
