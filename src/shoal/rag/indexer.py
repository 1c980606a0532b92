"""Indexing documents: the ``documents`` log topic, the processor that chunks and embeds them, and
how every process learns which document versions are live.

``POST /index`` appends each document to the log (durable before ``202``); the processor (consumer
group ``rag-indexer``) turns it into chunks with a dense and a BM25 sparse vector each. A document's
version is its log offset: one document's messages share a key, hence a partition, so versions only
grow, and a replayed message writes the same chunk ids again (idempotent). See ``versions.py`` for
how a new version replaces the old one atomically.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from shoal.errors import InvalidInput
from shoal.filters import FieldCondition, Filter, Match, Range
from shoal.log import Message
from shoal.pipeline.processor import Processor
from shoal.records import Collection
from shoal.vectors.base import Point

if TYPE_CHECKING:
    from shoal.rag.service import RagState
    from shoal.services import Services

logger = structlog.get_logger(__name__)

DOCUMENTS_TOPIC = "documents"
CHANGED_CHANNEL = "rag.changed"
DRAIN_TIMEOUT_S = 30.0
"""Old chunks are deleted at the latest this long after a swap, even if a query still reads."""

# Reserved payload keys of a chunk (user metadata sits beside them, at the top level).
DOC, VERSION, CHUNK, COUNT, TITLE, TEXT = "_doc", "_version", "_chunk", "_n", "_title", "_text"


@dataclass(frozen=True, slots=True)
class DocumentIn:
    id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def document_key(collection: str, doc_id: str) -> str:
    return f"{collection}/{doc_id}"


def encode_upsert(collection: str, doc: DocumentIn) -> tuple[str, bytes]:
    value = {
        "op": "upsert",
        "collection": collection,
        "id": doc.id,
        "title": doc.title,
        "text": doc.text,
        "metadata": doc.metadata,
    }
    return document_key(collection, doc.id), orjson.dumps(value)


def encode_delete(collection: str, doc_id: str) -> tuple[str, bytes]:
    return document_key(collection, doc_id), orjson.dumps({"op": "delete", "collection": collection, "id": doc_id})


def chunk_id(doc_id: str, version: int, index: int) -> str:
    return f"{doc_id}#{version}#{index}"


def embedding_text(title: str, text: str) -> str:
    """What a chunk is embedded and BM25-encoded as: its document's title gives it context."""
    return f"{title}\n{text}" if title else text


class DocumentProcessor(Processor):
    """Chunks, embeds and writes documents; swaps versions; deletes superseded chunks."""

    topic = DOCUMENTS_TOPIC
    group = "rag-indexer"

    def __init__(self, services: Services, state: RagState, *, batch_size: int = 64) -> None:
        self._services = services
        self._state = state
        self.batch_size = batch_size

    async def handle(self, messages: Sequence[Message]) -> None:
        last: dict[str, dict[str, tuple[int, dict[str, Any]]]] = defaultdict(dict)
        for message in messages:  # only the last message per document matters
            value = orjson.loads(message.value)
            last[value["collection"]][value["id"]] = (message.offset, value)
        for name, docs in last.items():
            try:
                await self._apply(name, docs)
            except InvalidInput as exc:
                # A message that can never apply (the collection is not a document collection):
                # skip it rather than block the topic; the API refuses such requests up front.
                logger.error("skipping documents for an unusable collection", collection=name, error=str(exc))

    async def _apply(self, name: str, docs: dict[str, tuple[int, dict[str, Any]]]) -> None:
        state, services = self._state, self._services
        collection = await state.ensure_collection(services, name)
        versions = state.versions
        fresh = {d: (v, value) for d, (v, value) in docs.items() if v >= versions.latest(name, d)}
        upserts = {d: (v, value) for d, (v, value) in fresh.items() if value["op"] == "upsert"}
        points = await self._points(upserts)
        if points:
            await services.vectors.upsert(collection.vector_name, points)
        changes: dict[str, int | None] = {d: (v if d in upserts else None) for d, (v, _) in fresh.items()}
        offsets = {d: v for d, (v, _) in fresh.items()}
        if not changes:
            return
        state.apply(name, changes, offsets)
        await services.bus.publish(
            CHANGED_CHANNEL, {"origin": state.origin, "collection": name, "changes": changes, "versions": offsets}
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(versions.drain(), DRAIN_TIMEOUT_S)
        await self._delete_superseded(collection, offsets)

    async def _points(self, upserts: dict[str, tuple[int, dict[str, Any]]]) -> list[Point]:
        state = self._state
        pending: list[tuple[str, int, int, int, str, str, dict[str, Any]]] = []
        for doc_id, (version, value) in upserts.items():
            chunks = state.chunker.chunk(value["text"])
            for chunk in chunks:
                pending.append(
                    (doc_id, version, chunk.index, len(chunks), value["title"], chunk.text, value["metadata"])
                )
        if not pending:
            return []
        texts = [embedding_text(title, text) for _, _, _, _, title, text, _ in pending]
        vectors = await self._services.engine.embed(texts)
        points = []
        for (doc_id, version, index, count, title, text, metadata), vector, full in zip(
            pending, vectors, texts, strict=True
        ):
            payload = {**metadata, DOC: doc_id, VERSION: version, CHUNK: index, COUNT: count, TITLE: title, TEXT: text}
            points.append(
                Point(chunk_id(doc_id, version, index), vector.tolist(), payload, sparse=state.bm25.document(full))
            )
        return points

    async def _delete_superseded(self, collection: Collection, offsets: dict[str, int]) -> None:
        # Strictly older versions only: a replayed, stale message must never delete newer chunks.
        for doc_id, version in offsets.items():
            stale = Filter(
                must=[
                    FieldCondition(key=DOC, match=Match(value=doc_id)),
                    FieldCondition(key=VERSION, range=Range(lt=version)),
                ]
            )
            await self._services.vectors.delete_by_filter(collection.vector_name, stale)


async def follow_changes(services: Services, state: RagState) -> None:
    """Apply version swaps made by processors in other processes (runs until cancelled)."""
    async with services.bus.subscribe(CHANGED_CHANNEL) as subscription:
        state.following.set()
        async for event in subscription:
            if event.get("origin") != state.origin:
                state.apply(event["collection"], event["changes"], event["versions"])


async def load_versions(services: Services, state: RagState) -> None:
    """Rebuild the live version of every document from the vector store (at start-up).

    A version is live when all of its chunks are present (a crash may leave a newer one half
    written; the log replays it); the highest complete version wins.
    """
    for collection in services.collections.list():
        if not collection.config.get("rag"):
            continue
        total = await services.vectors.count(collection.vector_name)
        if not total:
            continue
        seen: dict[str, dict[int, set[int]]] = defaultdict(lambda: defaultdict(set))
        expected: dict[tuple[str, int], int] = {}
        for point in await services.vectors.scroll(collection.vector_name, limit=total):
            doc, version = point.payload[DOC], int(point.payload[VERSION])
            seen[doc][version].add(int(point.payload[CHUNK]))
            expected[(doc, version)] = int(point.payload[COUNT])
        live: dict[str, int | None] = {}
        for doc, by_version in seen.items():
            complete = [v for v, chunks in by_version.items() if len(chunks) == expected[(doc, v)]]
            if complete:
                live[doc] = max(complete)
        state.apply(collection.name, live, {d: v for d, v in live.items() if v is not None})
        logger.info("rag versions loaded", collection=collection.name, documents=len(live))
