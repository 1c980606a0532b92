"""Which version of each document a query may see, and when an old version may be deleted.

Re-indexing writes the new version's chunks beside the old ones, then swaps the collection's
version map in one assignment, then (once every query that started before the swap has finished)
deletes the old chunks. A query takes the map at its start and keeps only chunks of the version
that map names, so it sees every chunk of exactly one version of a document, never a mix, and never
a gap while a document is replaced.

Maps are copy-on-write: the writer builds a new dict and swaps it in, so a reader's snapshot never
changes under it. Other processes learn of swaps through the bus (``shoal.rag.indexer``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

VersionMap = Mapping[str, int]
"""doc id → the version a query may see (documents absent are deleted or not yet indexed)."""


@dataclass
class _Collection:
    live: dict[str, int] = field(default_factory=dict)
    latest: dict[str, int] = field(default_factory=dict)
    """Highest version applied per doc, deletions included (to ignore a late, older event)."""
    generation: int = 0


class DocVersions:
    """Per-collection version maps, the readers holding snapshots, and waiters for new versions."""

    def __init__(self) -> None:
        self._collections: dict[str, _Collection] = {}
        self._epoch = 0
        self._readers: Counter[int] = Counter()
        # Waiters are futures resolved synchronously by the writer or the last reader: no tasks.
        self._drain_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._apply_waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    # -- readers ---------------------------------------------------------------------------------
    def snapshot(self, collection: str) -> VersionMap:
        state = self._collections.get(collection)
        return state.live if state is not None else {}

    def latest(self, collection: str, doc_id: str) -> int:
        """The highest version applied for ``doc_id`` (deletions included); -1 if none."""
        state = self._collections.get(collection)
        return state.latest.get(doc_id, -1) if state is not None else -1

    def generation(self, collection: str) -> int:
        """Bumped on every applied change: the index version that keys cached query results."""
        state = self._collections.get(collection)
        return state.generation if state is not None else 0

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Hold this while a query uses a snapshot: old chunks outlive it."""
        epoch = self._epoch
        self._readers[epoch] += 1
        try:
            yield
        finally:
            self._readers[epoch] -= 1
            if not self._readers[epoch]:
                del self._readers[epoch]
                self._drain_waiters = [(e, f) for e, f in self._drain_waiters if not self._resolve_drained(e, f)]

    def _resolve_drained(self, epoch: int, future: asyncio.Future[None]) -> bool:
        if future.done():
            return True
        if any(e < epoch for e in self._readers):
            return False
        future.set_result(None)
        return True

    # -- writers ---------------------------------------------------------------------------------
    def apply(self, collection: str, changes: Mapping[str, int | None], versions: Mapping[str, int]) -> bool:
        """Swap in ``changes`` (doc → live version, ``None`` = deleted) made at ``versions``.

        Changes older than one already applied are ignored. Returns whether anything changed.
        """
        state = self._collections.setdefault(collection, _Collection())
        fresh = {d: v for d, v in changes.items() if versions[d] >= state.latest.get(d, -1)}
        if not fresh:
            return False
        live = dict(state.live)
        for doc, version in fresh.items():
            state.latest[doc] = versions[doc]
            if version is None:
                live.pop(doc, None)
            else:
                live[doc] = version
        state.live = live
        state.generation += 1
        self._epoch += 1
        self._apply_waiters = [(p, f) for p, f in self._apply_waiters if not _resolve_if(p, f)]
        return True

    async def drain(self) -> None:
        """Wait until every query that took a snapshot before now has finished."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._resolve_drained(self._epoch, future):
            self._drain_waiters.append((self._epoch, future))
        await future

    async def wait_applied(self, collection: str, versions: Mapping[str, int], timeout: float) -> list[str]:
        """Wait until each doc's change at ``versions`` (or a later one) is applied; return the
        docs still pending after ``timeout`` seconds."""

        def pending() -> list[str]:
            latest = self._collections.get(collection, _Collection()).latest
            return [d for d, v in versions.items() if latest.get(d, -1) < v]

        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not _resolve_if(lambda: not pending(), future):
            entry = (lambda: not pending(), future)
            self._apply_waiters.append(entry)
            try:
                await asyncio.wait_for(asyncio.shield(future), timeout)
            except TimeoutError:
                pass
            finally:
                with contextlib.suppress(ValueError):
                    self._apply_waiters.remove(entry)
        return pending()


def _resolve_if(predicate: Callable[[], bool], future: asyncio.Future[None]) -> bool:
    """Resolve ``future`` when ``predicate`` holds; True when it is done (drop the waiter)."""
    if future.done():
        return True
    if predicate():
        future.set_result(None)
        return True
    return False
