"""Key/value caches with a TTL: in-process (L1), SQLite file or Redis (L2)."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Self


class Cache(abc.ABC):
    """Bytes by string key. Use as an async context manager. A cache handed a client does not close it."""

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
    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values for ``keys`` in order; ``None`` where missing or expired."""

    @abc.abstractmethod
    async def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Store items, each expiring after ``ttl`` seconds (``None``: the cache's default)."""

    @abc.abstractmethod
    async def delete_many(self, keys: Sequence[str]) -> None: ...

    async def get(self, key: str) -> bytes | None:
        return (await self.get_many([key]))[0]

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await self.set_many({key: value}, ttl)

    async def delete(self, key: str) -> None:
        await self.delete_many([key])

    async def ttl(self, key: str) -> float | None:
        """Seconds left before ``key`` expires; ``None`` if missing."""
        raise NotImplementedError

    async def ping(self) -> None:  # noqa: B027 - optional hook
        """Raise ``BackendError`` when the cache is unreachable (used by ``/ready``)."""
