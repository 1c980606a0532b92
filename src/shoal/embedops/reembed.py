"""Switching a collection's model without downtime, and going back.

1. ``start_shadow``: a vector collection for the new model appears beside the current one; from
   then on the indexer writes every new record to both.
2. Backfill passes fill the shadow with every existing record (a pass skips what is there, so an
   interrupted switch resumes); passes repeat until one finds nothing missing.
3. ``promote``: one update of the collection row makes the shadow current; searches that already
   read the old row finish on the old (model, vectors) pair, later ones use the new pair. The old
   vectors are kept warm (the indexer keeps writing them) so a rollback is the same single step.
4. Record stamps (``embedding_model``/``embedding_dim``) are rewritten to the new model.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from shoal.embedops.backfill import Backfill, BackfillOptions, BackfillReport
from shoal.pipeline.indexer import write_lock
from shoal.records import Collection, Status
from shoal.services import Services

logger = structlog.get_logger(__name__)

COLLECTIONS_CHANNEL = "collections"
"""Bus channel announcing a changed collection row, so other processes re-read it."""
MAX_PASSES = 5
_RESTAMP_PAGE = 1000


@dataclass(slots=True)
class SwitchResult:
    complete: bool
    """The shadow was promoted."""
    passes: int
    report: BackfillReport | None


async def announce(services: Services, collection: str) -> None:
    await services.bus.publish(COLLECTIONS_CHANNEL, {"collection": collection})


async def reembed(
    services: Services,
    collection: str,
    model: str,
    *,
    batch: int = 100,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[BackfillReport], None] | None = None,
    promote: bool = True,
) -> SwitchResult:
    """Build (or resume) the shadow for ``model`` and, once it holds every record, promote it.

    Setting ``stop`` ends the current pass cleanly and promotes nothing; a rerun resumes.
    """
    stop_event = stop or asyncio.Event()
    engine = await services.engines.get(model)
    await services.collections.start_shadow(collection, engine.model_id, engine.dim)
    await announce(services, collection)
    report: BackfillReport | None = None
    for passes in range(1, MAX_PASSES + 1):
        backfill = Backfill(services, collection, BackfillOptions(model=engine.model_id, batch=batch))
        report = await backfill.run(stop_event, on_progress)
        if report.state != "done" or report.failed:
            return SwitchResult(False, passes, report)
        if report.succeeded == 0:  # a pass that found nothing missing: the shadow is complete
            if promote:
                await promote_shadow(services, collection)
            return SwitchResult(promote, passes, report)
    return SwitchResult(False, MAX_PASSES, report)


async def promote_shadow(services: Services, collection: str) -> Collection:
    """Make the shadow current (one step), tell other processes, then restamp the records."""
    before = await services.collections.get(collection)
    # Under the write lock: no indexer batch of this process is between reading the collection and
    # stamping its records, so every record written after this is stamped with the new model.
    async with write_lock(services, collection):
        after = await services.collections.promote(collection)
    await announce(services, collection)
    logger.info("model switched", collection=collection, old=before.model, new=after.model)
    await restamp(services, collection, before.model, after)
    return after


async def rollback(services: Services, collection: str) -> Collection:
    """Go back to the previous model in one step (or abandon a switch in progress)."""
    before = await services.collections.get(collection)
    async with write_lock(services, collection):
        after = await services.collections.rollback(collection)
    await announce(services, collection)
    if after.model != before.model:
        logger.info("model rolled back", collection=collection, old=before.model, new=after.model)
        await restamp(services, collection, before.model, after)
    return after


async def drop_previous(services: Services, collection: str) -> Collection:
    after = await services.collections.drop_previous(collection)
    await announce(services, collection)
    return after


async def restamp(services: Services, collection: str, old_model: str, current: Collection) -> int:
    """Stamp records embedded by ``old_model`` with the collection's current model (their vectors
    are already in its vector collection). Returns how many records changed."""
    engine = await services.engines.get(current.model)
    after: str | None = None
    changed = 0
    while True:
        page = await services.records.find(collection, after_id=after, limit=_RESTAMP_PAGE)
        if not page:
            return changed
        after = page[-1].id
        async with write_lock(services, collection):
            # re-read under the lock: the indexer may have written newer versions meanwhile
            fresh = await services.records.get(collection, [r.id for r in page])
            now = datetime.now(UTC)
            stale = [
                dataclasses.replace(r, embedding_model=engine.model_id, embedding_dim=engine.dim, embedded_at=now)
                for r in fresh
                if r.status is Status.EMBEDDED and r.embedding_model == old_model
            ]
            await services.records.upsert(stale)
        changed += len(stale)
