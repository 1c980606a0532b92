"""Background index optimisation, off the request path and event-driven (no polling).

The indexer marks vector collections dirty; the optimizer wakes on that, waits a debounce
interval so bursts are optimised once, then runs ``VectorStore.optimize`` for each dirty one.
"""

from __future__ import annotations

import asyncio

import structlog

from shoal.vectors import VectorStore

logger = structlog.get_logger(__name__)


class Optimizer:
    def __init__(self, vectors: VectorStore, debounce_s: float) -> None:
        self._vectors = vectors
        self._debounce_s = debounce_s
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()

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
