"""Vector stores: dense (+ optional sparse) vectors with a JSON payload, filtered nearest-neighbour search.

Point ids are the caller's strings; each implementation maps them to what its engine needs and hands
the same strings back. Vectors are L2-normalised float32 and compared by cosine similarity.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

from shoal.filters import Filter

Payload = dict[str, Any]
IndexKind = Literal["keyword", "integer", "float", "bool", "datetime", "text", "uuid"]


@dataclass(frozen=True, slots=True)
class SparseVector:
    indices: list[int]
    values: list[float]


@dataclass(slots=True)
class Point:
    id: str
    vector: Sequence[float] | None
    payload: Payload = field(default_factory=dict)
    sparse: SparseVector | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    score: float
    payload: Payload
    vector: list[float] | None = None


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """One search of a batch (``VectorStore.search_many``); the fields mean what ``search``'s do."""

    vector: Sequence[float]
    limit: int = 10
    filter: Filter | None = None
    exclude_ids: Sequence[str] = ()
    ef: int | None = None
    payload_keys: Sequence[str] | None = None


class VectorStore(abc.ABC):
    """One engine holding many named collections. Use as an async context manager."""

    supports_sparse: bool = False

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect / load from disk."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def create_collection(
        self, name: str, dim: int, *, sparse: bool = False, indexes: Mapping[str, IndexKind] | None = None
    ) -> None:
        """Create ``name`` if missing (cosine distance). Idempotent. ``sparse`` adds a BM25 sparse
        vector with the IDF modifier; a store without sparse support raises ``ConfigurationError``.
        ``indexes`` declares payload indexes (key → kind) up front."""

    async def ensure_index(self, name: str, key: str, kind: IndexKind) -> None:  # noqa: B027 - optional hook
        """Index payload ``key`` for fast filtering (idempotent). Stores that index everything ignore it."""

    @abc.abstractmethod
    async def drop_collection(self, name: str) -> None:
        """Delete ``name`` and its data. No error if it does not exist."""

    @abc.abstractmethod
    async def has_collection(self, name: str) -> bool: ...

    @abc.abstractmethod
    async def upsert(self, name: str, points: Sequence[Point]) -> None:
        """Insert or replace points; searchable (read-your-write) when this returns."""

    @abc.abstractmethod
    async def delete(self, name: str, ids: Sequence[str]) -> None: ...

    @abc.abstractmethod
    async def delete_by_filter(self, name: str, filter: Filter) -> None: ...

    @abc.abstractmethod
    async def retrieve(self, name: str, ids: Sequence[str], *, with_vectors: bool = False) -> list[Point]:
        """Points that exist among ``ids`` (missing ids are skipped)."""

    @abc.abstractmethod
    async def search(
        self,
        name: str,
        vector: Sequence[float],
        *,
        limit: int = 10,
        offset: int = 0,
        filter: Filter | None = None,
        exclude_ids: Sequence[str] = (),
        score_threshold: float | None = None,
        ef: int | None = None,
        with_vectors: bool = False,
        payload_keys: Sequence[str] | None = None,
    ) -> list[Hit]:
        """Nearest points by cosine similarity, best first. ``ef`` overrides the HNSW beam width
        (raise it toward ``limit + len(exclude_ids)`` when excluding many ids). ``payload_keys``
        returns only those payload keys (``ts`` included) of each hit, as Qdrant's ``with_payload``
        include list does: less to read and decode when a caller needs a title, not the document."""

    async def search_many(self, name: str, requests: Sequence[SearchRequest]) -> list[list[Hit]]:
        """``search`` for every request, the results in request order. Stores that can plan a batch
        as one call (Edge) override this; the default runs the searches concurrently."""
        searches = (
            self.search(
                name,
                r.vector,
                limit=r.limit,
                filter=r.filter,
                exclude_ids=r.exclude_ids,
                ef=r.ef,
                payload_keys=r.payload_keys,
            )
            for r in requests
        )
        return list(await asyncio.gather(*searches))

    async def search_sparse(
        self,
        name: str,
        sparse: SparseVector,
        *,
        limit: int = 10,
        filter: Filter | None = None,
    ) -> list[Hit]:
        """Best points by the sparse (BM25) vector; stores without sparse support raise."""
        from shoal.errors import ConfigurationError

        raise ConfigurationError(f"{type(self).__name__} does not support sparse vectors")

    async def hybrid(
        self,
        name: str,
        dense: Sequence[float],
        sparse: SparseVector,
        *,
        limit: int = 10,
        filter: Filter | None = None,
        weights: tuple[float, float] | None = None,
        prefetch: int | None = None,
        rrf_k: int = 60,
    ) -> list[Hit]:
        """Dense and sparse results fused by reciprocal rank fusion inside the engine."""
        from shoal.errors import ConfigurationError

        raise ConfigurationError(f"{type(self).__name__} does not support hybrid queries")

    @abc.abstractmethod
    async def count(self, name: str, filter: Filter | None = None) -> int: ...

    @abc.abstractmethod
    async def scroll(
        self,
        name: str,
        *,
        filter: Filter | None = None,
        limit: int = 10,
        order_by: str | None = None,
        descending: bool = True,
    ) -> list[Point]:
        """Points matching ``filter`` without a query vector, optionally ordered by a payload key."""

    async def optimize(self, name: str) -> None:  # noqa: B027 - optional hook
        """Build indexes for recently written points (run in the background, off the hot path)."""

    async def ping(self) -> None:  # noqa: B027 - optional hook
        """Raise ``BackendError`` when the store is unreachable (used by ``/ready``)."""


def payload_subset(payload: Mapping[str, Any], keys: Sequence[str] | None) -> Payload:
    return dict(payload) if keys is None else {k: payload[k] for k in keys if k in payload}
