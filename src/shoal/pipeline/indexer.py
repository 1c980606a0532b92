"""The indexer: embeds records from the log and writes the record and vector stores.

Within a batch the last operation on a record wins (a partition keeps one record's operations in
order). Writes are idempotent upserts, so a replayed batch after a crash changes nothing.

Each record is embedded with the collection's current model (stamped on the record) and, during a
model switch, also with the shadow's and the kept previous model's, each written to its own vector
collection: search never sees a vector of another model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from shoal.collections import Target, targets
from shoal.embedding.engine import EmbeddingEngine
from shoal.errors import ConfigurationError, EmbeddingError, Overloaded, ShoalError
from shoal.ingest import INDEXED_CHANNEL, RECORDS_TOPIC
from shoal.log import Message
from shoal.pipeline.processor import StagedProcessor
from shoal.records import Collection, Record, Status
from shoal.services import Services
from shoal.vectors import Point

logger = structlog.get_logger(__name__)


def vector_payload(record: Record) -> dict[str, Any]:
    """What the vector store keeps beside the vector: enough to answer a search without the
    record store (``_text`` and the record time ``ts``, which stores index as a datetime) plus the
    user's payload."""
    return {**record.payload, "_text": record.text, "ts": record.ts.astimezone(UTC).isoformat()}


def write_lock(services: Services, collection: str) -> asyncio.Lock:
    """Serialises this process's writes of one collection's records (indexer against backfill), so a
    backfill never overwrites a newer version of a record that the indexer wrote meanwhile."""
    locks: dict[str, asyncio.Lock] = services.extras.setdefault("_write_locks", {})
    return locks.setdefault(collection, asyncio.Lock())


async def embed_patiently(engine: EmbeddingEngine, texts: list[str]) -> Any:
    """Embed as a background consumer: when the engine's queue is full, wait for a turn instead of
    failing the batch."""
    while True:
        try:
            return await engine.embed(texts)
        except Overloaded:
            await asyncio.sleep(0.01)  # back-off while API callers drain the queue


@dataclass(slots=True)
class _Plan:
    """One collection's share of a batch: its deletes, and its upserts embedded and ready to write."""

    collection: Collection
    deletes: list[str]
    records: list[Record]
    appended_at: list[float]
    written: dict[str, Any] = field(default_factory=dict)
    """Vectors per vector collection (``None``: that model failed; the switch's own pass fills it)."""
    error: str | None = None
    """Why the embedder refused the records (they are stored as failed)."""


