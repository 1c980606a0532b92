"""Accepting input: records go to the log (durable before ``202``), then the indexer makes them
searchable. ``?wait=true`` callers wait for the indexer's ``indexed`` event on the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from shoal.bus import Bus
from shoal.log import Log

logger = structlog.get_logger(__name__)

RECORDS_TOPIC = "records"
INDEXED_CHANNEL = "indexed"
ANALYZED_CHANNEL = "analyzed"
"""Feature processors announce what they found about records: ``{"collection", "analyses": {id: {...}}}``."""


@dataclass(frozen=True, slots=True)
class RecordIn:
    """A validated record on its way into the log."""

    id: str
    text: str
    payload: dict[str, Any]
    ts: datetime


def encode_upsert(collection: str, record: RecordIn) -> tuple[str, bytes]:
    value = {
        "op": "upsert",
        "collection": collection,
        "id": record.id,
        "text": record.text,
        "payload": record.payload,
        "ts": record.ts.astimezone(UTC).isoformat(),
    }
    return f"{collection}/{record.id}", orjson.dumps(value)


def encode_delete(collection: str, ids: Sequence[str]) -> list[tuple[str, bytes]]:
    return [(f"{collection}/{rid}", orjson.dumps({"op": "delete", "collection": collection, "id": rid})) for rid in ids]


@dataclass(frozen=True, slots=True)
class WaitResult:
    indexed: list[str]
    failed: dict[str, str]
    pending: list[str]


class Ingestor:
    """Appends records to the log and lets callers wait until they are searchable."""

    def __init__(self, log: Log, bus: Bus) -> None:
        self._log = log
        self._bus = bus
        self._waiters: dict[tuple[str, str], list[asyncio.Future[str | None]]] = defaultdict(list)
        self._listening = asyncio.Event()

    async def submit(self, collection: str, records: Sequence[RecordIn]) -> None:
        """Append ``records``; returns once they are durable in the log."""
        await self._log.append(RECORDS_TOPIC, [encode_upsert(collection, r) for r in records])

    async def submit_and_wait(self, collection: str, records: Sequence[RecordIn], timeout: float) -> WaitResult:
        """Append and wait until every record is indexed (or failed), at most ``timeout`` seconds."""
        futures = {r.id: self._register(collection, r.id) for r in records}
        try:
            await self.submit(collection, records)
            done, _ = await asyncio.wait(futures.values(), timeout=timeout)
        finally:
            for rid, future in futures.items():
                self._unregister(collection, rid, future)
        indexed, failed, pending = [], {}, []
        for rid, future in futures.items():
            if future not in done:
                pending.append(rid)
            elif (error := future.result()) is None:
                indexed.append(rid)
            else:
                failed[rid] = error
        return WaitResult(indexed, failed, pending)

    async def delete(self, collection: str, ids: Sequence[str]) -> None:
        await self._log.append(RECORDS_TOPIC, encode_delete(collection, ids))

    def _register(self, collection: str, rid: str) -> asyncio.Future[str | None]:
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._waiters[(collection, rid)].append(future)
        return future

    def _unregister(self, collection: str, rid: str, future: asyncio.Future[str | None]) -> None:
        waiting = self._waiters.get((collection, rid))
        if waiting is None:
            return
        with contextlib.suppress(ValueError):
            waiting.remove(future)
        if not waiting:
            del self._waiters[(collection, rid)]

    def resolve(self, collection: str, ids: Iterable[str], failed: dict[str, str] | None = None) -> None:
        failed = failed or {}
        for rid in [*ids, *failed]:
            for future in self._waiters.get((collection, rid), ()):
                if not future.done():
                    future.set_result(failed.get(rid))

    async def listen(self) -> None:
        """Resolve waiters from ``indexed`` events (the indexer may run in another process)."""
        async with self._bus.subscribe(INDEXED_CHANNEL, maxsize=10_000) as subscription:
            self._listening.set()
            async for event in subscription:
                self.resolve(event["collection"], event.get("ids", ()), event.get("failed"))

    async def listening(self) -> None:
        await self._listening.wait()
