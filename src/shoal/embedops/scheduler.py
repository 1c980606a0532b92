"""The delta scheduler: every few hours, re-queue recent records that still lack an embedding.

Records fail when the provider is down; the indexer keeps them as ``failed`` with the error. The
scheduler appends them to the ``records`` log again (the same message as an ingest), so the indexer
retries them in order with any newer version of the same record. It sleeps on an event with a
timeout, so it costs nothing between runs and stops at once on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import UTC, datetime, timedelta

import structlog
from prometheus_client import Counter

from shoal.errors import ShoalError
from shoal.ingest import RECORDS_TOPIC, RecordIn
from shoal.records import Status
from shoal.services import Services

logger = structlog.get_logger(__name__)


def next_wait(interval: float, jitter: float, rng: random.Random | None = None) -> float:
    """``interval`` ± ``jitter`` (a fraction), so several servers do not all run at once."""
    spread = interval * jitter
    return interval + (rng or random).uniform(-spread, spread)


class Scheduler:
    """Re-queues up to ``limit`` records per run whose ``ts`` lies within ``lookback`` seconds.

    A run is skipped while the indexer has a backlog: a record's newer version may still sit in the
    log, and re-queuing the stored (older) text after it would undo that update.
    """

    def __init__(
        self,
        services: Services,
        *,
        interval: float,
        lookback: float,
        limit: int,
        jitter: float = 0.1,
        requeued: Counter | None = None,
    ) -> None:
        self._s = services
        self.interval = interval
        self.lookback = lookback
        self.limit = limit
        self.jitter = jitter
        self._stop = asyncio.Event()
        self._requeued = requeued
        self.runs = 0

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Run until ``stop()``: wait (interruptibly), re-queue, repeat."""
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), next_wait(self.interval, self.jitter))
            if self._stop.is_set():
                return
            try:
                await self.run_once()
            except ShoalError as exc:  # a backend down: try again next time
                logger.warning("scheduled re-queue failed", error=str(exc))

    async def run_once(self) -> int:
        """Re-queue what needs it now; return how many records were appended to the log."""
        self.runs += 1
        lag = await self._s.log.lag(RECORDS_TOPIC, "indexer")
        if lag:
            logger.info("scheduled re-queue skipped: the indexer has a backlog", lag=lag)
            return 0
        since = datetime.now(UTC) - timedelta(seconds=self.lookback)
        left = self.limit
        total = 0
        for collection in self._s.collections.list():
            if left <= 0:
                break
            found = await self._s.records.find(
                collection.name, status=[Status.PENDING, Status.FAILED], since=since, limit=left
            )
            if not found:
                continue
            await self._s.ingest.submit(collection.name, [RecordIn(r.id, r.text, r.payload, r.ts) for r in found])
            left -= len(found)
            total += len(found)
            if self._requeued is not None:
                self._requeued.labels(collection.name).inc(len(found))
            logger.info("re-queued records lacking an embedding", collection=collection.name, count=len(found))
        return total