class IndexProcessor(StagedProcessor[list[_Plan]]):
    """Embeds in ``prepare`` and writes in ``apply``, so the runner embeds the next batches while this
    one is written and committed."""

    topic = RECORDS_TOPIC
    group = "indexer"
    # Two: when one batch's vectors come back, the next one's texts are already queued at the model.
    prepare_ahead = 2

    def __init__(
        self,
        services: Services,
        *,
        batch_size: int = 256,
        min_batch_size: int | None = None,
        on_write: Callable[[str, int], None] | None = None,
    ) -> None:
        self._s = services
        self.batch_size, self.min_batch_size = batch_size, min_batch_size
        self._on_write = on_write or (lambda name, points: None)

    async def prepare(self, messages: Sequence[Message]) -> list[_Plan]:
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        appended_at: dict[tuple[str, str], float] = {}
        for message in messages:
            try:
                op = orjson.loads(message.value)
                key = (op["collection"], op["id"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                self._s.metrics.log_bad_messages.inc()
                logger.error("skipping undecodable log message", partition=message.partition, offset=message.offset)
                continue
            latest[key] = op
            appended_at[key] = message.timestamp
        by_collection: dict[str, list[dict[str, Any]]] = {}
        for (collection, _), op in latest.items():
            by_collection.setdefault(collection, []).append(op)
        plans = []
        for name, ops in by_collection.items():
            found = self._s.collections.cached(name) or await self._s.collections.refresh(name)
            if found is None:
                logger.warning("dropping operations for a missing collection", collection=name, count=len(ops))
                continue
            records = [
                Record(
                    collection=name,
                    id=op["id"],
                    text=op["text"],
                    payload=op.get("payload") or {},
                    ts=datetime.fromisoformat(op["ts"]),
                )
                for op in ops
                if op["op"] == "upsert"
            ]
            plan = _Plan(
                found,
                [op["id"] for op in ops if op["op"] == "delete"],
                records,
                [appended_at[(name, op["id"])] for op in ops],
            )
            if records:
                await self._embed(plan)
            plans.append(plan)
        return plans

    async def _embed(self, plan: _Plan) -> None:
        current, *others = targets(plan.collection)
        try:
            engine = await self._s.engines.get(current.model)
            plan.written[current.vector_name] = await embed_patiently(engine, [r.text for r in plan.records])
        except (EmbeddingError, ConfigurationError) as exc:
            plan.error = str(exc)
            return
        for target in others:
            plan.written[target.vector_name] = await self._embed_other(target, plan.records)

    async def apply(self, prepared: list[_Plan]) -> None:
        for plan in prepared:
            await self._apply(plan)
            now = time.time()
            for appended in plan.appended_at:
                self._s.metrics.ingest_latency.observe(max(0.0, now - appended))

    async def _apply(self, plan: _Plan) -> None:
        collection, records, written = plan.collection, plan.records, plan.written
        if plan.deletes:
            await self._s.records.delete(collection.name, plan.deletes)
            for vector_name in self._targets(self._s.collections.cached(collection.name) or collection):
                await self._s.vectors.delete(vector_name, plan.deletes)
            await self._s.bus.publish(
                INDEXED_CHANNEL, {"collection": collection.name, "ids": [], "deleted": list(plan.deletes), "failed": {}}
            )
        if not records:
            return
        if plan.error is not None:
            # The provider is down or refused: keep the records as failed (never lost); the
            # scheduler and `shoal backfill` retry them.
            now = datetime.now(UTC)
            for record in records:
                record.status, record.error, record.updated_at = Status.FAILED, plan.error, now
            await self._s.records.upsert(records)
            self._s.metrics.records_failed.inc(len(records))
            failed = {r.id: plan.error for r in records}
            await self._s.bus.publish(INDEXED_CHANNEL, {"collection": collection.name, "ids": [], "failed": failed})
            return
        async with write_lock(self._s, collection.name):
            # A model switch may have started, been promoted or rolled back since this batch was
            # embedded: write exactly the vector collections the collection has now.
            latest = self._s.collections.cached(collection.name) or collection
            for target in targets(latest):
                if target.vector_name not in written:
                    written[target.vector_name] = await self._embed_other(target, records)
            engine = await self._s.engines.get(latest.model)
            now = datetime.now(UTC)
            for record in records:
                record.status, record.error = Status.EMBEDDED, None
                record.embedding_model, record.embedding_dim, record.embedded_at = engine.model_id, engine.dim, now
                record.updated_at = now
            await self._s.records.upsert(records)
            for target in targets(latest):
                target_vectors = written[target.vector_name]
                if target_vectors is None:
                    continue
                points = [
                    Point(id=r.id, vector=vec, payload=vector_payload(r))
                    for r, vec in zip(records, target_vectors.tolist(), strict=True)
                ]
                await self._s.vectors.upsert(target.vector_name, points)
                self._on_write(target.vector_name, len(points))
        self._s.metrics.records_indexed.inc(len(records))
        await self._s.bus.publish(
            INDEXED_CHANNEL, {"collection": collection.name, "ids": [r.id for r in records], "failed": {}}
        )

    async def _embed_other(self, target: Target, records: list[Record]) -> Any:
        """Vectors for a shadow or previous collection; ``None`` when that model fails (the switch's
        own pass fills the gap, so the current collection is never held back by it)."""
        try:
            engine = await self._s.engines.get(target.model)
            return await embed_patiently(engine, [r.text for r in records])
        except ShoalError as exc:
            logger.warning(
                "embedding for another vector collection failed", role=target.role, model=target.model, error=str(exc)
            )
            return None

    def _targets(self, collection: Collection) -> list[str]:
        return [t.vector_name for t in targets(collection)]
