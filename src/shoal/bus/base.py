"""The bus: fire-and-forget fan-out of small JSON events to live subscribers (WebSockets, waiters).

Events on the bus are notifications, not data of record: a subscriber that is gone misses them, and
anything that must not be lost goes through the log instead.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Self

Event = dict[str, Any]


class Subscription(abc.ABC):
    """An async iterator of events on some channels, with a bounded buffer.

    When the buffer is full the oldest events are dropped and ``dropped`` counts them; the
    subscriber decides whether that is fatal (a WebSocket closes with 1013)."""

    dropped: int = 0

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[Event]: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


class Bus(abc.ABC):
    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def publish(self, channel: str, event: Event) -> None: ...

    @abc.abstractmethod
    def subscribe(self, *channels: str, maxsize: int = 1000) -> AbstractAsyncContextManager[Subscription]:
        """Subscribe to ``channels``; leaving the context unsubscribes."""

    async def ping(self) -> None:  # noqa: B027 - optional hook
        """Raise ``BackendError`` when the bus is unreachable (used by ``/ready``)."""
