"""``InsightsFeature``: conversation analysis (sentiment, topic clusters) on the shared pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from fastapi import APIRouter
from prometheus_client import Counter

from shoal import factory
from shoal.errors import ConfigurationError
from shoal.feature import Feature
from shoal.insights.analyzer import Analyzer, LocalAnalyzer
from shoal.insights.clusters import OnlineClusterer
from shoal.insights.llm import LLMAnalyzer
from shoal.insights.processor import InsightsProcessor
from shoal.insights.routes import ingest, router
from shoal.insights.sentiment import SentimentAnalyzer, SentimentHead
from shoal.insights.settings import InsightsSettings
from shoal.insights.state import NAME, InsightsState, state_of
from shoal.insights.store import InsightsStore
from shoal.llm_settings import LLMSettings

if TYPE_CHECKING:
    from shoal.pipeline.processor import Processor
    from shoal.ratelimit import RateLimiter
    from shoal.services import Services


class InsightsFeature(Feature):
    """Routes ``/api/v1/conversations``, ``/insights``, ``/insights/summary``, ``/clusters`` and the
    ``insights`` processor. Settings come from the environment unless given (tests pass them)."""

    name = NAME

    def __init__(
        self,
        settings: InsightsSettings | None = None,
        llm: LLMSettings | None = None,
        *,
        llm_limiter: RateLimiter | None = None,
    ) -> None:
        self._settings = settings
        self._llm = llm
        self._llm_limiter = llm_limiter

    def ingest_routers(self) -> Sequence[APIRouter]:
        return (ingest,)

    def routers(self) -> Sequence[APIRouter]:
        return (router,)

    async def start(self, services: Services, stack: AsyncExitStack) -> None:
        settings = self._settings or InsightsSettings()
        llm = self._llm or LLMSettings()
        await services.collections.ensure(settings.collection)
        store = await stack.enter_async_context(InsightsStore(services.settings.resolved_database_url))
        clusterer = OnlineClusterer(services.engine.dim, **settings.clusterer_options())
        clusterer.load(await store.load_clusters(services.engine.dim))
        # batches save the clusters' bulky samples only as they grow: write what is left at shutdown
        # (after the processors stopped, before the store closes)
        stack.push_async_callback(store.save_clusters, clusterer, full=True)
        sentiment = SentimentAnalyzer(
            head=SentimentHead.load() if settings.use_head else None,
            positive_threshold=settings.positive_threshold,
            negative_threshold=settings.negative_threshold,
        )
        local = LocalAnalyzer(sentiment, clusterer)
        analyzer: Analyzer = local
        if settings.analyzer == "llm" and not llm.configured:
            raise ConfigurationError("SHOAL_INSIGHTS_ANALYZER=llm needs SHOAL_LLM_BASE_URL and SHOAL_LLM_API_KEY")
        if settings.analyzer != "local" and llm.configured:
            limiter = self._llm_limiter
            if limiter is None:
                limiter = await stack.enter_async_context(_paced_limiter(services, llm))
            llm_analyzer = LLMAnalyzer(
                llm, local, limiter, batch_size=settings.llm_batch_size, max_retries=settings.llm_max_retries
            )
            stack.push_async_callback(llm_analyzer.aclose)
            analyzer = llm_analyzer
        services.extras[NAME] = InsightsState(settings, store, local, analyzer, clusterer)

    def processors(self, services: Services) -> Sequence[Processor]:
        state = state_of(services)
        registry = services.metrics.registry
        return (
            InsightsProcessor(
                collection=state.settings.collection,
                engine=services.engine,
                store=state.store,
                analyzer=state.analyzer,
                clusterer=state.clusterer,
                batch_size=state.settings.batch_size,
                max_attempts=state.settings.max_attempts,
                retry_delay_s=state.settings.retry_delay_s,
                analyzed=Counter("shoal_insights_analyzed", "Conversations analysed", registry=registry),
                failures=Counter("shoal_insights_failures", "Failed conversation analyses", registry=registry),
                bus=services.bus,
            ),
        )

    async def ready(self, services: Services) -> None:
        await state_of(services).store.ping()


def _paced_limiter(services: Services, llm: LLMSettings) -> RateLimiter:
    """The LLM call limiter: through Redis when the cache is Redis (shared by every worker)."""
    # burst 1 spaces calls evenly, so no one-second window ever holds more than the ceiling
    paced = services.settings.model_copy(update={"rate_limit_per_s": llm.max_calls_per_s, "rate_limit_burst": 1})
    return factory.make_rate_limiter(paced)
