"""Coverage of a collection: how many records carry an embedding of the model search uses.

One computation feeds both ``GET /v1/collections/{c}/stats`` and the Prometheus gauges.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from shoal.ingest import RECORDS_TOPIC
from shoal.services import Services


@dataclass(frozen=True, slots=True)
class Coverage:
    collection: str
    model: str
    dim: int
    total: int
    embedded: int
    pending: int
    failed: int
    last_error: str | None
    current: int
    """Records embedded with the current model."""
    coverage: float
    """``current / total`` (1.0 for an empty collection)."""
    log_lag: int
    """Messages of the records log not yet indexed (every collection's)."""
    backlog: int
    """Work before every accepted record is searchable with the current model: records lacking a
    current-model embedding plus the log lag."""
    oldest_pending_age_s: float | None
    models: dict[str, int]
    vectors: int
    shadow_model: str | None
    shadow_vectors: int | None
    shadow_coverage: float | None
    previous_model: str | None


async def coverage(services: Services, name: str) -> Coverage:
    """Counts for ``name`` (raises ``CollectionNotFound``)."""
    collection = await services.collections.get(name)
    stats = await services.records.stats(name)
    lag = await services.log.lag(RECORDS_TOPIC, "indexer")
    current = stats.models.get(collection.model, 0)
    shadow_vectors = None
    if collection.shadow_vector_name:
        shadow_vectors = await services.vectors.count(collection.shadow_vector_name)
    oldest = None
    if stats.oldest_pending is not None:
        oldest = max(0.0, (datetime.now(UTC) - stats.oldest_pending).total_seconds())
    return Coverage(
        collection=name,
        model=collection.model,
        dim=collection.dim,
        total=stats.total,
        embedded=stats.embedded,
        pending=stats.pending,
        failed=stats.failed,
        last_error=stats.last_error,
        current=current,
        coverage=round(current / stats.total, 6) if stats.total else 1.0,
        log_lag=lag,
        backlog=stats.total - current + lag,
        oldest_pending_age_s=oldest,
        models=stats.models,
        vectors=await services.vectors.count(collection.vector_name),
        shadow_model=collection.shadow_model,
        shadow_vectors=shadow_vectors,
        shadow_coverage=(
            None
            if shadow_vectors is None
            else round(min(shadow_vectors, stats.total) / stats.total, 6)
            if stats.total
            else 1.0
        ),
        previous_model=collection.config.get("previous_model"),
    )
