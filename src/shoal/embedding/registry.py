"""Embedding engines by model id: the server's own engine plus one per other model a collection uses.

Search and the indexer must embed with the model of the vector collection they touch, never with
whatever the server was started with: ``services.engines.get(model)`` is how they get it. During a
model switch (``shoal reembed``) the shadow collection's model is served by an engine of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Self

import structlog

from shoal import factory
from shoal.embedding.engine import EmbeddingEngine
from shoal.errors import BackendError, ShoalError, ShuttingDown

if TYPE_CHECKING:
    from shoal.cache import Cache
    from shoal.settings import Settings

logger = structlog.get_logger(__name__)


class EngineRegistry:
    """Opens one ``EmbeddingEngine`` per model id on first use and closes them all on exit.

    Entering opens the server's own engine (``settings.embedder``), ``default``. Every engine is
    configured by the same ``SHOAL_EMBED_*`` settings and shares the L2 cache ``l2`` (keys include the
    model id, so they never collide). The registry owns its engines and their providers, not ``l2``.
    """

    def __init__(self, settings: Settings, l2: Cache | None = None) -> None:
        self._settings = settings
        self._l2 = l2
        self._engines: dict[str, EmbeddingEngine] = {}
        self._default: EmbeddingEngine | None = None
        self._stack = AsyncExitStack()
        self._lock = asyncio.Lock()
        self._closed = False

    async def __aenter__(self) -> Self:
        try:
            self._default = await self.get(self._settings.embedder)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close every engine (each drains its queued texts), the latest opened first."""
        self._engines, self._default, self._closed = {}, None, True
        await self._stack.aclose()

    @property
    def default(self) -> EmbeddingEngine:
        """The server's own engine (``settings.embedder``)."""
        if self._default is None:
            raise BackendError("the embedding engine registry is not open")
        return self._default

    def models(self) -> list[str]:
        """Model ids of the open engines."""
        return sorted({engine.model_id for engine in self._engines.values()})

    async def get(self, model: str) -> EmbeddingEngine:
        """The engine for ``model`` (a spec such as ``local:minilm-fp32`` or ``openai:<name>``), opened
        and warmed up on first use. (The server's own engine, opened on entering, is not warmed up:
        the caller decides when to pay for that.)

        Raises:
            ConfigurationError: the model is unknown or its provider cannot be configured.
            EmbeddingError: the provider failed to open (e.g. a remote dimension probe).
            ShuttingDown: the registry is closed.
        """
        if self._closed:
            raise ShuttingDown("the embedding engines are closed")
        found = self._engines.get(model)
        if found is not None:
            return found
        async with self._lock:
            found = self._engines.get(model)
            if found is None:
                found = await self._open(model)
            # a spec and its model id name one engine (``local:minilm-int8`` is ``local:minilm``)
            self._engines[model] = found
            return found

    async def preload(self, models: Iterable[str]) -> None:
        """Open the engines of ``models`` now, so the first request does not pay for loading one.
        A model that cannot open now is logged and opened (or refused) on first use."""
        for model in dict.fromkeys(models):
            try:
                await self.get(model)
            except ShoalError as exc:
                logger.warning("cannot open an embedding engine yet", model=model, error=str(exc))

    async def _open(self, model: str) -> EmbeddingEngine:
        s = self._settings
        provider = factory.make_embedding_provider(s, model)
        known = self._engines.get(provider.model_id)  # an alias of an open model: load it once
        if known is not None:
            return known
        await self._stack.enter_async_context(provider)
        engine = await self._stack.enter_async_context(
            EmbeddingEngine(
                provider,
                l2=self._l2,
                l1_size=s.embed_cache_size,
                ttl=s.embed_cache_ttl_s,
                batch_size=s.embed_batch_size,
                max_wait_ms=s.embed_max_wait_ms,
                queue_size=s.embed_queue_size,
            )
        )
        self._engines[engine.model_id] = engine
        if self._default is not None:
            await engine.warmup()
            logger.info("embedding engine opened", model=engine.model_id, dim=engine.dim)
        return engine
