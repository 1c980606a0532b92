"""``EmbedOpsFeature``: backfill and switch jobs, the delta scheduler, coverage gauges."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

from fastapi import APIRouter
from prometheus_client import Counter, Gauge

from shoal.bus.base import Subscription
from shoal.embedops.coverage import coverage
from shoal.embedops.jobs import Jobs
from shoal.embedops.reembed import COLLECTIONS_CHANNEL
from shoal.embedops.routes import FEATURE, router
from shoal.embedops.scheduler import Scheduler
from shoal.embedops.settings import EmbedOpsSettings
from shoal.errors import BackendError
from shoal.feature import Feature
from shoal.services import Services


@dataclass(frozen=True, slots=True)
class EmbedOpsState:
    """What the routes find on ``services.extras["embedops"]``."""

    settings: EmbedOpsSettings
    jobs: Jobs
    scheduler: Scheduler


class CoverageGauges:
    """Gauges the core does not export (it has records by status and coverage), filled at scrape."""

    def __init__(self, services: Services) -> None:
        registry = services.metrics.registry
        self._s = services
        labels = ["collection"]
        self.total = Gauge("shoal_collection_total_records", "Records in the collection", labels, registry=registry)
        self.backlog = Gauge(
            "shoal_collection_backlog_records",
            "Records lacking a current-model embedding plus log messages not yet indexed",
            labels,
            registry=registry,
        )
        self.oldest = Gauge(
            "shoal_collection_oldest_pending_age_seconds",
            "Seconds the oldest pending record has waited",
            labels,
            registry=registry,
        )
        self.shadow = Gauge(
            "shoal_collection_shadow_coverage_ratio",
            "Shadow vectors / records during a model switch",
            labels,
            registry=registry,
        )
        self.requeued = Counter(
            "shoal_embedops_requeued", "Records re-queued by the delta scheduler", labels, registry=registry
        )

    async def refresh(self) -> None:
        for collection in self._s.collections.list():
            c = await coverage(self._s, collection.name)
            self.total.labels(c.collection).set(c.total)
            self.backlog.labels(c.collection).set(c.backlog)
            self.oldest.labels(c.collection).set(c.oldest_pending_age_s or 0.0)
            self.shadow.labels(c.collection).set(c.shadow_coverage if c.shadow_coverage is not None else 0.0)


class EmbedOpsFeature(Feature):
    name = FEATURE

    def __init__(self, settings: EmbedOpsSettings | None = None) -> None:
        self._settings = settings

    def routers(self) -> Sequence[APIRouter]:
        return (router,)

    async def start(self, services: Services, stack: AsyncExitStack) -> None:
        settings = self._settings or EmbedOpsSettings()
        gauges = CoverageGauges(services)
        services.metrics.on_scrape(gauges.refresh)
        scheduler = Scheduler(
            services,
            interval=settings.schedule_interval_s,
            lookback=settings.schedule_lookback_s,
            limit=settings.schedule_limit,
            jitter=settings.schedule_jitter,
            requeued=gauges.requeued,
        )
        jobs = Jobs(services.tasks)
        services.extras[self.name] = EmbedOpsState(settings, jobs, scheduler)
        subscribed = services.bus.subscribe(COLLECTIONS_CHANNEL, maxsize=1000)
        subscription = await stack.enter_async_context(subscribed)
        follower = services.tasks.spawn(self._follow_collections(services, subscription), name="embedops-collections")
        stack.push_async_callback(_cancel, follower)
        if settings.schedule_enabled and services.settings.role in ("all", "worker"):
            task = services.tasks.spawn(scheduler.run(), name="embedops-scheduler")

            async def stop_scheduler() -> None:
                scheduler.stop()  # it wakes at once: it waits on an event, not a sleep
                await asyncio.wait([task])

            stack.push_async_callback(stop_scheduler)
        # closed before the engines and stores: running jobs write what they embedded, then end
        stack.push_async_callback(jobs.stop_all, services.settings.drain_timeout_s)

    @staticmethod
    async def _follow_collections(services: Services, subscription: Subscription) -> None:
        """Re-read a collection another process switched (its row changed)."""
        async for event in subscription:
            name = event.get("collection")
            if isinstance(name, str):
                await services.collections.refresh(name)

    async def ready(self, services: Services) -> None:
        if self.name not in services.extras:
            raise BackendError("embedops: not started")


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.wait([task])
