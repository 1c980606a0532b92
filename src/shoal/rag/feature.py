"""``RagFeature``: the RAG routes, the ``documents`` processor and the models they share."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AsyncExitStack

from fastapi import APIRouter

from shoal.feature import Feature
from shoal.llm_settings import LLMSettings
from shoal.pipeline.processor import Processor
from shoal.rag.indexer import DocumentProcessor, follow_changes, load_versions
from shoal.rag.llm import LLM
from shoal.rag.metrics import RagMetrics
from shoal.rag.rerank import load_reranker
from shoal.rag.routes import FEATURE, router
from shoal.rag.service import RagState
from shoal.rag.settings import RagSettings
from shoal.services import Services


class RagFeature(Feature):
    """Documents in, cited answers out.

    Args:
        settings: RAG settings (default: from the environment, ``SHOAL_RAG_*`` and ``SHOAL_RERANKER``).
        llm_settings: the chat model (default: from the environment, ``SHOAL_LLM_*``); without a
            base URL and model, answers are extractive.
    """

    name = FEATURE

    def __init__(self, settings: RagSettings | None = None, llm_settings: LLMSettings | None = None) -> None:
        self._settings = settings
        self._llm_settings = llm_settings

    def routers(self) -> Sequence[APIRouter]:
        return (router,)

    async def start(self, services: Services, stack: AsyncExitStack) -> None:
        settings = self._settings or RagSettings()
        llm_settings = self._llm_settings or LLMSettings()
        reranker = None
        if settings.reranker:
            reranker = await asyncio.to_thread(
                load_reranker, settings.reranker, max_tokens=settings.rerank_max_tokens, threads=settings.rerank_threads
            )
        llm = None
        if llm_settings.configured:
            llm = await stack.enter_async_context(LLM(llm_settings))
        state = RagState(settings, reranker=reranker, llm=llm, metrics=RagMetrics(services.metrics.registry))
        services.extras[self.name] = state
        await load_versions(services, state)
        services.tasks.spawn(follow_changes(services, state), name="rag-follow-changes")
        await state.following.wait()

    def processors(self, services: Services) -> Sequence[Processor]:
        state: RagState = services.extras[self.name]
        return (DocumentProcessor(services, state, batch_size=state.settings.index_batch_size),)
