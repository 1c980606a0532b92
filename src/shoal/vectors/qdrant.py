"""Qdrant server or cluster through qdrant-client's async API (also its in-process local mode).

URLs: ``qdrant://host:6333`` (HTTP), ``qdrants://host:6333`` (HTTPS), ``http(s)://host:6333``, with an
optional ``?api_key=...``; ``qdrant+local://:memory:`` or ``qdrant+local:///path`` run qdrant-client's
local mode in-process (same API, exact search, no payload indexes) — what the tests use.

Points use Qdrant Edge's layout (``qdrant_filters``), so Edge snapshots move to a server unchanged.
Writes pass ``wait=True``: an upsert returns once the point is searchable (read-your-write).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from shoal.errors import BackendError, CollectionNotFound, ConfigurationError, Conflict, InvalidInput, ShoalError
from shoal.filters import Filter
from shoal.vectors import qdrant_filters as codec
from shoal.vectors.base import Hit, IndexKind, Point, SparseVector, VectorStore
from shoal.vectors.edge_filters import ID_KEY, TS_FIELD, field_key, stored_keys

_SCHEMAS: dict[str, models.PayloadSchemaType] = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "float": models.PayloadSchemaType.FLOAT,
    "bool": models.PayloadSchemaType.BOOL,
    "datetime": models.PayloadSchemaType.DATETIME,
    "text": models.PayloadSchemaType.TEXT,
    "uuid": models.PayloadSchemaType.UUID,
}
_DRIVER_ERRORS = (UnexpectedResponse, ResponseHandlingException, ValueError, RuntimeError, OSError)


@dataclass(frozen=True, slots=True)
class _Collection:
    dim: int
    sparse: bool


def client_options(url: str) -> dict[str, Any]:
    """qdrant-client constructor arguments for a Shoal vector URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "qdrant+local":
        where = parts.netloc + parts.path
        if where in {"", ":memory:"}:
            return {"location": ":memory:"}
        return {"path": where}
    if scheme not in {"qdrant", "qdrants", "http", "https"}:
        raise ConfigurationError(f"not a Qdrant URL: {url!r}")
    https = scheme in {"qdrants", "https"}
    query = parse_qs(parts.query)
    options: dict[str, Any] = {
        "url": f"{'https' if https else 'http'}://{parts.hostname or 'localhost'}:{parts.port or 6333}{parts.path}",
        "port": None,
    }
    if "api_key" in query:
        options["api_key"] = query["api_key"][0]
    return options


