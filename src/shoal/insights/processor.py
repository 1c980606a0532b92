"""The insights processor: its own consumer group on the ``records`` topic, conversations only.

Ingestion never waits for it: ``POST /api/v1/conversations`` returns once the log has the input. Each
batch is first recorded as ``pending`` (so it is visible and never lost), then analysed. A failed
analysis (embedding engine or LLM *and* local fallback down, store error) counts an attempt and raises,
so the runner replays the batch after ``retry_delay_s``; past ``max_attempts`` a conversation is marked
``failed`` with its error and the batch moves on. Each analysed batch is announced on the bus
(``ANALYZED_CHANNEL``), so live views (``WS /ws`` standing queries, the dashboard) show it at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from prometheus_client import Counter

from shoal.errors import ShoalError
from shoal.ingest import ANALYZED_CHANNEL, RECORDS_TOPIC
from shoal.insights.analyzer import Analysis, Analyzer, brief
from shoal.insights.clusters import OnlineClusterer
from shoal.insights.store import Conversation, InsightsStore
from shoal.log import Message
from shoal.pipeline.processor import Processor

if TYPE_CHECKING:
    from shoal.bus import Bus
    from shoal.embedding.engine import EmbeddingEngine

logger = structlog.get_logger(__name__)


def conversation_of(value: dict[str, Any]) -> Conversation:
    payload = value.get("payload") or {}
    author = payload.get("author")
    return Conversation(
        id=str(value["id"]),
        text=str(value["text"]),
        ts=datetime.fromisoformat(value["ts"]) if value.get("ts") else datetime.now(UTC),
        author=None if author is None else str(author),
        raw_data=payload.get("raw_data") or {},
    )


class InsightsProcessor(Processor):
    """Analyses conversations from the records log (consumer group ``insights``)."""

    topic = RECORDS_TOPIC
    group = "insights"

    def __init__(
        self,
        *,
        collection: str,
        engine: EmbeddingEngine,
        store: InsightsStore,
        analyzer: Analyzer,
        clusterer: OnlineClusterer,
        batch_size: int = 256,
        max_attempts: int = 5,
        retry_delay_s: float = 2.0,
        analyzed: Counter | None = None,
        failures: Counter | None = None,
        bus: Bus | None = None,
    ) -> None:
        self.collection = collection
        self.engine = engine
        self.store = store
        self.analyzer = analyzer
        self.clusterer = clusterer
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.retry_delay_s = retry_delay_s
        self._analyzed = analyzed
        self._failures = failures
        self._bus = bus

    async def handle(self, messages: Sequence[Message]) -> None:
        latest: dict[str, Conversation] = {}
        for message in messages:
            value = orjson.loads(message.value)
            if value.get("collection") == self.collection and value.get("op") == "upsert":
                conversation = conversation_of(value)
                latest[conversation.id] = conversation
        if not latest:
            return
        await self.store.add_pending(list(latest.values()))
        statuses = await self.store.statuses(list(latest))
        todo = [c for c in latest.values() if statuses.get(c.id) == "pending"]
        if not todo:
            return  # a replay of work already done
        try:
            vectors = await self.engine.embed([c.text for c in todo])
            analyses = await self.analyzer.analyze([c.text for c in todo], vectors)
            await self.store.save_analyses({c.id: a for c, a in zip(todo, analyses, strict=True)})
            await self.store.save_clusters(self.clusterer)
        except ShoalError as exc:
            if self._failures is not None:
                self._failures.inc(len(todo))
            still = await self.store.record_failure([c.id for c in todo], f"{exc.code}: {exc}", self.max_attempts)
            logger.warning("insights analysis failed", error=str(exc), size=len(todo), retrying=still)
            if still:
                raise
            return
        if self._analyzed is not None:
            self._analyzed.inc(len(todo))
        await self._announce(todo, analyses)

    async def _announce(self, conversations: Sequence[Conversation], analyses: Sequence[Analysis]) -> None:
        # A notification, not data of record: the analyses are stored, so a bus failure only costs
        # live views an update (replaying the batch would not re-announce it either).
        if self._bus is None:
            return
        event = {
            "collection": self.collection,
            "analyses": {c.id: brief(a) for c, a in zip(conversations, analyses, strict=True)},
        }
        try:
            await self._bus.publish(ANALYZED_CHANNEL, event)
        except ShoalError as exc:
            logger.warning("analysed conversations not announced", error=str(exc), size=len(conversations))
