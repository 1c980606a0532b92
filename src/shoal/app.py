"""The app factory and its lifespan: one ``AsyncExitStack`` opens every backend, feature and
worker, and closes them in reverse order (draining in-flight work) at shutdown."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import structlog
from fastapi import APIRouter, FastAPI

from shoal import factory
from shoal.api import embeddings, errors, export, ops, records
from shoal.collections import Collections, targets
from shoal.embedding.registry import EngineRegistry
from shoal.feature import Feature
from shoal.ingest import Ingestor
from shoal.metrics import Metrics
from shoal.pipeline.indexer import IndexProcessor
from shoal.pipeline.optimizer import Optimizer
from shoal.pipeline.processor import Processor, ProcessorRunner
from shoal.services import Services
from shoal.settings import Settings
from shoal.tasks import TaskSet
from shoal.telemetry import BodyLimit, RequestContext, dropped_log_lines

logger = structlog.get_logger(__name__)


class CoreFeature(Feature):
    """Collections, records, search, embeddings and the indexer."""

    name = "core"

    def ingest_routers(self) -> Sequence[APIRouter]:
        return (records.ingest,)

    def routers(self) -> Sequence[APIRouter]:
        return (records.router, export.router, embeddings.router)

    async def start(self, services: Services, stack: AsyncExitStack) -> None:
        settings = services.settings
        self.optimizer = optimizer = await stack.enter_async_context(
            Optimizer(services.vectors, settings.optimize_interval_s, settings.optimize_max_pending, services.metrics)
        )

        async def refresh() -> None:
            services.metrics.optimize_backlog.set(optimizer.backlog)

        services.metrics.on_scrape(refresh)

    def processors(self, services: Services) -> Sequence[Processor]:
        settings = services.settings
        indexer = IndexProcessor(
            services,
            batch_size=settings.ingest_batch_size,
            min_batch_size=settings.ingest_batch_min,
            on_write=self.optimizer.mark,
        )
        return (indexer,)


def default_features() -> list[Feature]:
    from shoal.dashboard import DashboardFeature
    from shoal.embedops.feature import EmbedOpsFeature
    from shoal.insights import InsightsFeature
    from shoal.rag.feature import RagFeature
    from shoal.recommend import RecommendFeature
    from shoal.tweets import TweetsFeature

    return [
        CoreFeature(),
        EmbedOpsFeature(),
        TweetsFeature(),
        InsightsFeature(),
        RagFeature(),
        RecommendFeature(),
        DashboardFeature(),
    ]


async def open_services(settings: Settings, stack: AsyncExitStack, metrics: Metrics | None = None) -> Services:
    """Open every backend on ``stack`` and return them wired together (used by the app and the CLI)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    metrics = metrics or Metrics()
    tasks = await stack.enter_async_context(TaskSet())
    log = await stack.enter_async_context(
        factory.make_log(
            settings.resolved_log_url,
            partitions=settings.log_partitions,
            fsync=settings.log_fsync,
            fsync_interval_s=settings.log_fsync_interval_s,
        )
    )
    record_store = await stack.enter_async_context(factory.make_record_store(settings.resolved_database_url))
    vectors = await stack.enter_async_context(factory.make_vector_store(settings.resolved_vector_url))
    cache = await stack.enter_async_context(
        factory.make_cache(settings.cache_url, ttl=settings.embed_cache_ttl_s, prefix="shoal:c:")
    )
    bus = await stack.enter_async_context(factory.make_bus(settings.bus_url))
    l2 = await stack.enter_async_context(
        factory.make_cache(settings.embedding_cache_url, ttl=settings.embed_cache_ttl_s, prefix="shoal:emb:")
    )
    engines = await stack.enter_async_context(EngineRegistry(settings, l2))
    engine = engines.default
    limiter = await stack.enter_async_context(factory.make_rate_limiter(settings))
    collections = Collections(record_store, vectors, model=engine.model_id, dim=engine.dim)
    await collections.load()
    # every model a collection searches or writes (a shadow's too), loaded before the first request
    await engines.preload(target.model for collection in collections.list() for target in targets(collection))
    services = Services(
        settings=settings,
        metrics=metrics,
        log=log,
        records=record_store,
        vectors=vectors,
        cache=cache,
        bus=bus,
        engine=engine,
        engines=engines,
        limiter=limiter,
        collections=collections,
        ingest=Ingestor(log, bus),
        tasks=tasks,
    )
    _register_gauges(services)
    return services


