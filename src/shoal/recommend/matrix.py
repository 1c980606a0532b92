"""The catalog in memory: every item's unit vector as one float32 row, so a batch of users' lists is
scored exactly against every item with one matrix product.

Why: a list is the top unseen items by cosine similarity to the taste (plus the trending boost).
Through the vector store that is one filtered HNSW query a user, and Qdrant Edge keeps the GIL for
the whole query (~0.8 ms on a 10k-item catalog, plus decoding its hits), so at a few hundred events a
second the searches alone held the GIL a third of the time and the event loop queued behind them.
BLAS scores 32 users against 10k items in ~2.5 ms with the GIL released (~0.1 ms a user, and the
lists are exact). The cost is memory: 4 bytes × dimension an item (1.5 KB at 384; 15 MB for the
10k-item electronics catalog), so only catalogs up to ``exact_max_items`` are held; a larger one is
searched through the vector store as before.

The rows follow the catalog's collection: loaded on first use from the record store's ids and the
vector store's vectors, then kept current from the ``indexed`` bus events (items written, deleted)
that the indexer and backfill publish, in every process. A missed event (a full subscription
buffer) or a different vector collection (a model switch, the collection re-created) reloads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from shoal.blas import one_blas_thread
from shoal.errors import CollectionNotFound
from shoal.ingest import INDEXED_CHANNEL
from shoal.recommend.profiles import unit
from shoal.records import Status
from shoal.services import Services
from shoal.vectors import Point

logger = structlog.get_logger(__name__)

PAGE = 1000
"""Items read a round trip while loading."""
Key = tuple[str, datetime]
"""(vector collection, the collection's creation time): a different one means other vectors."""


def title_of(payload: Mapping[str, Any]) -> str:
    title = payload.get("title") or payload.get("_text") or ""
    return str(title)[:300]


class _Rows:
    """Ids, titles and unit vectors, one row an item. Rows are appended or overwritten in place, a
    deleted one is only marked dead; a compaction builds new arrays, so a scoring pass that took
    the old ones on a worker thread reads a consistent set."""

    def __init__(self, dim: int, capacity: int = 1024) -> None:
        self.ids: list[str] = []
        self.titles: list[str] = []
        self.index: dict[str, int] = {}
        self.matrix: npt.NDArray[np.float32] = np.zeros((capacity, dim), dtype=np.float32)
        self.alive: npt.NDArray[np.bool_] = np.zeros(capacity, dtype=bool)
        self.dead = 0

    def __len__(self) -> int:
        return len(self.index)

    def put(self, points: Iterable[Point]) -> None:
        for point in points:
            if point.vector is None:
                continue
            row = self.index.get(point.id)
            if row is None:
                row = len(self.ids)
                if row == len(self.matrix):
                    self._grow()
                self.ids.append(point.id)
                self.titles.append("")
                self.index[point.id] = row
            self.matrix[row] = unit(point.vector)
            self.titles[row] = title_of(point.payload)
            self.alive[row] = True

    def drop(self, ids: Iterable[str]) -> None:
        for item_id in ids:
            row = self.index.pop(item_id, None)
            if row is not None:
                self.alive[row] = False
                self.dead += 1
        if self.dead > max(1024, len(self.index)):
            self._compact()

    def _grow(self) -> None:
        size = len(self.matrix)
        matrix = np.zeros((2 * size, self.matrix.shape[1]), dtype=np.float32)
        matrix[:size] = self.matrix
        alive = np.zeros(2 * size, dtype=bool)
        alive[:size] = self.alive
        self.matrix, self.alive = matrix, alive

    def _compact(self) -> None:
        keep = [r for r in range(len(self.ids)) if self.alive[r]]
        self.ids = [self.ids[r] for r in keep]
        self.titles = [self.titles[r] for r in keep]
        self.index = {item_id: row for row, item_id in enumerate(self.ids)}
        matrix = np.zeros((max(1024, 2 * len(keep)), self.matrix.shape[1]), dtype=np.float32)
        matrix[: len(keep)] = self.matrix[keep]
        alive = np.zeros(len(matrix), dtype=bool)
        alive[: len(keep)] = True
        self.matrix, self.alive, self.dead = matrix, alive, 0


class ItemMatrix:
    """The catalog collection's items as a matrix (see the module docstring). Use as an async
    context manager: it listens for the collection's writes while open.

    Args:
        services: Where the items are (collections, record store, vector store, bus).
        collection: The catalog's collection name.
        max_items: The largest catalog held; ``0`` never holds one.
    """

    def __init__(self, services: Services, collection: str, max_items: int) -> None:
        self._s = services
        self._collection = collection
        self._max_items = max_items
        self._key: Key | None = None
        self._rows: _Rows | None = None
        self._oversized: Key | None = None
        """The key of a catalog found larger than ``max_items`` (not loaded again for it)."""
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def __aenter__(self) -> ItemMatrix:
        if self._max_items > 0:
            self._task = asyncio.create_task(self._listen(), name="recommend-item-matrix")
            await self._listening.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def size(self) -> int:
        return len(self._rows) if self._rows is not None else 0

    async def ready(self) -> bool:
        """Whether the catalog is held (loading it now if needed): ``False`` when it is larger than
        ``max_items``, missing, or holding is off."""
        if self._max_items <= 0:
            return False
        try:
            collection = await self._s.collections.get(self._collection)
        except CollectionNotFound:
            return False
        key = (collection.vector_name, collection.created_at)
        if self._key == key and self._rows is not None:
            return True
        if self._oversized == key:
            return False
        async with self._lock:
            if self._key != key or self._rows is None:
                await self._load(key, collection.dim)
        return self._rows is not None

    async def _load(self, key: Key, dim: int) -> None:
        self._key, self._rows = None, None
        vector_name = key[0]
        if await self._s.vectors.count(vector_name) > self._max_items:
            self._oversized = key
            logger.info("catalog too large to hold in memory: searched through the vector store", items=self._max_items)
            return
        rows = _Rows(dim)
        after: str | None = None
        while True:
            page = await self._s.records.find(self._collection, status=[Status.EMBEDDED], after_id=after, limit=PAGE)
            if not page:
                break
            rows.put(await self._s.vectors.retrieve(vector_name, [r.id for r in page], with_vectors=True))
            if len(rows) > self._max_items:
                self._oversized = key
                return
            after = page[-1].id
        self._key, self._rows = key, rows

    async def _listen(self) -> None:
        async with self._s.bus.subscribe(INDEXED_CHANNEL, maxsize=10_000) as subscription:
            self._listening.set()
            dropped = 0
            async for event in subscription:
                if subscription.dropped != dropped:
                    dropped = subscription.dropped
                    self._invalidate()  # an event was missed: reload on next use
                    continue
                if event.get("collection") == self._collection:
                    await self._apply(event)

    async def _apply(self, event: Mapping[str, Any]) -> None:
        async with self._lock:
            rows, key = self._rows, self._key
            if rows is None or key is None:
                return  # not loaded: the load reads the catalog as it is then
            try:
                rows.drop(event.get("deleted") or ())
                ids = list(event.get("ids") or ())
                if ids:
                    rows.put(await self._s.vectors.retrieve(key[0], ids, with_vectors=True))
            except Exception:  # a store error: the next use reloads rather than serve a stale catalog
                logger.warning("could not apply a catalog update; reloading on next use", exc_info=True)
                self._invalidate()
                return
            if len(rows) > self._max_items:
                self._oversized, self._rows, self._key = key, None, None

    def _invalidate(self) -> None:
        self._rows, self._key = None, None

    def vectors(self, ids: Iterable[str]) -> dict[str, npt.NDArray[np.float64]]:
        """The held items' unit vectors among ``ids`` (the caller looks up the rest)."""
        rows = self._rows
        if rows is None:
            return {}
        return {i: rows.matrix[r].astype(np.float64) for i in ids if (r := rows.index.get(i)) is not None}

    def titles(self, ids: Iterable[str]) -> dict[str, str]:
        """The held items' titles among ``ids``."""
        rows = self._rows
        if rows is None:
            return {}
        return {i: rows.titles[r] for i in ids if (r := rows.index.get(i)) is not None}

    async def best(
        self,
        queries: npt.NDArray[np.float64],
        seen: Sequence[Collection[str]],
        boost: Mapping[str, float],
        limit: int,
    ) -> list[list[dict[str, Any]]] | None:
        """For each row of ``queries`` (unit tastes), its ``limit`` best items as
        ``{"item_id", "title", "score"}``, best first, scored by cosine similarity plus ``boost`` and
        leaving out its ``seen`` items; ``None`` when the catalog is not held (the caller searches
        the vector store)."""
        rows = self._rows
        if rows is None:
            return None
        size = len(rows.ids)
        ids, titles = rows.ids, rows.titles
        excluded = [[r for i in s if (r := rows.index.get(i)) is not None] for s in seen]
        boosted = [(r, b) for i, b in boost.items() if (r := rows.index.get(i)) is not None]
        top = await asyncio.to_thread(
            _top, queries.astype(np.float32), rows.matrix[:size], rows.alive[:size], excluded, boosted, limit
        )
        return [
            [{"item_id": ids[r], "title": titles[r], "score": score} for r, score in zip(found, scores, strict=True)]
            for found, scores in top
        ]


def _top(
    queries: npt.NDArray[np.float32],
    matrix: npt.NDArray[np.float32],
    alive: npt.NDArray[np.bool_],
    excluded: Sequence[Sequence[int]],
    boosted: Sequence[tuple[int, float]],
    limit: int,
) -> list[tuple[list[int], list[float]]]:
    """Rows and scores (6 decimals) of each query's best ``limit``, best first (run on a worker
    thread: BLAS and the partition release the GIL). A fixed handful of array calls whatever the
    number of queries: each call that releases the GIL must win it back, and while the event loop
    is busy every win is a wait."""
    with one_blas_thread():
        # items × queries: BLAS streams the row-major catalog once (~35 % faster than queries × items.T)
        scores = np.ascontiguousarray((matrix @ queries.T).T)
    if boosted:
        scores[:, [r for r, _ in boosted]] += np.asarray([b for _, b in boosted], dtype=np.float32)
    scores[:, ~alive] = -np.inf
    if any(excluded):
        which = np.repeat(np.arange(len(excluded)), [len(rows) for rows in excluded])
        scores[which, np.fromiter((r for rows in excluded for r in rows), dtype=np.intp, count=len(which))] = -np.inf
    size = scores.shape[1]
    k = min(limit, size)
    if k == 0:
        return [([], []) for _ in range(len(queries))]
    candidates = np.argpartition(scores, size - k, axis=1)[:, size - k :] if k < size else np.argsort(scores, axis=1)
    best = np.take_along_axis(scores, candidates, axis=1)
    order = np.argsort(-best, axis=1, kind="stable")
    rows = np.take_along_axis(candidates, order, axis=1).tolist()
    values = np.round(np.take_along_axis(best, order, axis=1).astype(np.float64), 6).tolist()
    found = []
    for r, v in zip(rows, values, strict=True):
        # items left out (dead, seen) score -inf and sort last: a short catalog ends the list early
        n = k if v[-1] > -math.inf else v.index(-math.inf)
        found.append((r[:n], v[:n]))
    return found
