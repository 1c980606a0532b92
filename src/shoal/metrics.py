"""Prometheus metrics, one registry per app (tests can build several apps in one process).

Gauges that describe state elsewhere (queue depths, log lag, coverage, cache hit ratio) are filled
at scrape time by ``refresh`` callbacks, so nothing polls in the background.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

Refresher = Callable[[], Awaitable[None]]


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.http_latency = Histogram(
            "shoal_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.records_accepted = Counter("shoal_records_accepted_total", "Records accepted (202)", registry=registry)
        self.records_indexed = Counter("shoal_records_indexed_total", "Records embedded and indexed", registry=registry)
        self.records_failed = Counter("shoal_records_failed_total", "Records whose embedding failed", registry=registry)
        self.log_bad_messages = Counter("shoal_log_bad_messages_total", "Undecodable log messages", registry=registry)
        self.ingest_latency = Histogram(
            "shoal_ingest_to_searchable_seconds",
            "Time from log commit (202) to searchable",
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.embed_batch_size = Histogram(
            "shoal_embed_batch_size",
            "Texts per provider call",
            registry=registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
        )
        self.embed_texts = Counter("shoal_embed_texts_total", "Texts embedded by the provider", registry=registry)
        self.embed_throughput = Gauge(
            "shoal_embed_throughput_texts_per_second", "Measured provider throughput", registry=registry
        )
        self.embed_queue_depth = Gauge("shoal_embed_queue_depth", "Texts waiting for the embedder", registry=registry)
        self.cache_hits = Gauge("shoal_embed_cache_hits", "Embedding cache hits", ["level"], registry=registry)
        self.cache_misses = Gauge("shoal_embed_cache_misses", "Embedding cache misses", registry=registry)
        self.cache_hit_ratio = Gauge("shoal_embed_cache_hit_ratio", "Embedding cache hit ratio", registry=registry)
        self.log_lag = Gauge("shoal_log_lag", "Messages not yet processed", ["topic", "group"], registry=registry)
        self.collection_records = Gauge(
            "shoal_collection_records", "Records by status", ["collection", "status"], registry=registry
        )
        self.collection_coverage = Gauge(
            "shoal_collection_coverage_ratio", "Embedded / total records", ["collection"], registry=registry
        )
        self.optimize_seconds = Histogram(
            "shoal_vector_optimize_seconds",
            "Vector index optimisations (HNSW and payload index builds) by vector collection",
            ["vector_collection"],
            registry=registry,
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )
        self.optimize_backlog = Gauge(
            "shoal_vector_optimize_backlog_points",
            "Points written and not yet optimised (a running optimisation's included until it ends)",
            registry=registry,
        )
        self._refreshers: list[Refresher] = []

    def count_from(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A counter (``<name>_total``) whose value something else keeps; ``read`` at each scrape."""
        self.registry.register(_ReadCounter(name, documentation, read))

    def on_scrape(self, refresher: Refresher) -> None:
        """Run ``refresher`` before each scrape to update state gauges."""
        self._refreshers.append(refresher)

    async def render(self) -> bytes:
        for refresh in self._refreshers:
            await refresh()
        return generate_latest(self.registry)


class _ReadCounter(Collector):
    def __init__(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self.name, self.documentation, self.read = name, documentation, read

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.read())
