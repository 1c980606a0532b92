"""The record store: collections and records (text, payload, timestamp, embedding status).

The log is the source of truth for accepted input; the record store is the processed view that the
indexer writes. Upserts are idempotent: replaying a log batch writes the same rows again.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self


class Status(enum.StrEnum):
    PENDING = "pending"
    EMBEDDED = "embedded"
    FAILED = "failed"


@dataclass(slots=True)
class Collection:
    name: str
    dim: int
    model: str
    created_at: datetime
    vector_name: str
    """Name of the vector collection that search uses (changes on a model switch)."""
    shadow_vector_name: str | None = None
    shadow_model: str | None = None
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Record:
    collection: str
    id: str
    text: str
    payload: dict[str, Any]
    ts: datetime
    status: Status = Status.PENDING
    embedding_model: str | None = None
    embedding_dim: int | None = None
    embedded_at: datetime | None = None
    error: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CollectionStats:
    total: int
    embedded: int
    pending: int
    failed: int
    last_error: str | None
    oldest_pending: datetime | None
    models: dict[str, int]


class RecordStore(abc.ABC):
    """Collections and records. Use as an async context manager."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect and check the schema is at the latest migration."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    # collections
    @abc.abstractmethod
    async def create_collection(self, collection: Collection) -> bool:
        """Create; return False if a collection of that name already exists (unchanged)."""

    @abc.abstractmethod
    async def get_collection(self, name: str) -> Collection | None: ...

    @abc.abstractmethod
    async def list_collections(self) -> list[Collection]: ...

    @abc.abstractmethod
    async def update_collection(self, collection: Collection) -> None: ...

    @abc.abstractmethod
    async def delete_collection(self, name: str) -> bool:
        """Delete a collection and its records; False if it did not exist."""

    # records
    @abc.abstractmethod
    async def upsert(self, records: Sequence[Record]) -> None:
        """Insert or replace records by (collection, id)."""

    @abc.abstractmethod
    async def get(self, collection: str, ids: Sequence[str]) -> list[Record]: ...

    @abc.abstractmethod
    async def delete(self, collection: str, ids: Sequence[str]) -> int: ...

    @abc.abstractmethod
    async def versions(self, collection: str, ids: Sequence[str]) -> dict[str, datetime | None]:
        """``updated_at`` of each record of ``ids`` that exists: tells whether a record read earlier
        is still current without reading it again."""

    @abc.abstractmethod
    async def mark_embedded(
        self, collection: str, versions: Mapping[str, datetime], *, model: str, dim: int, at: datetime
    ) -> list[str]:
        """Stamp records as embedded by ``model`` (``dim``, ``embedded_at=at``, error cleared) in one
        statement per chunk, text and payload untouched; only records whose ``updated_at`` still equals
        ``versions[id]`` (a newer version written meanwhile keeps its own state). ``updated_at``
        becomes the time of the write. Returns the ids stamped."""

    @abc.abstractmethod
    async def stats(self, collection: str) -> CollectionStats: ...

    @abc.abstractmethod
    async def find(
        self,
        collection: str,
        *,
        status: Sequence[Status] | None = None,
        not_model: str | None = None,
        since: datetime | None = None,
        after_id: str | None = None,
        limit: int = 100,
    ) -> list[Record]:
        """Records in id order (keyset pagination after ``after_id``) matching every given condition:
        status among ``status``, or embedded with a model other than ``not_model``; ``ts >= since``."""

    async def ping(self) -> None:  # noqa: B027 - optional hook
        """Raise ``BackendError`` when the store is unreachable (used by ``/ready``)."""
