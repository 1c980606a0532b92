"""The backfill engine: embeds a collection's records in batches, resumably, straight into the stores.

It runs inside the server process (the only one that may open the embedded stores), driven by the
admin routes that ``shoal backfill`` follows over HTTP. Three stages overlap: pages are read in id
order (keyset) and queued on the engine ahead of the writer, so the model never waits for the stores;
the writer writes every page embedded by then in one go, vectors first, record stamp last (one
``UPDATE`` of the stamp columns). The stamp is the commit, so a stopped or killed run resumes exactly
where it stopped — a rerun selects only records still lacking the target model's embedding.
``--force`` re-embeds everything; its progress is a cursor in ``Collection.config`` plus the run's
start time, so a resumed forced run skips what it already stamped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from shoal.collections import Target, targets
from shoal.embedding.base import Vectors
from shoal.embedding.engine import EmbeddingEngine
from shoal.errors import ConfigurationError, EmbeddingError, InvalidInput
from shoal.ingest import INDEXED_CHANNEL
from shoal.pipeline.indexer import embed_patiently, vector_payload, write_lock
from shoal.records import Collection, Record, Status
from shoal.services import Services
from shoal.vectors import Point

logger = structlog.get_logger(__name__)

CURSOR_KEY = "backfill_cursor"
_SCAN_PAGE = 1000
_AHEAD_BATCHES = 16
"""Engine batches' worth of texts queued ahead of the writer: two of the windows (8 batches) the
engine's batcher sorts by length together, so each window it takes is full, and the model never
waits for a read or a write."""
_AHEAD_PAGES = (2, 8)
"""Bounds on the pages queued ahead; the upper one bounds what a stop waits for (pages in flight are
written) and what a stopped run has paid a remote API for."""
_WRITE_MAX = 1000
"""Records at most in one write: pages embedded while the writer was busy are written together."""


@dataclass(frozen=True, slots=True)
class BackfillOptions:
    """What to embed. ``model`` is the collection's current model (default) or its shadow's."""

    model: str | None = None
    batch: int = 100
    force: bool = False
    since: datetime | None = None
    limit: int | None = None


@dataclass(slots=True)
class BackfillReport:
    """Progress while running, the summary when done. Counts are records."""

    collection: str
    model: str
    target: str
    state: str = "running"
    """``running``, ``done``, ``stopped`` or ``failed``."""
    candidates: int = 0
    processed: int = 0
    succeeded: int = 0
    skipped: int = 0
    failed: int = 0
    last_error: str | None = None
    resumed_after: str | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def duration_s(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        """Records per second so far."""
        return self.processed / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        left = max(0, self.candidates - self.processed)
        return left / self.rate if self.rate > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "model": self.model,
            "target": self.target,
            "state": self.state,
            "candidates": self.candidates,
            "processed": self.processed,
            "succeeded": self.succeeded,
            "skipped": self.skipped,
            "failed": self.failed,
            "last_error": self.last_error,
            "resumed_after": self.resumed_after,
            "duration_s": round(self.duration_s, 3),
            "rate": round(self.rate, 2),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "avg_ms_per_record": round(1000 * self.duration_s / self.processed, 3) if self.processed else None,
        }


@dataclass(frozen=True, slots=True)
class Estimate:
    """A dry run's answer: nothing was written."""

    collection: str
    model: str
    target: str
    count: int
    throughput: float | None
    """Texts per second the engine sustains (measured), if known."""
    seconds: float | None
    tokens: int | None
    cost: float | None
    remote: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class _Plan:
    collection: Collection
    target: Target
    engine: EmbeddingEngine


@dataclass(frozen=True, slots=True)
class _Page:
    """A page in flight: the records it embeds, their vectors to come (or why not), its last id."""

    todo: list[Record]
    vectors: asyncio.Task[Vectors | Exception] | None
    last_id: str

    @property
    def ready(self) -> bool:
        return self.vectors is None or self.vectors.done()


