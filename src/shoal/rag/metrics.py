"""Prometheus metrics of the RAG feature, on the app's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class RagMetrics:
    """The feature's Prometheus metrics, on the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.queries = Counter("shoal_rag_queries_total", "RAG queries answered", ["cached"], registry=registry)
        self.stage_seconds = Histogram(
            "shoal_rag_stage_seconds",
            "Time per RAG query stage",
            ["stage"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )

    def observe(self, timings_ms: dict[str, float], *, cached: bool) -> None:
        self.queries.labels(str(cached).lower()).inc()
        if not cached:
            for stage, ms in timings_ms.items():
                self.stage_seconds.labels(stage).observe(ms / 1000)
