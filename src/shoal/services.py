"""The running server's parts, built by the app lifespan and handed to routes and processors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.bus import Bus
    from shoal.cache import Cache
    from shoal.collections import Collections
    from shoal.embedding.engine import EmbeddingEngine
    from shoal.embedding.registry import EngineRegistry
    from shoal.ingest import Ingestor
    from shoal.log import Log
    from shoal.metrics import Metrics
    from shoal.ratelimit import RateLimiter
    from shoal.records import RecordStore
    from shoal.settings import Settings
    from shoal.tasks import TaskSet
    from shoal.vectors import VectorStore


@dataclass
class Services:
    settings: Settings
    metrics: Metrics
    log: Log
    records: RecordStore
    vectors: VectorStore
    cache: Cache
    """General-purpose cache (``SHOAL_CACHE_URL``): recommendation lists, query results."""
    bus: Bus
    engine: EmbeddingEngine
    """The server's own engine (``SHOAL_EMBEDDER``); ``engines.default``."""
    engines: EngineRegistry
    """An engine per model in use: embed a collection's texts with ``await engines.get(collection.model)``."""
    limiter: RateLimiter
    collections: Collections
    ingest: Ingestor
    tasks: TaskSet
    extras: dict[str, Any] = field(default_factory=dict)
    """Per-feature state, keyed by feature name."""
