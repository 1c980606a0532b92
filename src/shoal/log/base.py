"""The durable log: topics split into partitions by key hash, consumer groups with committed offsets.

``append`` returns only after the messages are committed to stable storage: this is what makes a
``202 Accepted`` durable. Consumers wait on notifications (no polling loops) and commit offsets after
the work they did with a batch is itself durable, so a crash replays at most the uncommitted tail.
"""

from __future__ import annotations

import abc
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from shoal.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Message:
    """One committed log entry."""

    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    timestamp: float


def partition_for(key: str, partitions: int) -> int:
    """Stable partition of ``key`` (crc32, same in every process and run)."""
    return zlib.crc32(key.encode("utf-8")) % partitions


class Consumer(abc.ABC):
    """Reads one topic for one consumer group. Use as an async context manager."""

    topic: str
    group: str

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def poll(self, max_records: int, timeout: float | None = None) -> list[Message]:
        """Return the next uncommitted messages (up to ``max_records``), waiting up to ``timeout``
        seconds (``None``: until some arrive or the consumer is closed). Messages of one
        partition come in offset order. Returns ``[]`` on timeout or close."""

    @abc.abstractmethod
    async def commit(self, messages: Sequence[Message]) -> None:
        """Mark ``messages`` (and everything before them in their partitions) as processed."""

    def next_offsets(self, messages: Sequence[Message]) -> dict[int, int]:
        """Partition -> the offset after the last of ``messages`` in it: what ``commit`` records.

        Raises:
            InvalidInput: a message of another topic.
        """
        offsets: dict[int, int] = {}
        for message in messages:
            if message.topic != self.topic:
                raise InvalidInput(f"message of topic {message.topic!r} committed on {self.topic!r}")
            offsets[message.partition] = max(offsets.get(message.partition, 0), message.offset + 1)
        return offsets

    @abc.abstractmethod
    async def rewind(self, messages: Sequence[Message]) -> None:
        """Hand ``messages`` out again on the next ``poll`` (a failed batch is retried)."""

    @abc.abstractmethod
    async def lag(self) -> int:
        """Messages appended but not yet committed by this group."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop waiting; a pending ``poll`` returns ``[]``."""


class Log(abc.ABC):
    """A partitioned, durable, append-only log. Use as an async context manager."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect / create files."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def append(self, topic: str, items: Sequence[tuple[str, bytes]]) -> list[Message]:
        """Append ``(key, value)`` items; return once they are durable, with their offsets."""

    @abc.abstractmethod
    def consumer(self, topic: str, group: str) -> Consumer:
        """A consumer of ``topic`` for ``group`` starting after the group's committed offsets."""

    @abc.abstractmethod
    async def lag(self, topic: str, group: str) -> int:
        """Messages of ``topic`` not yet committed by ``group``."""

    async def ping(self) -> None:  # noqa: B027 - optional hook
        """Raise ``BackendError`` when the log is unreachable (used by ``/ready``)."""
