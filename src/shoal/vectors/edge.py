"""Qdrant Edge: the Qdrant engine in-process, one shard per collection under ``root/<name>/``.

Each collection directory holds the shard (``shard/``) and ``collection.json`` (dimension and
whether a sparse vector exists), so an idempotent ``create_collection`` can refuse a mismatch.
Shard calls block, so they run on a small thread pool (the hop costs ~0.1 ms). Edge 0.9 keeps the
GIL during a search, so the pool does not make searches run beside the event loop; it keeps a batch
of them from stalling the loop in one piece (``search_many``). ``optimize`` runs on
its own thread so queries keep their workers — but Edge 0.9 holds the GIL while it builds HNSW, so
the whole process stalls for the duration (see docs/vectors.md).
"""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import qdrant_edge as edge

from shoal.errors import BackendError, CollectionNotFound, Conflict, InvalidInput, ShoalError
from shoal.filters import Filter
from shoal.vectors import edge_filters as codec
from shoal.vectors.base import Hit, Point, SearchRequest, SparseVector, VectorStore

DENSE = codec.DENSE
SPARSE = codec.SPARSE
IndexKind = Literal["keyword", "integer", "float", "bool", "datetime", "text", "uuid"]

_SCHEMAS: dict[str, edge.PayloadSchemaType] = {
    "keyword": edge.PayloadSchemaType.Keyword,
    "integer": edge.PayloadSchemaType.Integer,
    "float": edge.PayloadSchemaType.Float,
    "bool": edge.PayloadSchemaType.Bool,
    "datetime": edge.PayloadSchemaType.Datetime,
    "text": edge.PayloadSchemaType.Text,
    "uuid": edge.PayloadSchemaType.Uuid,
}
_META = "collection.json"
BATCH_QUERIES = 32
"""Searches per ``query_batch`` call: ~0.3 ms each on an unindexed segment of a few thousand points."""
T = TypeVar("T")


@dataclass(slots=True)
class _Collection:
    shard: edge.EdgeShard
    dim: int
    sparse: bool