def _register_gauges(services: Services) -> None:
    metrics, engine = services.metrics, services.engine
    seen_batches: Counter[int] = Counter()  # provider calls already observed, by size
    seen_texts = 0

    async def refresh() -> None:
        nonlocal seen_batches, seen_texts
        stats = engine.stats()
        # the engine counts its calls by size; the histogram and counter get what came since the last scrape
        batches = Counter(stats["batch_sizes"])
        for size, calls in (batches - seen_batches).items():
            for _ in range(calls):
                metrics.embed_batch_size.observe(size)
        metrics.embed_texts.inc(stats["texts_embedded"] - seen_texts)
        seen_batches, seen_texts = batches, stats["texts_embedded"]
        metrics.embed_queue_depth.set(stats["queue_depth"])
        metrics.embed_throughput.set(stats["throughput"])
        metrics.cache_hits.labels("l1").set(stats["hits_l1"])
        metrics.cache_hits.labels("l2").set(stats["hits_l2"])
        metrics.cache_misses.set(stats["misses"])
        lookups = stats["hits_l1"] + stats["hits_l2"] + stats["misses"]
        metrics.cache_hit_ratio.set((stats["hits_l1"] + stats["hits_l2"]) / lookups if lookups else 0.0)
        for collection in services.collections.list():
            st = await services.records.stats(collection.name)
            for status_name, value in (("embedded", st.embedded), ("pending", st.pending), ("failed", st.failed)):
                metrics.collection_records.labels(collection.name, status_name).set(value)
            current = st.models.get(collection.model, 0)
            metrics.collection_coverage.labels(collection.name).set(current / st.total if st.total else 1.0)

    metrics.on_scrape(refresh)


def _register_lag_gauges(services: Services, processors: Sequence[Processor]) -> None:
    """Log lag of every consumer group this process runs, computed at scrape time."""
    groups = sorted({(p.topic, p.group) for p in processors})

    async def refresh() -> None:
        for topic, group in groups:
            services.metrics.log_lag.labels(topic, group).set(await services.log.lag(topic, group))

    services.metrics.on_scrape(refresh)


GC_THRESHOLDS = (700, 100, 10)
"""The cyclic collector's thresholds while serving: CPython's default gen-0 threshold, but a young
collection every 100 gen-0 ones instead of 10 (see ``tune_gc``)."""


def tune_gc(stack: AsyncExitStack) -> None:
    """Keep the cyclic garbage collector's pauses out of the requests' tail.

    What start-up built (modules, models, schemas: ~150k objects) is frozen out of it until shutdown:
    a full collection walks every tracked object with the GIL held, 100-300 ms in which no request or
    push moves. What requests build afterwards is mostly short-lived, yet whatever is alive when a
    young collection runs (the requests in flight) is promoted to the old generation, and CPython runs
    a full collection once promotions reach a quarter of it: at 500 requests/s, one every ~2 s, each
    walking the ~100k objects the caches and catalog hold (60-100 ms, collecting nothing). Collecting
    the young generation a tenth as often promotes a tenth as much — one full collection in ~20 s —
    while a young collection still walks only what is alive then (bench/recommend.py at 500 events/s,
    three interleaved rounds: POST → 202 p99 median 114 → 52 ms; docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()
    before = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    stack.callback(gc.set_threshold, *before)
    stack.callback(gc.unfreeze)


def create_app(settings: Settings | None = None, features: Sequence[Feature] | None = None) -> FastAPI:
    """Build the ASGI app. Settings come from the environment when not given."""
    settings = settings or Settings()
    features = list(features) if features is not None else default_features()
    if not any(isinstance(f, CoreFeature) for f in features):
        features.insert(0, CoreFeature())
    metrics = Metrics()
    metrics.count_from(
        "shoal_log_lines_dropped", "Log lines dropped: the log writer was a queue behind", dropped_log_lines
    )
    serves_api = settings.role in ("all", "api")
    runs_workers = settings.role in ("all", "worker")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            services = await open_services(settings, stack, metrics)
            services.extras["_features"] = {f.name: f for f in features}
            for feature in features:
                await feature.start(services, stack)
            if serves_api:
                services.tasks.spawn(services.ingest.listen(), name="ingest-waiters")
                await services.ingest.listening()
            if runs_workers:
                processors = [p for f in features for p in f.processors(services)]
                _register_lag_gauges(services, processors)
                # Entered last, so it is closed first: current batches finish and commit before
                # the stores they write to close.
                await stack.enter_async_context(ProcessorRunner(services.log, processors))
            app.state.services = services
            tune_gc(stack)
            logger.info("shoal started", role=settings.role, model=services.engine.model_id)
            yield
            logger.info("shoal draining")

    app = FastAPI(
        title="Shoal",
        version=_version(),
        summary="Live text streams into meaning: embeddings, search, live similar items, insights, RAG.",
        lifespan=lifespan,
        # A worker serves only /health, /ready and /metrics: no API schema or docs pages either.
        openapi_url="/openapi.json" if serves_api else None,
    )
    errors.install(app)
    install_auth(app, settings)
    if serves_api:
        for feature in features:
            for router in feature.ingest_routers():
                app.include_router(router)
    app.include_router(ops.router)
    if serves_api:
        for feature in features:
            for router in feature.routers():
                app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContext, metrics=metrics)
    return app


def install_auth(app: FastAPI, settings: Settings) -> None:
    """Authentication for every route but /health (owned by the auth module; see shoal/auth.py)."""
    from shoal import auth

    auth.install(app, settings)


def _version() -> str:
    from shoal import __version__

    return __version__
