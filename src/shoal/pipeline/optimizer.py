"""Background index optimisation, off the request path and event-driven (no polling).

The indexer marks vector collections dirty; the optimizer wakes on that, waits a debounce
interval so bursts are optimised once, then runs ``VectorStore.optimize`` for each dirty one.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

import structlog

from shoal.vectors import VectorStore

logger = structlog.get_logger(__name__)


class Optimizer:
    def __init__(self, vectors: VectorStore, debounce_s: float) -> None:
        self._vectors = vectors
        self._debounce_s = debounce_s
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

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

    def mark(self, vector_name: str) -> None:
        self._dirty.add(vector_name)
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._debounce_s)  # debounce: one optimisation per burst
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            for name in sorted(dirty):
                try:
                    await self._vectors.optimize(name)
                except Exception:
                    logger.exception("optimize failed", vector_collection=name)