class Backfill:
    """Embeds the records of ``collection`` that ``options`` selects.

    Selection: with the current model, records pending, failed or embedded by another model (all of
    them with ``force``); with the shadow model, records missing from the shadow vector collection
    (all with ``force``). ``since`` keeps records whose ``ts`` is at least that; ``limit`` caps the run.
    """

    def __init__(self, services: Services, collection: str, options: BackfillOptions | None = None) -> None:
        self._s = services
        self.collection = collection
        self.options = options or BackfillOptions()

    async def check(self) -> None:
        """Raise what ``run`` would raise at once: an unknown collection, or a model it does not use."""
        await self._plan()

    async def _plan(self) -> _Plan:
        collection = await self._s.collections.get(self.collection)
        model = self.options.model or collection.model
        for target in targets(collection):
            if target.model == model and target.role in ("current", "shadow"):
                return _Plan(collection, target, await self._s.engines.get(model))
        raise InvalidInput(
            f"model: {model!r} is neither the current ({collection.model!r}) nor the shadow model of "
            f"{self.collection!r}; switch models with `shoal reembed`"
        )

    # -- selection -----------------------------------------------------------------------------
    def _cursor_matches(self, plan: _Plan, cursor: Any) -> bool:
        o = self.options
        return (
            isinstance(cursor, dict)
            and cursor.get("model") == plan.target.model
            and cursor.get("since") == (o.since.isoformat() if o.since else None)
        )

    async def _pages(
        self, plan: _Plan, after: str | None, size: int, stop: asyncio.Event
    ) -> AsyncIterator[list[Record]]:
        """Candidate pages in id order after ``after`` until exhausted, ``stop`` or ``limit``."""
        o, left = self.options, self.options.limit
        status_only = plan.target.role == "current" and not o.force
        while not stop.is_set() and (left is None or left > 0):
            n = size if left is None else min(size, left)
            if status_only:
                page = await self._s.records.find(
                    self.collection,
                    status=[Status.PENDING, Status.FAILED],
                    not_model=plan.target.model,
                    since=o.since,
                    after_id=after,
                    limit=n,
                )
            else:
                page = await self._s.records.find(self.collection, since=o.since, after_id=after, limit=n)
            if not page:
                return
            after = page[-1].id
            if left is not None:
                left -= len(page)
            yield page

    async def _done_already(self, plan: _Plan, page: list[Record], run_started: datetime) -> set[str]:
        """Ids of ``page`` that need no work: already in the shadow, or stamped by this forced run."""
        if plan.target.role == "shadow":
            if self.options.force:
                return set()
            found = await self._s.vectors.retrieve(plan.target.vector_name, [r.id for r in page])
            return {p.id for p in found}
        if not self.options.force:
            return set()
        return {
            r.id
            for r in page
            if r.status is Status.EMBEDDED
            and r.embedding_model == plan.target.model
            and r.embedded_at is not None
            and r.embedded_at >= run_started
        }

    async def _count(self, plan: _Plan, after: str | None) -> int:
        o = self.options
        if o.since is None and after is None:
            # from the counts the stores keep; a limit only caps them (candidates come in id order)
            stats = await self._s.records.stats(self.collection)
            if plan.target.role == "current":
                found = stats.total if o.force else stats.total - stats.models.get(plan.target.model, 0)
            elif o.force:
                found = stats.total
            else:
                found = max(0, stats.total - await self._s.vectors.count(plan.target.vector_name))
            return found if o.limit is None else min(found, o.limit)
        count = 0
        never = asyncio.Event()
        async for page in self._pages(plan, after, _SCAN_PAGE, never):
            count += len(page)
        return count

    # -- dry run -------------------------------------------------------------------------------
    async def estimate(self, *, calibration_texts: int = 64, price_per_1k_tokens: float = 0.0) -> Estimate:
        """Count what a run would embed and estimate its time (and tokens and cost for a paid API).

        Time comes from the engine's measured throughput; a local model not yet measured is timed on
        a sample of the candidates (nothing is cached or written). A remote one is never called.
        """
        plan = await self._plan()
        provider = plan.engine.provider
        count, never = 0, asyncio.Event()
        texts: list[str] = []
        tokens: int | None = 0 if provider.is_remote else None
        async for page in self._pages(plan, None, _SCAN_PAGE, never):
            done = await self._done_already(plan, page, datetime.max.replace(tzinfo=UTC))
            todo = [r.text for r in page if r.id not in done]
            count += len(todo)
            if tokens is not None:
                tokens += provider.count_tokens(todo)
            if len(texts) < calibration_texts:
                texts.extend(todo[: calibration_texts - len(texts)])
        throughput = plan.engine.throughput() or None
        if throughput is None and not provider.is_remote and texts:
            started = time.perf_counter()
            await provider.embed(texts)
            throughput = len(texts) / (time.perf_counter() - started)
        return Estimate(
            collection=self.collection,
            model=plan.target.model,
            target=plan.target.role,
            count=count,
            throughput=round(throughput, 2) if throughput else None,
            seconds=round(count / throughput, 1) if throughput else None,
            tokens=tokens,
            cost=None if tokens is None else round(tokens / 1000 * price_per_1k_tokens, 6),
            remote=provider.is_remote,
        )

    # -- the run -------------------------------------------------------------------------------
    async def run(
        self, stop: asyncio.Event | None = None, on_progress: Callable[[BackfillReport], None] | None = None
    ) -> BackfillReport:
        """Embed and write every selected record; return the summary.

        Setting ``stop`` ends the run cleanly: pages already embedding are written, then it returns
        with state ``stopped``. Cancelling the task also leaves a consistent, resumable state.
        """
        stop = stop or asyncio.Event()
        notify = on_progress or (lambda report: None)
        plan = await self._plan()
        report = BackfillReport(self.collection, plan.target.model, plan.target.role)
        after, run_started = None, datetime.now(UTC)
        if self.options.force and plan.target.role == "current":
            cursor = plan.collection.config.get(CURSOR_KEY)
            if cursor is not None and self._cursor_matches(plan, cursor):
                after, run_started = cursor["after_id"], datetime.fromisoformat(cursor["started_at"])
                report.resumed_after = after
        report.candidates = await self._count(plan, after)
        notify(report)
        low, high = _AHEAD_PAGES
        ahead = math.ceil(_AHEAD_BATCHES * plan.engine.batch_size / self.options.batch)
        queue: asyncio.Queue[_Page | None] = asyncio.Queue(maxsize=min(high, max(low, ahead)))

        async def produce(tg: asyncio.TaskGroup) -> None:
            try:
                async for page in self._pages(plan, after, self.options.batch, stop):
                    done = await self._done_already(plan, page, run_started)
                    report.skipped += len(done)
                    report.processed += len(done)
                    todo = [r for r in page if r.id not in done]
                    task = tg.create_task(self._embed(plan.engine, todo)) if todo else None
                    await queue.put(_Page(todo, task, page[-1].id))
            finally:
                await queue.put(None)

        async def consume() -> None:
            held: list[_Page | None] = []  # taken from the queue, still embedding: the next write's head
            while (head := held.pop() if held else await queue.get()) is not None:
                if head.vectors is not None:
                    await head.vectors
                pages, size = [head], len(head.todo)
                while size < _WRITE_MAX and not queue.empty():
                    page = queue.get_nowait()
                    if page is None or not page.ready:
                        held.append(page)
                        break
                    pages.append(page)
                    size += len(page.todo)
                await self._write(plan, pages, report)
                if self.options.force and plan.target.role == "current":
                    await self._save_cursor(plan, pages[-1].last_id, run_started)
                notify(report)

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(produce(tg))
                tg.create_task(consume())
        except BaseException as exc:
            report.state = "stopped" if isinstance(exc, asyncio.CancelledError) else "failed"
            report.last_error = report.last_error if report.state == "stopped" else repr(exc)
            report.finished = time.monotonic()
            raise
        report.state = "stopped" if stop.is_set() else "done"
        report.finished = time.monotonic()
        if report.state == "done" and self.options.force and plan.target.role == "current":
            await self._save_cursor(plan, None, run_started)
        notify(report)
        logger.info("backfill finished", **report.to_dict())
        return report

    @staticmethod
    async def _embed(engine: EmbeddingEngine, records: list[Record]) -> Vectors | Exception:
        try:
            vectors: Vectors = await embed_patiently(engine, [r.text for r in records])
            return vectors
        except (EmbeddingError, ConfigurationError) as exc:
            return exc  # a failed page is reported, not fatal to the run

    async def _write(self, plan: _Plan, pages: list[_Page], report: BackfillReport) -> None:
        """Write embedded pages: only records unchanged since they were read (a newer version written
        by the indexer meanwhile wins), vectors first, the record stamp last."""
        ids = [r.id for page in pages for r in page.todo]
        if not ids:
            return  # every record of these pages was done already
        async with write_lock(self._s, self.collection):
            versions = await self._s.records.versions(self.collection, ids)
            written: list[Record] = []
            points: list[Point] = []
            for page in pages:
                result = page.vectors.result() if page.vectors is not None else None
                unchanged = [i for i, r in enumerate(page.todo) if r.id in versions and versions[r.id] == r.updated_at]
                report.skipped += len(page.todo) - len(unchanged)
                report.processed += len(page.todo)
                if isinstance(result, Exception):
                    await self._mark_failed(plan, [page.todo[i] for i in unchanged], str(result), report)
                elif result is not None:
                    rows = result.tolist()
                    for i in unchanged:
                        record = page.todo[i]
                        written.append(record)
                        points.append(Point(record.id, rows[i], vector_payload(record)))
            await self._s.vectors.upsert(plan.target.vector_name, points)
            if plan.target.role != "current":
                report.succeeded += len(written)
                return
            stamped = await self._s.records.mark_embedded(
                self.collection,
                {r.id: r.updated_at for r in written if r.updated_at is not None},
                model=plan.engine.model_id,
                dim=plan.engine.dim,
                at=datetime.now(UTC),
            )
            # fewer only if another process wrote one of them since the check (its version wins)
            report.succeeded += len(stamped)
            report.skipped += len(written) - len(stamped)
        if written:
            # as the indexer does: waiters, pushes and in-memory catalogs learn of the new vectors
            await self._s.bus.publish(
                INDEXED_CHANNEL, {"collection": self.collection, "ids": [r.id for r in written], "failed": {}}
            )

    async def _mark_failed(self, plan: _Plan, records: list[Record], error: str, report: BackfillReport) -> None:
        report.failed += len(records)
        report.last_error = error
        if plan.target.role != "current":
            return
        # A record embedded by another model keeps its vector and stamp; the rest record the error.
        failed = [
            dataclasses.replace(r, status=Status.FAILED, error=error)
            for r in records
            if r.status is not Status.EMBEDDED
        ]
        await self._s.records.upsert(failed)

    async def _save_cursor(self, plan: _Plan, after: str | None, run_started: datetime) -> None:
        o = self.options

        def change(c: Collection) -> Collection:
            config = dict(c.config)
            if after is None:
                config.pop(CURSOR_KEY, None)
            else:
                config[CURSOR_KEY] = {
                    "model": plan.target.model,
                    "since": o.since.isoformat() if o.since else None,
                    "after_id": after,
                    "started_at": run_started.isoformat(),
                }
            return dataclasses.replace(c, config=config)

        await self._s.collections.modify(self.collection, change)
