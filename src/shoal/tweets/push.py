"""Live pushes: on every ``indexed`` event for the tweets collection, send each new tweet's similar
tweets to the connection that sent it and match the new vectors against every standing query.

The hub reacts to bus events only (the indexer may run in another process); nothing polls. Pushes
are handed to each connection's bounded send queue without waiting, so one slow reader cannot
hold the others up.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

import numpy as np
import structlog

from shoal.errors import ShoalError
from shoal.filters import FieldCondition, Filter, Match
from shoal.ingest import INDEXED_CHANNEL
from shoal.search import to_result
from shoal.services import Services
from shoal.vectors import Hit, Point

logger = structlog.get_logger(__name__)

Event = dict[str, Any]
STORE_KEYS = frozenset({"ts"})
"""Payload keys the pipeline adds beside the tweet's own (the record time)."""


class Listener(Protocol):
    """A connection as the hub sees it."""

    k: int
    everyone: bool
    """Similar tweets come from every user (admin, or auth off) rather than the tweet's own user."""

    def push(self, event: Event) -> None:
        """Queue ``event`` without waiting; an overflowing listener closes itself."""

    def done(self, tweet_id: str) -> None:
        """``tweet_id`` is no longer pending for this listener."""


@dataclass(slots=True)
class StandingQuery:
    id: str
    owner: Listener
    query: str
    min_score: float
    vector: np.ndarray[Any, np.dtype[np.float32]]
    user_id: str | None
    """Only tweets of this user match; ``None`` means every user's."""


def user_filter(user_id: str) -> Filter:
    return Filter(must=[FieldCondition(key="user_id", match=Match(value=user_id))])


def visible(payload: dict[str, Any]) -> dict[str, Any]:
    """A payload without the keys the pipeline and the store add."""
    return {k: v for k, v in payload.items() if not k.startswith("_") and k not in STORE_KEYS}


def public_payload(hit: Hit | Point) -> dict[str, Any]:
    """What a client sees of a tweet: its own payload plus ``text``."""
    payload = visible(hit.payload)
    payload["text"] = hit.payload.get("_text")
    return payload


class PushHub:
    """Routes ``indexed`` events to connections. Use as an async context manager."""

    def __init__(self, services: Services, collection: str) -> None:
        self._s = services
        self.collection = collection
        self._pending: dict[str, list[Listener]] = defaultdict(list)
        self._queries: dict[tuple[int, str], StandingQuery] = {}
        self._matrix: np.ndarray[Any, np.dtype[np.float32]] | None = None
        self._order: list[StandingQuery] = []
        self._listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.events = 0

    async def __aenter__(self) -> Self:
        self._task = self._s.tasks.spawn(self._run(), name="tweets-push")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def listening(self) -> None:
        """Returns once the hub receives events (pushes for tweets acked later are not missed)."""
        await self._listening.wait()

    @property
    def is_listening(self) -> bool:
        return self._listening.is_set() and self._task is not None and not self._task.done()

    # -- registrations (called by connections) -------------------------------------------------
    def expect(self, listener: Listener, ids: Sequence[str]) -> None:
        """``listener`` wants the similar tweets of ``ids`` once they are indexed."""
        for tweet_id in ids:
            self._pending[tweet_id].append(listener)

    def forget(self, listener: Listener, ids: Sequence[str]) -> None:
        for tweet_id in ids:
            waiting = self._pending.get(tweet_id)
            if waiting is None:
                continue
            self._pending[tweet_id] = [w for w in waiting if w is not listener]
            if not self._pending[tweet_id]:
                del self._pending[tweet_id]

    def subscribe(self, query: StandingQuery) -> None:
        self._queries[(id(query.owner), query.id)] = query
        self._matrix = None

    def unsubscribe(self, owner: Listener, query_id: str) -> bool:
        found = self._queries.pop((id(owner), query_id), None) is not None
        self._matrix = None
        return found

    def drop(self, listener: Listener, pending: Sequence[str]) -> None:
        """Remove everything ``listener`` registered (it disconnected)."""
        self.forget(listener, pending)
        for key in [k for k, q in self._queries.items() if q.owner is listener]:
            del self._queries[key]
        self._matrix = None

    # -- event handling ------------------------------------------------------------------------
    async def _run(self) -> None:
        async with self._s.bus.subscribe(INDEXED_CHANNEL, maxsize=100_000) as subscription:
            self._listening.set()
            async for event in subscription:
                if event.get("collection") != self.collection:
                    continue
                self.events += 1
                try:
                    await self.handle(event.get("ids") or [], event.get("failed") or {})
                except ShoalError as exc:
                    logger.error("tweet push failed", error=exc.code, details=str(exc.details))
                if subscription.dropped:
                    logger.warning("indexed events dropped; some pushes were missed", dropped=subscription.dropped)
                    subscription.dropped = 0

    async def handle(self, ids: Sequence[str], failed: dict[str, str]) -> None:
        for tweet_id, error in failed.items():
            for listener in self._pending.pop(tweet_id, ()):
                listener.done(tweet_id)
                listener.push({"type": "error", "error": "embedding_failed", "tweet_id": tweet_id, "details": error})
        wanted = list(ids) if self._queries else [i for i in ids if i in self._pending]
        if not wanted:
            return
        collection = await self._s.collections.get(self.collection)
        points = await self._s.vectors.retrieve(collection.vector_name, wanted, with_vectors=True)
        points = [p for p in points if p.vector is not None]
        searches = []
        for point in points:
            for listener in self._pending.pop(point.id, ()):
                listener.done(point.id)
                searches.append(self._similar(collection.vector_name, point, listener))
        # A tweet deleted before its push stops being pending.
        for tweet_id in set(wanted) - {p.id for p in points}:
            for listener in self._pending.pop(tweet_id, ()):
                listener.done(tweet_id)
        if self._queries and points:
            self._match(points)
        if searches:
            await asyncio.gather(*searches)

    async def _similar(self, vector_name: str, point: Point, listener: Listener) -> None:
        user_id = point.payload.get("user_id")
        scope = None if listener.everyone or not isinstance(user_id, str) else user_filter(user_id)
        assert point.vector is not None
        hits = await self._s.vectors.search(
            vector_name,
            point.vector,
            limit=listener.k,
            filter=scope,
            exclude_ids=[point.id],
            ef=max(64, 4 * listener.k),
        )
        results = []
        for hit in hits:
            result = to_result(hit)
            results.append({"id": result.id, "score": round(result.score, 6), "payload": public_payload(hit)})
        listener.push({"type": "similar", "tweet_id": point.id, "results": results})

    def _match(self, points: Sequence[Point]) -> None:
        """All standing queries against all new vectors in one matrix product."""
        if self._matrix is None:
            self._order = list(self._queries.values())
            self._matrix = np.stack([q.vector for q in self._order]).astype(np.float32)
        vectors = np.asarray([p.vector for p in points], dtype=np.float32)
        scores = vectors @ self._matrix.T  # (new tweets, queries): cosine, both sides L2-normalised
        thresholds = np.asarray([q.min_score for q in self._order], dtype=np.float32)
        rows, cols = np.nonzero(scores >= thresholds)
        for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
            query, point = self._order[col], points[row]
            if query.user_id is not None and point.payload.get("user_id") != query.user_id:
                continue
            query.owner.push(
                {
                    "type": "match",
                    "subscription": query.id,
                    "query": query.query,
                    "tweet_id": point.id,
                    "score": round(float(scores[row, col]), 6),
                    "payload": public_payload(point),
                }
            )