class EdgeVectorStore(VectorStore):
    """Embedded vector store on Qdrant Edge (cosine HNSW, dense ``"dense"`` + sparse ``"bm25"``).

    Args:
        root: Directory holding one sub-directory per collection.
        workers: Threads serving shard reads and writes.
        hnsw_m: HNSW graph degree for new collections.
        hnsw_ef_construct: HNSW build beam for new collections (build time grows with it).
        indexing_threshold_kb: Segment size from which ``optimize`` builds HNSW (Edge default
            10 000 KB ≈ 6 500 vectors of 384 floats; below it searches scan, which is exact).
        float16: Store new collections' dense vectors as float16: half the file and of the mapped
            pages that count in RSS (768 instead of 1,536 bytes a 384-dim vector), same search CPU;
            cosine scores move by < 0.001, recall@10 0.998 instead of 0.9999 (docs/vectors.md,
            memory). Existing collections keep the type they were created with.
    """

    supports_sparse = True

    def __init__(
        self,
        root: Path,
        *,
        workers: int = 2,
        hnsw_m: int = 16,
        hnsw_ef_construct: int = 100,
        indexing_threshold_kb: int | None = None,
        float16: bool = True,
    ) -> None:
        self.root = Path(root)
        self._workers = workers
        self._hnsw = edge.HnswIndexConfig(m=hnsw_m, ef_construct=hnsw_ef_construct, full_scan_threshold=10_000)
        self._optimizers = (
            None
            if indexing_threshold_kb is None
            else edge.EdgeOptimizersConfig(indexing_threshold=indexing_threshold_kb)
        )
        self._datatype = edge.VectorStorageDatatype.Float16 if float16 else None
        self._collections: dict[str, _Collection] = {}
        self._lock = asyncio.Lock()  # guards opening, creating and dropping shards
        self._pool: ThreadPoolExecutor | None = None
        self._optimizer: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="shoal-edge")
        self._optimizer = ThreadPoolExecutor(1, thread_name_prefix="shoal-edge-optimize")

    async def close(self) -> None:
        """Wait for a running optimize, then flush and close every shard."""
        pool, optimizer = self._pool, self._optimizer
        self._pool = self._optimizer = None
        for executor in (optimizer, pool):
            if executor is not None:
                await asyncio.to_thread(executor.shutdown, wait=True)
        collections, self._collections = list(self._collections.values()), {}
        for collection in collections:
            await asyncio.to_thread(_close_shard, collection.shard)

    async def ping(self) -> None:
        if self._pool is None:
            raise BackendError("vector store (edge) is not open")
        if not self.root.is_dir():
            raise BackendError(f"vector store (edge) directory {self.root} is missing")

    # -- collections ---------------------------------------------------------------------------

    async def create_collection(
        self, name: str, dim: int, *, sparse: bool = False, indexes: Mapping[str, IndexKind] | None = None
    ) -> None:
        """Create ``name`` if missing; an existing one must have the same ``dim`` and ``sparse``.

        ``indexes`` adds payload indexes (``{"user_id": "keyword"}``); ``_id`` (keyword) and
        ``ts`` (datetime) are always indexed.
        """
        async with self._lock:
            if name in self._collections or self._meta_path(name).exists():
                collection = await self._open_locked(name)
                if (collection.dim, collection.sparse) != (dim, sparse):
                    raise Conflict(f"collection {name!r} exists with dim={collection.dim} sparse={collection.sparse}")
            else:
                collection = await self._call(self._create_shard, name, dim, sparse)
                self._collections[name] = collection
        wanted: dict[str, IndexKind] = {codec.ID_KEY: "keyword", codec.TS_FIELD: "datetime", **(indexes or {})}
        for key, kind in wanted.items():
            await self.ensure_index(name, key, kind)

    async def ensure_index(self, name: str, key: str, kind: IndexKind) -> None:
        """Index payload ``key`` (``"ts"`` means the record timestamp) as ``kind``. Idempotent.

        Needed for ``scroll(order_by=key)`` (integer, float or datetime) and fast filters.
        """
        if kind not in _SCHEMAS:
            raise InvalidInput(f"index kind {kind!r}: expected one of {sorted(_SCHEMAS)}")
        shard = (await self._get(name)).shard
        path = codec.field_key(key)

        def create() -> None:
            current = shard.info().payload_schema.get(path)
            if current is None or current.data_type != _SCHEMAS[kind]:
                shard.update(edge.UpdateOperation.create_field_index(path, _SCHEMAS[kind]))

        await self._call(create)

    async def drop_collection(self, name: str) -> None:
        async with self._lock:
            collection = self._collections.pop(name, None)
            if collection is not None:
                # On the optimizer thread: a running optimize finishes before the shard closes.
                await self._call(_close_shard, collection.shard, executor=self._optimizer)
            await asyncio.to_thread(shutil.rmtree, self.root / name, ignore_errors=True)

    async def has_collection(self, name: str) -> bool:
        return name in self._collections or self._meta_path(name).exists()

    # -- writes --------------------------------------------------------------------------------

    async def upsert(self, name: str, points: Sequence[Point]) -> None:
        if not points:
            return
        collection = await self._get(name)
        edge_points = [codec.to_edge_point(p, collection.dim, collection.sparse) for p in points]
        await self._call(collection.shard.update, edge.UpdateOperation.upsert_points(edge_points))

    async def delete(self, name: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        shard = (await self._get(name)).shard
        uuids: list[Any] = [codec.point_uuid(i) for i in ids]
        await self._call(shard.update, edge.UpdateOperation.delete_points(uuids))

    async def delete_by_filter(self, name: str, filter: Filter) -> None:
        edge_filter = codec.to_edge(filter)
        if edge_filter is None:
            raise InvalidInput("delete_by_filter needs a non-empty filter")
        shard = (await self._get(name)).shard
        await self._call(shard.update, edge.UpdateOperation.delete_points_by_filter(edge_filter))

    async def optimize(self, name: str) -> None:
        """Build HNSW and payload indexes for points written since the last run.

        Safe to run beside searches and upserts; blocks the process's Python threads meanwhile
        (Edge 0.9 keeps the GIL), so schedule it after bursts, not per write.
        """
        shard = (await self._get(name)).shard
        await self._call(_optimize_shard, shard, executor=self._optimizer)

    # -- reads ---------------------------------------------------------------------------------

    async def retrieve(self, name: str, ids: Sequence[str], *, with_vectors: bool = False) -> list[Point]:
        if not ids:
            return []
        shard = (await self._get(name)).shard
        uuids: list[Any] = [codec.point_uuid(i) for i in ids]
        records = await self._call(shard.retrieve, uuids, True, with_vectors)
        found = {p.id: p for p in map(codec.to_point, records)}
        return [found[i] for i in dict.fromkeys(ids) if i in found]

    async def search(
        self,
        name: str,
        vector: Sequence[float],
        *,
        limit: int = 10,
        offset: int = 0,
        filter: Filter | None = None,
        exclude_ids: Sequence[str] = (),
        score_threshold: float | None = None,
        ef: int | None = None,
        with_vectors: bool = False,
        payload_keys: Sequence[str] | None = None,
    ) -> list[Hit]:
        collection = await self._get(name)
        request = _nearest(
            collection.dim,
            SearchRequest(vector, limit, filter, exclude_ids, ef, payload_keys),
            offset=offset,
            score_threshold=score_threshold,
            with_vectors=with_vectors,
        )
        return await self._query(collection, request)

    async def search_many(self, name: str, requests: Sequence[SearchRequest]) -> list[list[Hit]]:
        """The searches in chunks of at most ``BATCH_QUERIES``, one thread hop each.

        A chunk whose searches share one filter is a ``query_batch``: Edge scores them together in
        one pass over the segments (about half the CPU of separate searches). Searches with filters of
        their own (a user's exclusions, say) gain nothing from that pass, so a chunk of those runs
        them one ``query`` after another on the same hop. Edge 0.9 keeps the GIL while it searches
        either way (measured: a thread looping over ``query`` leaves the event loop's thread half
        the GIL), but between two queries the loop gets its turn: it stalls for one search at a time
        instead of for the whole chunk (32 filtered searches on a 9.5k-point segment: the loop's
        longest wait 22-30 ms as one ``query_batch``, 5-13 ms one ``query`` at a time)."""
        collection = await self._get(name)
        if len(requests) == 1:
            return [await self._query(collection, _nearest(collection.dim, requests[0]))]
        found: list[list[Hit]] = []
        for start in range(0, len(requests), BATCH_QUERIES):
            chunk = requests[start : start + BATCH_QUERIES]
            queries = [_nearest(collection.dim, r) for r in chunk]
            if _share_filter(chunk):
                results = await self._call(collection.shard.query_batch, edge.QueryBatchRequest(queries))
            else:
                results = await self._call(_query_each, collection.shard, queries)
            found.extend([codec.to_hit(s) for s in scored] for scored in results)
        return found

    async def search_sparse(
        self, name: str, sparse: SparseVector, *, limit: int = 10, filter: Filter | None = None
    ) -> list[Hit]:
        """Best points by BM25: dot product of ``sparse`` (query term weights) with the stored
        term frequencies, each term scaled by its IDF over the collection."""
        collection = await self._get(name, sparse=True)
        request = edge.QueryRequest(
            limit=limit,
            query=edge.Query.Nearest(codec.sparse(sparse), using=SPARSE),
            filter=codec.to_edge(filter),
            with_payload=True,
        )
        return await self._query(collection, request)

    async def hybrid(
        self,
        name: str,
        dense: Sequence[float],
        sparse: SparseVector,
        *,
        limit: int = 10,
        filter: Filter | None = None,
        weights: tuple[float, float] | None = None,
        prefetch: int | None = None,
        rrf_k: int = 60,
    ) -> list[Hit]:
        """Dense and BM25 candidates fused by reciprocal rank (weighted when ``weights`` is given).

        Args:
            weights: (dense, sparse) weights; Edge divides each list's ranks by its weight, so a
                weight above 1 pulls that list's items up.
            prefetch: Candidates taken from each list before fusion (default ``4 * limit``, ≥ 20).
            rrf_k: RRF rank offset; larger flattens the advantage of top ranks.

        Scores are ``Σ 1 / (rrf_k - 1 + rank / weight)`` over the lists (ranks from 1), comparable
        only within one result.
        """
        collection = await self._get(name, sparse=True)
        edge_filter = codec.to_edge(filter)
        depth = prefetch or max(4 * limit, 20)
        # The stub's ScoringQueryType omits the nested Rrf class the runtime expects.
        fusion: Any = edge.Fusion.Rrf(k=rrf_k, weights=list(weights) if weights else None)
        request = edge.QueryRequest(
            limit=limit,
            prefetches=[
                edge.Prefetch(
                    depth, query=edge.Query.Nearest(codec.dense(dense, collection.dim), using=DENSE), filter=edge_filter
                ),
                edge.Prefetch(depth, query=edge.Query.Nearest(codec.sparse(sparse), using=SPARSE), filter=edge_filter),
            ],
            query=fusion,
            with_payload=True,
        )
        return await self._query(collection, request)

    async def count(self, name: str, filter: Filter | None = None) -> int:
        shard = (await self._get(name)).shard
        return await self._call(shard.count, edge.CountRequest(exact=True, filter=codec.to_edge(filter)))

    async def scroll(
        self,
        name: str,
        *,
        filter: Filter | None = None,
        limit: int = 10,
        order_by: str | None = None,
        descending: bool = True,
    ) -> list[Point]:
        """Points matching ``filter``; ``order_by`` needs a numeric or datetime index on the key
        (``"ts"`` always has one)."""
        shard = (await self._get(name)).shard
        order = None
        if order_by is not None:
            direction = edge.Direction.Desc if descending else edge.Direction.Asc
            order = edge.OrderBy(codec.field_key(order_by), direction=direction)
        request = edge.ScrollRequest(limit=limit, filter=codec.to_edge(filter), with_payload=True, order_by=order)
        records, _next = await self._call(shard.scroll, request)
        return [codec.to_point(r) for r in records]

    # -- internals -----------------------------------------------------------------------------

    async def _query(self, collection: _Collection, request: edge.QueryRequest) -> list[Hit]:
        scored = await self._call(collection.shard.query, request)
        return [codec.to_hit(s) for s in scored]

    async def _get(self, name: str, *, sparse: bool = False) -> _Collection:
        collection = self._collections.get(name)
        if collection is None:
            async with self._lock:
                collection = await self._open_locked(name)
        if sparse and not collection.sparse:
            raise InvalidInput(f"collection {name!r} has no sparse vector (create it with sparse=True)")
        return collection

    async def _open_locked(self, name: str) -> _Collection:
        collection = self._collections.get(name)
        if collection is None:
            if not self._meta_path(name).exists():
                raise CollectionNotFound(f"vector collection {name!r} does not exist")
            collection = await self._call(self._load_shard, name)
            self._collections[name] = collection
        return collection

    def _meta_path(self, name: str) -> Path:
        return self.root / name / _META

    def _create_shard(self, name: str, dim: int, sparse: bool) -> _Collection:
        config = edge.EdgeConfig(
            vectors={DENSE: edge.EdgeVectorParams(size=dim, distance=edge.Distance.Cosine, datatype=self._datatype)},
            sparse_vectors={SPARSE: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf)} if sparse else None,
            hnsw_config=self._hnsw,
            optimizers=self._optimizers,
        )
        directory = self.root / name
        shutil.rmtree(directory, ignore_errors=True)  # leftovers of a create that died before its meta
        shard = edge.EdgeShard.create(str(directory / "shard"), config)
        # Written last: its presence marks a complete collection.
        self._meta_path(name).write_text(json.dumps({"dim": dim, "sparse": sparse}))
        return _Collection(shard, dim, sparse)

    def _load_shard(self, name: str) -> _Collection:
        meta = json.loads(self._meta_path(name).read_text())
        shard = edge.EdgeShard.load(str(self.root / name / "shard"))
        return _Collection(shard, int(meta["dim"]), bool(meta["sparse"]))

    async def _call(self, fn: Callable[..., T], *args: Any, executor: ThreadPoolExecutor | None = None) -> T:
        """Run a blocking shard call on the pool, translating Edge errors at this boundary."""
        pool = executor or self._pool
        if pool is None:
            raise BackendError("vector store (edge) is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(fn, *args))
        except ShoalError:
            raise
        except Exception as exc:  # Edge raises bare Exception for every failure
            raise _translate(exc) from exc


def _translate(exc: Exception) -> ShoalError:
    message = str(exc)
    if any(s in message for s in ("dimension error", "Wrong input", "Bad input", "Wrong usage", "Bad request")):
        return InvalidInput(f"vector store (edge): {message}")
    return BackendError(f"vector store (edge): {message}")


def _optimize_shard(shard: edge.EdgeShard) -> None:
    """Optimize, then flush: Edge 0.9 keeps the segments an optimize replaced — their files, mapped and
    resident, as large as the points they held — until the next flush (measured: 50k points, 215 → 124 MB
    RSS; docs/vectors.md, memory)."""
    if shard.optimize():
        shard.flush()


def _close_shard(shard: edge.EdgeShard) -> None:
    shard.flush()
    shard.close()


def _share_filter(requests: Sequence[SearchRequest]) -> bool:
    first = requests[0]
    return all(r.filter == first.filter and list(r.exclude_ids) == list(first.exclude_ids) for r in requests)


def _query_each(shard: edge.EdgeShard, queries: Sequence[edge.QueryRequest]) -> list[list[edge.ScoredPoint]]:
    return [shard.query(q) for q in queries]


def _nearest(
    dim: int,
    r: SearchRequest,
    *,
    offset: int = 0,
    score_threshold: float | None = None,
    with_vectors: bool = False,
) -> edge.QueryRequest:
    """The Edge query for one dense search (``search`` and each of ``search_many``)."""
    return edge.QueryRequest(
        limit=r.limit,
        offset=offset or None,
        query=edge.Query.Nearest(codec.dense(r.vector, dim), using=DENSE),
        filter=_filter(r.filter, r.exclude_ids),
        score_threshold=score_threshold,
        params=edge.SearchParams(hnsw_ef=r.ef) if r.ef else None,
        with_payload=_payload_selector(r.payload_keys),
        with_vector=[DENSE] if with_vectors else False,
    )


def _payload_selector(keys: Sequence[str] | None) -> Any:
    """Edge's ``with_payload`` for a hit's ``payload_keys`` (the stored id always comes along)."""
    if keys is None:
        return True
    return edge.PayloadSelector.Include(codec.stored_keys(keys))


def _filter(filter: Filter | None, exclude_ids: Sequence[str]) -> edge.Filter | None:
    return codec.to_edge(filter, exclude_ids=exclude_ids)
