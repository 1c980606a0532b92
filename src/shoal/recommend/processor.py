"""The profiler: consumes the ``interactions`` topic, updates profiles exactly once, then rebuilds,
caches and publishes the list of each user of the batch.

Events are keyed by user, so one user's events share a partition and arrive in order; a batch is
applied in log order. Idempotency: the batch's event ids, the profiles and the trending counts are
written in one transaction (``ProfileStore.batch``); a replayed event whose id is recorded is skipped.
The work is per batch and per user, never per event: one transaction, one list per user (from the
user's final profile), computed while the transaction commits and published once it has.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from shoal.log import Message
from shoal.pipeline.processor import Processor
from shoal.recommend.events import Event
from shoal.recommend.popular import Trend
from shoal.recommend.profiles import Vector
from shoal.recommend.service import RecList, Recommender, channel, list_key
from shoal.recommend.store import Batch
from shoal.services import Services

logger = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RecommendMetrics:
    events: Counter
    duplicates: Counter
    unknown_items: Counter
    bad_messages: Counter
    update_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> RecommendMetrics:
        return cls(
            events=Counter("shoal_recommend_events_total", "Interaction events applied", ["type"], registry=registry),
            duplicates=Counter(
                "shoal_recommend_duplicate_events_total",
                "Events skipped: their id was applied before",
                registry=registry,
            ),
            unknown_items=Counter(
                "shoal_recommend_unknown_items_total", "Events naming an item not in the catalog", registry=registry
            ),
            bad_messages=Counter(
                "shoal_recommend_bad_messages_total", "Undecodable interaction messages skipped", registry=registry
            ),
            update_seconds=Histogram(
                "shoal_recommend_update_seconds",
                "Time from an event's log commit to its user's list being stored",
                registry=registry,
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            ),
        )


class ProfileProcessor(Processor):
    group = "profiler"

    def __init__(self, services: Services, recommender: Recommender, metrics: RecommendMetrics) -> None:
        self.services = services
        self.recommender = recommender
        self.settings = recommender.settings
        self.metrics = metrics
        self.topic = self.settings.topic
        self.batch_size = self.settings.batch_size

    async def handle(self, messages: Sequence[Message]) -> None:
        events: list[Event] = []
        for message in messages:
            try:
                events.append(Event.decode(message.value))
            except (ValueError, KeyError, TypeError):
                self.metrics.bad_messages.inc()
                logger.warning("skipping an undecodable interaction", partition=message.partition, at=message.offset)
        if not events:
            return
        vectors = await self._item_vectors({e.item_id for e in events})
        computing: asyncio.Task[list[RecList]] | None = None
        try:
            async with self.recommender.store.batch(
                [(e.event_id, e.user_id) for e in events], [e.user_id for e in events], [e.item_id for e in events]
            ) as batch:
                self._apply(events, vectors, batch)
                # One list per user of the batch however many of their events it held, computed from
                # the new profiles while the store writes and commits them. A user whose events were
                # all applied before (a replay after a crash between this commit and the publish)
                # gets the list the crash kept from being stored.
                profiles = [batch.profiles[u] for u in dict.fromkeys(e.user_id for e in events)]
                computing = asyncio.create_task(self.recommender.compute_many(profiles))
            recs = await computing
        except BaseException:
            if computing is not None:
                computing.cancel()
                await asyncio.gather(computing, return_exceptions=True)
            raise
        if batch.trends:
            await self.recommender.refresh_popular_if_due()
        applied: dict[str, list[str]] = {}
        for event_id, user_id in batch.new_ids:
            applied.setdefault(user_id, []).append(event_id)
        await self._publish(recs, applied)
        now = time.time()
        for message in messages:
            self.metrics.update_seconds.observe(max(0.0, now - message.timestamp))

    def _apply(self, events: Sequence[Event], vectors: dict[str, Vector], batch: Batch) -> None:
        """Fold the events into the batch's profiles and trends, in log order, skipping ids applied
        before (a retry or a replay) or earlier in this batch."""
        settings = self.settings
        done = set(batch.applied)
        for event in events:
            if event.event_id in done:
                self.metrics.duplicates.inc()
                continue
            done.add(event.event_id)
            profile = batch.profiles[event.user_id]
            weight = settings.weight(event.type, event.value)
            vector = vectors.get(event.item_id)
            if vector is None:
                self.metrics.unknown_items.inc()
            else:
                profile.add(vector, weight, event.ts, settings.half_life_s)
                if weight > 0:
                    trend = batch.trends.setdefault(event.item_id, Trend(event.item_id, 0.0, event.ts))
                    trend.add(weight, event.ts, settings.popular_half_life_s)
            profile.record(event.item_id, event.type, known=vector is not None, recent_size=settings.recent_size)
            batch.new_ids.append((event.event_id, event.user_id))
            self.metrics.events.labels(event.type).inc()

    async def _item_vectors(self, ids: set[str]) -> dict[str, Vector]:
        name = await self.recommender.vector_name()
        if name is None:
            return {}
        matrix = await self.recommender.held()
        found = matrix.vectors(ids) if matrix is not None else {}
        missing = sorted(ids - found.keys())  # all of them, or items written since the matrix learnt of them
        if missing:
            points = await self.services.vectors.retrieve(name, missing, with_vectors=True)
            found.update({p.id: np.asarray(p.vector, dtype=np.float64) for p in points if p.vector is not None})
        return found

    async def _publish(self, recs: Sequence[RecList], applied: dict[str, list[str]]) -> None:
        """Store the new lists and publish each with ``changed`` (the WebSocket pushes only changes)
        and the event ids it reflects (so a client can tell when its event took effect)."""
        before = await self.services.cache.get_many([list_key(r["user_id"]) for r in recs])
        await self.recommender.store_lists(recs)
        for rec, old in zip(recs, before, strict=True):
            changed = old is None or _ids(old) != [i["item_id"] for i in rec["items"]]
            event = {**rec, "changed": changed, "events": applied.get(rec["user_id"], [])}
            await self.services.bus.publish(channel(rec["user_id"]), event)


def _ids(raw: bytes) -> list[str]:
    return [i["item_id"] for i in orjson.loads(raw)["items"]]
