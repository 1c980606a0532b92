"""Background index optimisation, off the request path and event-driven (no polling).

The indexer marks vector collections dirty as it writes; the optimizer runs ``VectorStore.optimize``
for them once writes pause for ``quiet_s``. Edge 0.9 holds the GIL while it optimizes (every request
and push stalls meanwhile, see docs/vectors.md), so under a stream of writes it waits for a lull, and
runs anyway only once ``max_pending`` points were written since the last run (searches scan the
unindexed points, so they must not pile up without end).

Every run is logged with its points and seconds: with Edge those seconds are a stall of the whole
process (≈ 0.2–0.35 ms a point), the figure to weigh ``max_pending`` against (docs/tweets.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType
from typing import Self

import structlog

from shoal.metrics import Metrics
from shoal.vectors import VectorStore

logger = structlog.get_logger(__name__)


class Optimizer:
    def __init__(
        self, vectors: VectorStore, quiet_s: float, max_pending: int = 20_000, metrics: Metrics | None = None
    ) -> None:
        self._vectors = vectors
        self._quiet_s = quiet_s
        self._max_pending = max_pending
        self._metrics = metrics
        self._pending: dict[str, int] = {}
        self._running: dict[str, int] = {}  # the round in progress: collections not optimised yet
        self._last_write = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.runs = 0
        """Optimisation rounds so far."""

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self.run(), name="optimizer")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Stop before the vector store closes (entered after it, so exited before it).
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def backlog(self) -> int:
        """Points written and not optimised yet, a running round's included until it ends."""
        return sum(self._pending.values()) + sum(self._running.values())

    def mark(self, vector_name: str, points: int = 1) -> None:
        """``points`` were written to ``vector_name``."""
        self._pending[vector_name] = self._pending.get(vector_name, 0) + points
        self._last_write = time.monotonic()
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            await self._lull()
            self._wake.clear()
            dirty, self._pending = self._pending, {}
            self._running = dict(dirty)
            self.runs += 1
            try:
                for name in sorted(dirty):
                    await self._optimize(name, dirty[name])
            finally:
                self._running = {}

    async def _optimize(self, name: str, points: int) -> None:
        started = time.monotonic()
        try:
            await self._vectors.optimize(name)
        except Exception:
            # still not optimised: the next round (after the next write) takes these points again
            self._pending[name] = self._pending.get(name, 0) + points
            logger.exception("optimize failed", vector_collection=name)
            return
        finally:
            self._running.pop(name, None)
        seconds = time.monotonic() - started
        if self._metrics is not None:
            self._metrics.optimize_seconds.labels(name).observe(seconds)
        logger.info("vector index optimised", vector_collection=name, points=points, seconds=round(seconds, 3))

    async def _lull(self) -> None:
        """Return once no write came for ``quiet_s``, or ``max_pending`` points wait."""
        while sum(self._pending.values()) < self._max_pending:
            left = self._last_write + self._quiet_s - time.monotonic()
            if left <= 0:
                return
            self._wake.clear()  # every write sets it again, so the count is checked as it grows
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)
