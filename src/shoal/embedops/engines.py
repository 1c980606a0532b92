"""Embedding engines by model id: the server's own engine plus one per other model a collection uses.

Search and the indexer must embed with the model of the vector collection they touch, never with
whatever the server was started with: ``engine_for(services, model)`` is how they get it.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Self

import structlog

from shoal import factory
from shoal.embedding.engine import EmbeddingEngine
from shoal.errors import ConfigurationError

if TYPE_CHECKING:
    from shoal.services import Services
    from shoal.settings import Settings

logger = structlog.get_logger(__name__)

ENGINES_KEY = "engines"
"""Where the registry lives in ``Services.extras``."""


class EngineRegistry:
    """Opens one ``EmbeddingEngine`` per model id on first use and closes them all on exit.

    Every engine shares the default engine's L2 cache (keys include the model id, so they never
    collide). The default engine is owned by the app, not by the registry.
    """

    def __init__(self, settings: Settings, default: EmbeddingEngine) -> None:
        self._settings = settings
        self._default = default
        self._engines: dict[str, EmbeddingEngine] = {default.model_id: default}
        self._stack = AsyncExitStack()
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._engines = {self._default.model_id: self._default}
        await self._stack.aclose()

    @property
    def default(self) -> EmbeddingEngine:
        return self._default

    def models(self) -> list[str]:
        return sorted(self._engines)

    async def get(self, model: str) -> EmbeddingEngine:
        """The engine for ``model`` (a spec such as ``local:minilm-fp32`` or ``openai:<name>``).

        Raises:
            ConfigurationError: the model is unknown or its provider cannot be configured.
            EmbeddingError: the provider failed to open (e.g. a remote dimension probe).
        """
        found = self._engines.get(model)
        if found is not None:
            return found
        async with self._lock:
            found = self._engines.get(model)
            if found is not None:
                return found
            s = self._settings
            provider = await self._stack.enter_async_context(factory.make_embedding_provider(s, model))
            engine = await self._stack.enter_async_context(
                EmbeddingEngine(
                    provider,
                    l2=self._default.l2,
                    l1_size=s.embed_cache_size,
                    ttl=s.embed_cache_ttl_s,
                    batch_size=s.embed_batch_size,
                    max_wait_ms=s.embed_max_wait_ms,
                    queue_size=s.embed_queue_size,
                )
            )
            await engine.warmup()
            # ``local:minilm-int8`` is the same model as ``local:minilm``: known under both names
            self._engines[model] = self._engines.setdefault(engine.model_id, engine)
            logger.info("embedding engine opened", model=engine.model_id, dim=engine.dim)
            return self._engines[model]


async def engine_for(services: Services, model: str) -> EmbeddingEngine:
    """The engine that embeds like ``model``: the server's own, or one from the registry.

    Raises:
        ConfigurationError: ``model`` is not the server's and no registry is installed.
    """
    if model == services.engine.model_id:
        return services.engine
    registry: EngineRegistry | None = services.extras.get(ENGINES_KEY)
    if registry is None:
        raise ConfigurationError(
            f"collection is embedded with {model!r} but this server runs {services.engine.model_id!r}: "
            "enable the embedops feature (it opens an engine per model)"
        )
    return await registry.get(model)