class QdrantVectorStore(VectorStore):
    """Qdrant collections with a cosine ``"dense"`` vector and an optional BM25 ``"bm25"`` sparse vector.

    Args:
        url: See the module docstring.
        client: An open client to use instead of making one (then it is not closed here).
        hnsw_m: HNSW graph degree for new collections.
        hnsw_ef_construct: HNSW build beam for new collections.
    """

    supports_sparse = True

    def __init__(
        self,
        url: str,
        *,
        client: AsyncQdrantClient | None = None,
        hnsw_m: int = 16,
        hnsw_ef_construct: int = 100,
    ) -> None:
        self.url = url
        self._options = client_options(url)
        self._local = "url" not in self._options
        self._owned = client is None
        self._client = client
        self._hnsw = models.HnswConfigDiff(m=hnsw_m, ef_construct=hnsw_ef_construct)
        self._collections: dict[str, _Collection] = {}

    async def open(self) -> None:
        if self._client is None:
            self._client = AsyncQdrantClient(**self._options)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._owned:
            await client.close()

    async def ping(self) -> None:
        await self._call(self._api.get_collections())

    @property
    def _api(self) -> AsyncQdrantClient:
        if self._client is None:
            raise BackendError("vector store (qdrant) is not open")
        return self._client

    # -- collections ---------------------------------------------------------------------------

    async def create_collection(
        self, name: str, dim: int, *, sparse: bool = False, indexes: Mapping[str, IndexKind] | None = None
    ) -> None:
        """Create ``name`` if missing; an existing one must have the same ``dim`` and ``sparse``.

        On a server, ``_id`` (keyword), ``ts`` (datetime) and ``indexes`` get payload indexes;
        local mode has none (it scans, which is exact).
        """
        if await self.has_collection(name):
            existing = await self._get(name)
            if (existing.dim, existing.sparse) != (dim, sparse):
                raise Conflict(f"collection {name!r} exists with dim={existing.dim} sparse={existing.sparse}")
        else:
            await self._call(
                self._api.create_collection(
                    name,
                    vectors_config={codec.DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)},
                    sparse_vectors_config=(
                        {codec.SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)} if sparse else None
                    ),
                    hnsw_config=self._hnsw,
                )
            )
            self._collections[name] = _Collection(dim, sparse)
        wanted: dict[str, IndexKind] = {ID_KEY: "keyword", TS_FIELD: "datetime", **(indexes or {})}
        for key, kind in wanted.items():
            await self.ensure_index(name, key, kind)

    async def ensure_index(self, name: str, key: str, kind: IndexKind) -> None:
        """Index payload ``key`` as ``kind`` on a server (idempotent); a no-op in local mode."""
        if kind not in _SCHEMAS:
            raise InvalidInput(f"index kind {kind!r}: expected one of {sorted(_SCHEMAS)}")
        if self._local:
            return  # local mode warns that indexes have no effect; its scans need none
        await self._call(self._api.create_payload_index(name, field_key(key), _SCHEMAS[kind], wait=True))

    async def drop_collection(self, name: str) -> None:
        self._collections.pop(name, None)
        if await self.has_collection(name):
            await self._call(self._api.delete_collection(name))

    async def has_collection(self, name: str) -> bool:
        return bool(await self._call(self._api.collection_exists(name)))

    # -- writes --------------------------------------------------------------------------------

    async def upsert(self, name: str, points: Sequence[Point]) -> None:
        if not points:
            return
        collection = await self._get(name)
        structs = [codec.to_struct(p, collection.dim, collection.sparse) for p in points]
        await self._call(self._api.upsert(name, structs, wait=True))

    async def delete(self, name: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        await self._get(name)
        selector = models.PointIdsList(points=[codec.point_id(i) for i in ids])
        await self._call(self._api.delete(name, selector, wait=True))

    async def delete_by_filter(self, name: str, filter: Filter) -> None:
        qdrant_filter = codec.to_qdrant(filter)
        if qdrant_filter is None:
            raise InvalidInput("delete_by_filter needs a non-empty filter")
        await self._get(name)
        await self._call(self._api.delete(name, models.FilterSelector(filter=qdrant_filter), wait=True))

    # -- reads ---------------------------------------------------------------------------------

    async def retrieve(self, name: str, ids: Sequence[str], *, with_vectors: bool = False) -> list[Point]:
        if not ids:
            return []
        await self._get(name)
        records = await self._call(
            self._api.retrieve(
                name,
                [codec.point_id(i) for i in dict.fromkeys(ids)],
                with_payload=True,
                with_vectors=[codec.DENSE] if with_vectors else False,
            )
        )
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
        response = await self._call(
            self._api.query_points(
                name,
                query=codec.dense(vector, collection.dim),
                using=codec.DENSE,
                query_filter=codec.to_qdrant(filter, exclude_ids=exclude_ids),
                limit=limit,
                offset=offset or None,
                score_threshold=score_threshold,
                search_params=models.SearchParams(hnsw_ef=ef) if ef and not self._local else None,  # local: exact
                with_payload=True if payload_keys is None else stored_keys(payload_keys),
                with_vectors=[codec.DENSE] if with_vectors else False,
            )
        )
        return [codec.to_hit(p) for p in response.points]

    async def search_sparse(
        self, name: str, sparse: SparseVector, *, limit: int = 10, filter: Filter | None = None
    ) -> list[Hit]:
        """Best points by BM25 (query term weights · stored term frequencies, scaled by IDF)."""
        await self._get(name, sparse=True)
        response = await self._call(
            self._api.query_points(
                name,
                query=codec.sparse(sparse),
                using=codec.SPARSE,
                query_filter=codec.to_qdrant(filter),
                limit=limit,
                with_payload=True,
            )
        )
        return [codec.to_hit(p) for p in response.points]

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
        """Dense and BM25 candidates fused by (weighted) reciprocal rank, as ``EdgeVectorStore.hybrid``."""
        collection = await self._get(name, sparse=True)
        qdrant_filter = codec.to_qdrant(filter)
        depth = prefetch or max(4 * limit, 20)
        response = await self._call(
            self._api.query_points(
                name,
                prefetch=[
                    models.Prefetch(
                        query=codec.dense(dense, collection.dim), using=codec.DENSE, filter=qdrant_filter, limit=depth
                    ),
                    models.Prefetch(query=codec.sparse(sparse), using=codec.SPARSE, filter=qdrant_filter, limit=depth),
                ],
                query=models.RrfQuery(rrf=models.Rrf(k=rrf_k, weights=list(weights) if weights else None)),
                limit=limit,
                with_payload=True,
            )
        )
        return [codec.to_hit(p) for p in response.points]

    async def count(self, name: str, filter: Filter | None = None) -> int:
        await self._get(name)
        result = await self._call(self._api.count(name, count_filter=codec.to_qdrant(filter), exact=True))
        return int(result.count)

    async def scroll(
        self,
        name: str,
        *,
        filter: Filter | None = None,
        limit: int = 10,
        order_by: str | None = None,
        descending: bool = True,
    ) -> list[Point]:
        """Points matching ``filter``; on a server ``order_by`` needs a numeric or datetime index."""
        await self._get(name)
        order = None
        if order_by is not None:
            direction = models.Direction.DESC if descending else models.Direction.ASC
            order = models.OrderBy(key=field_key(order_by), direction=direction)
        records, _next = await self._call(
            self._api.scroll(
                name, scroll_filter=codec.to_qdrant(filter), limit=limit, order_by=order, with_payload=True
            )
        )
        return [codec.to_point(r) for r in records]

    # -- internals -----------------------------------------------------------------------------

    async def _get(self, name: str, *, sparse: bool = False) -> _Collection:
        collection = self._collections.get(name)
        if collection is None:
            if not await self.has_collection(name):
                raise CollectionNotFound(f"vector collection {name!r} does not exist")
            info = await self._call(self._api.get_collection(name))
            vectors: Any = info.config.params.vectors
            dim = vectors[codec.DENSE].size if isinstance(vectors, dict) else vectors.size
            has_sparse = codec.SPARSE in (info.config.params.sparse_vectors or {})
            collection = self._collections[name] = _Collection(int(dim), has_sparse)
        if sparse and not collection.sparse:
            raise InvalidInput(f"collection {name!r} has no sparse vector (create it with sparse=True)")
        return collection

    async def _call(self, pending: Any) -> Any:
        """Await a client call, translating driver errors at this boundary."""
        try:
            return await pending
        except ShoalError:
            raise
        except UnexpectedResponse as exc:
            if exc.status_code == 404:
                raise CollectionNotFound(f"vector store (qdrant): {exc}") from exc
            if exc.status_code in {400, 422}:
                raise InvalidInput(f"vector store (qdrant): {exc}") from exc
            raise BackendError(f"vector store (qdrant): {exc}") from exc
        except _DRIVER_ERRORS as exc:
            raise BackendError(f"vector store (qdrant): {exc}") from exc
