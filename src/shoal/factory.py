"""The one place that turns URLs in settings into backend instances.

Nobody else branches on a backend's kind. Implementations are imported lazily so that an optional
driver is only needed when its URL is used; a missing driver raises ``MissingDependencyError``
naming the extra that installs it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shoal.errors import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    from shoal.bus import Bus
    from shoal.cache import Cache
    from shoal.embedding import EmbeddingProvider
    from shoal.log import Log
    from shoal.ratelimit import RateLimiter
    from shoal.records import RecordStore
    from shoal.settings import Settings
    from shoal.vectors import VectorStore

# driver module -> extra that provides it
_EXTRAS = {
    "redis": "redis",
    "asyncpg": "postgres",
    "qdrant_client": "qdrant",
    "pymilvus": "milvus",
    "pgvector": "pgvector",
    "aiokafka": "kafka",
}


def _load(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        if root in _EXTRAS:
            raise MissingDependencyError(root, _EXTRAS[root]) from exc
        raise


def _path(url: str) -> Path:
    """``scheme:///abs/path`` or ``scheme://rel/path`` → a filesystem path."""
    parts = urlsplit(url)
    return Path(parts.netloc + parts.path) if parts.netloc else Path(parts.path)


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.lower()


def make_log(
    url: str, *, partitions: int = 4, fsync: str = "always", fsync_interval_s: float = 1.0, **options: Any
) -> Log:
    """``fsync`` and ``fsync_interval_s`` apply to the embedded SQLite log (Kafka's brokers own durability)."""
    scheme = _scheme(url)
    if scheme == "sqlite":
        sqlite_log = _load("shoal.log.sqlite", "SqliteLog")
        return sqlite_log(_path(url), partitions=partitions, fsync=fsync, fsync_interval_s=fsync_interval_s)  # type: ignore[no-any-return]
    if scheme in {"kafka", "redpanda"}:
        return _load("shoal.log.kafka", "KafkaLog")(url, partitions=partitions, **options)  # type: ignore[no-any-return]
    raise ConfigurationError(f"unsupported log URL scheme {scheme!r} (use sqlite:// or kafka://)")


def make_vector_store(url: str) -> VectorStore:
    scheme = _scheme(url)
    if scheme == "edge":
        return _load("shoal.vectors.edge", "EdgeVectorStore")(_path(url))  # type: ignore[no-any-return]
    if scheme in {"qdrant", "qdrants", "http", "https", "qdrant+local"}:
        return _load("shoal.vectors.qdrant", "QdrantVectorStore")(url)  # type: ignore[no-any-return]
    if scheme in {"milvus", "milvus+lite"}:
        return _load("shoal.vectors.milvus", "MilvusVectorStore")(url)  # type: ignore[no-any-return]
    if scheme in {"pgvector", "postgresql", "postgres"}:
        try:
            return _load("shoal.vectors.pgvector", "PgVectorStore")(url)  # type: ignore[no-any-return]
        except MissingDependencyError as exc:
            raise MissingDependencyError(exc.package, "pgvector") from exc
    raise ConfigurationError(
        f"unsupported vector URL scheme {scheme!r} (use edge://, qdrant://, milvus:// or pgvector://)"
    )


def make_record_store(url: str) -> RecordStore:
    scheme = _scheme(url)
    if scheme.startswith("sqlite") or scheme.startswith("postgresql"):
        if scheme.startswith("postgresql"):
            _load("asyncpg", "connect")
        return _load("shoal.records.sql", "SqlRecordStore")(url)  # type: ignore[no-any-return]
    raise ConfigurationError(
        f"unsupported database URL scheme {scheme!r} (use sqlite+aiosqlite:// or postgresql+asyncpg://)"
    )


def make_cache(url: str, *, ttl: float, maxsize: int = 100_000, prefix: str = "shoal:") -> Cache:
    scheme = _scheme(url)
    if scheme == "memory":
        return _load("shoal.cache.memory", "MemoryCache")(maxsize=maxsize, ttl=ttl)  # type: ignore[no-any-return]
    if scheme == "sqlite":
        return _load("shoal.cache.sqlite", "SqliteCache")(_path(url), ttl=ttl)  # type: ignore[no-any-return]
    if scheme in {"redis", "rediss", "unix"}:
        return _load("shoal.cache.redis", "RedisCache")(url, ttl=ttl, prefix=prefix)  # type: ignore[no-any-return]
    raise ConfigurationError(f"unsupported cache URL scheme {scheme!r} (use memory://, sqlite:// or redis://)")


def make_bus(url: str) -> Bus:
    scheme = _scheme(url)
    if scheme == "memory":
        return _load("shoal.bus.memory", "MemoryBus")()  # type: ignore[no-any-return]
    if scheme in {"redis", "rediss", "unix"}:
        return _load("shoal.bus.redis", "RedisBus")(url)  # type: ignore[no-any-return]
    raise ConfigurationError(f"unsupported bus URL scheme {scheme!r} (use memory:// or redis://)")


def make_rate_limiter(settings: Settings) -> RateLimiter:
    """Inbound per-client limiter: in-process, or shared by every API process through Redis."""
    url = settings.cache_url
    rate, burst = settings.rate_limit_per_s, settings.rate_limit_burst
    if _scheme(url) in {"redis", "rediss", "unix"}:
        return _load("shoal.ratelimit", "RedisRateLimiter")(url, rate=rate, burst=burst)  # type: ignore[no-any-return]
    return _load("shoal.ratelimit", "MemoryRateLimiter")(rate=rate, burst=burst)  # type: ignore[no-any-return]


def make_embedding_provider(settings: Settings, spec: str | None = None) -> EmbeddingProvider:
    """``local:minilm`` (int8 ONNX), ``local:minilm-fp32`` (exact) or ``openai:<model>``."""
    spec = spec or settings.embedder
    kind, _, model = spec.partition(":")
    if kind == "local":
        variants = {"minilm": "int8", "minilm-int8": "int8", "minilm-fp32": "fp32"}
        if model not in variants:
            raise ConfigurationError(f"unknown local model {model!r} (use one of {sorted(variants)})")
        return _load("shoal.embedding.onnx", "OnnxProvider")(  # type: ignore[no-any-return]
            variant=variants[model],
            threads=settings.embed_threads,
            max_tokens=settings.embed_max_tokens,
            models_dir=settings.data_dir / "models",
            nice=settings.embed_nice,
        )
    if kind == "openai":
        if not model:
            raise ConfigurationError("SHOAL_EMBEDDER=openai:<model> needs a model name")
        return _load("shoal.embedding.openai", "OpenAIProvider")(  # type: ignore[no-any-return]
            model=model,
            base_url=settings.embedder_base_url,
            api_key=settings.embedder_api_key.get_secret_value() if settings.embedder_api_key else None,
            dim=settings.embedder_dim,
            requests_per_minute=settings.embed_requests_per_minute,
            tokens_per_minute=settings.embed_tokens_per_minute,
            max_retries=settings.embed_max_retries,
            timeout=settings.embed_timeout_s,
        )
    raise ConfigurationError(f"unknown embedder {spec!r} (use local:minilm, local:minilm-fp32 or openai:<model>)")
