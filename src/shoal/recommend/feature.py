"""Real-time recommendations: interaction events → per-user taste → cached lists, pushed live."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack

from fastapi import APIRouter

from shoal.feature import Feature
from shoal.pipeline.processor import Processor
from shoal.recommend import routes
from shoal.recommend.feature_state import NAME, RecommendState, state_of
from shoal.recommend.matrix import ItemMatrix
from shoal.recommend.processor import ProfileProcessor, RecommendMetrics
from shoal.recommend.service import Recommender
from shoal.recommend.settings import RecommendSettings
from shoal.recommend.store import ProfileStore
from shoal.services import Services


class RecommendFeature(Feature):
    name = NAME

    def __init__(self, settings: RecommendSettings | None = None) -> None:
        self._settings = settings

    def ingest_routers(self) -> Sequence[APIRouter]:
        return (routes.events,)

    def routers(self) -> Sequence[APIRouter]:
        return (routes.router,)

    async def start(self, services: Services, stack: AsyncExitStack) -> None:
        settings = self._settings or RecommendSettings()
        await services.collections.ensure(settings.collection)
        store = await stack.enter_async_context(
            ProfileStore(services.settings.resolved_database_url, popular_half_life_s=settings.popular_half_life_s)
        )
        # idempotency has a horizon: ids older than the retention are forgotten at start-up
        await store.forget_applied(settings.dedup_retention_s)
        matrix = await stack.enter_async_context(ItemMatrix(services, settings.collection, settings.exact_max_items))
        metrics = RecommendMetrics.create(services.metrics.registry)
        recommender = Recommender(services, settings, store, matrix)
        services.extras[self.name] = RecommendState(settings, store, recommender, metrics)

    def processors(self, services: Services) -> Sequence[Processor]:
        state = state_of(services)
        return (ProfileProcessor(services, state.recommender, state.metrics),)

    async def ready(self, services: Services) -> None:
        await state_of(services).store.ping()
