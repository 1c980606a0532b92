"""Milvus (server, cluster or milvus-lite) through pymilvus's ``MilvusClient``.

URLs: ``milvus://host:19530`` (``milvuss://`` for TLS; ``?token=user:password``) or
``milvus+lite:///path/to/file.db`` for milvus-lite, an in-process engine over one file.

Each collection has ``id`` (VARCHAR primary key: the caller's id), ``dense`` (FLOAT_VECTOR, HNSW,
COSINE, M=16, efConstruction=64), ``payload`` (JSON) and ``ts`` (nullable INT64, epoch µs, so time
ranges and newest-first ordering are numeric). Collections are created with consistency level
``Strong``: a search sees every write acknowledged before it (read-your-write), at the cost of
waiting for the latest timestamp on a cluster. Milvus has no IDF-weighted sparse vectors here, so
``sparse=True`` raises ``ConfigurationError``. The client is synchronous; calls run on a small
thread pool.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from pymilvus import DataType, MilvusClient, MilvusException

from shoal.errors import BackendError, CollectionNotFound, ConfigurationError, Conflict, InvalidInput, ShoalError
from shoal.filters import Filter
from shoal.vectors.base import Hit, IndexKind, Point, VectorStore, payload_subset
from shoal.vectors.edge_filters import RESERVED, TS_FIELD, dense, rfc3339
from shoal.vectors.milvus_filters import epoch_us, literal, to_expression

T = TypeVar("T")
DENSE = "dense"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Milvus caps offset + limit of one query; ordered scrolls sort at most this many matches.
QUERY_WINDOW = 16_384
_ID_MAX = 512


def client_options(url: str) -> dict[str, Any]:
    """``MilvusClient`` arguments for a Shoal vector URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "milvus+lite":
        path = parts.netloc + parts.path
        if not path.endswith(".db"):
            raise ConfigurationError(f"milvus-lite needs a file ending in .db, got {path!r}")
        return {"uri": path}
    if scheme not in {"milvus", "milvuss"}:
        raise ConfigurationError(f"not a Milvus URL: {url!r}")
    options: dict[str, Any] = {
        "uri": f"{'https' if scheme == 'milvuss' else 'http'}://{parts.hostname or 'localhost'}:{parts.port or 19530}"
    }
    token = parse_qs(parts.query).get("token")
    if token:
        options["token"] = token[0]
    return options


def collection_name(name: str) -> str:
    """Milvus names allow letters, digits and ``_`` only: a readable part plus a hash of the name."""
    readable = re.sub(r"[^A-Za-z0-9_]", "_", name)[:40]
    return f"shoal_{readable}_{hashlib.sha1(name.encode()).hexdigest()[:10]}"


class MilvusVectorStore(VectorStore):
    """Vector collections in Milvus.

    Args:
        url: See the module docstring.
        workers: Threads running the synchronous client.
        hnsw_m: HNSW graph degree for new collections.
        hnsw_ef_construction: HNSW build beam for new collections.
        ef_search: Default HNSW search beam; ``search(ef=...)`` overrides.
    """

    supports_sparse = False

    def __init__(
        self,
        url: str,
        *,
        workers: int = 4,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 64,
        ef_search: int = 100,
    ) -> None:
        self.url = url
        self._options = client_options(url)
        self._workers = workers
        self._m = hnsw_m
        self._ef_construction = hnsw_ef_construction
        self._ef_search = ef_search
        self._client: MilvusClient | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._dims: dict[str, int] = {}

    async def open(self) -> None:
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="shoal-milvus")
        try:
            self._client = await self._call(functools.partial(MilvusClient, **self._options))
        except BackendError:
            self._pool.shutdown()
            self._pool = None
            raise

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self._call(client.close)
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True)

    async def ping(self) -> None:
        await self._call(self._api.list_collections)

    @property
    def _api(self) -> MilvusClient:
        if self._client is None:
            raise BackendError("vector store (milvus) is not open")
        return self._client

    # -- collections ---------------------------------------------------------------------------

    async def create_collection(
        self, name: str, dim: int, *, sparse: bool = False, indexes: Mapping[str, IndexKind] | None = None
    ) -> None:
        """Create ``name`` (Strong consistency, loaded) if missing; an existing one must have ``dim``.

        ``indexes`` is accepted and ignored: filters on the JSON payload are evaluated by scanning
        (Milvus can index JSON paths, but each needs a cast type; not done yet).
        """
        if sparse:
            raise ConfigurationError("Milvus here has no BM25 sparse vectors: use the edge or qdrant vector store")
        if await self.has_collection(name):
            existing = await self._dim(name)
            if existing != dim:
                raise Conflict(f"collection {name!r} exists with dim={existing}")
            return
        client = self._api
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=_ID_MAX)
        schema.add_field(DENSE, DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("payload", DataType.JSON)
        schema.add_field(TS_FIELD, DataType.INT64, nullable=True)
        index = client.prepare_index_params()
        index.add_index(
            DENSE,
            index_type="HNSW",
            metric_type="COSINE",
            params={"M": self._m, "efConstruction": self._ef_construction},
        )
        target = collection_name(name)
        await self._call(
            client.create_collection, target, schema=schema, index_params=index, consistency_level="Strong"
        )
        await self._call(client.load_collection, target)
        self._dims[name] = dim

    async def drop_collection(self, name: str) -> None:
        self._dims.pop(name, None)
        await self._call(self._api.drop_collection, collection_name(name))

    async def has_collection(self, name: str) -> bool:
        return bool(await self._call(self._api.has_collection, collection_name(name)))

    # -- writes --------------------------------------------------------------------------------

    async def upsert(self, name: str, points: Sequence[Point]) -> None:
        if not points:
            return
        dim = await self._dim(name)
        rows = [_row(p, dim) for p in points]
        await self._call(self._api.upsert, collection_name(name), rows)

    async def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            await self._dim(name)
            await self._call(self._api.delete, collection_name(name), ids=list(ids))

    async def delete_by_filter(self, name: str, filter: Filter) -> None:
        expression = to_expression(filter)
        if not expression:
            raise InvalidInput("delete_by_filter needs a non-empty filter")
        await self._dim(name)
        await self._call(self._api.delete, collection_name(name), filter=expression)

    # -- reads ---------------------------------------------------------------------------------

    async def retrieve(self, name: str, ids: Sequence[str], *, with_vectors: bool = False) -> list[Point]:
        if not ids:
            return []
        await self._dim(name)
        fields = ["id", "payload", TS_FIELD, *([DENSE] if with_vectors else [])]
        rows = await self._call(
            self._api.get, collection_name(name), ids=list(dict.fromkeys(ids)), output_fields=fields
        )
        found = {row["id"]: _point(row) for row in rows}
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
        dim = await self._dim(name)
        query = dense(vector, dim)
        depth = limit + offset
        results = await self._call(
            self._api.search,
            collection_name(name),
            data=[query],
            anns_field=DENSE,
            limit=depth,
            filter=to_expression(filter, exclude_ids=exclude_ids),
            output_fields=["payload", TS_FIELD, *([DENSE] if with_vectors else [])],
            search_params={"metric_type": "COSINE", "params": {"ef": max(ef or self._ef_search, depth)}},
        )
        hits = [
            Hit(
                id=found["id"],
                score=float(found["distance"]),
                payload=payload_subset(_payload(found["entity"]), payload_keys),
                vector=_vector(found["entity"].get(DENSE)),
            )
            for found in results[0]
        ]
        hits = hits[offset:]
        return hits if score_threshold is None else [h for h in hits if h.score >= score_threshold]

    async def optimize(self, name: str) -> None:
        """Seal the growing segments so they get their HNSW index (``flush``).

        Until then Milvus scans growing segments exhaustively: milvus-lite took ~180 ms a query over
        5,000 unsealed points and ~25 ms once flushed. A Milvus server rate-limits ``flush``; the
        pipeline's optimizer calls it once per burst, never per write.
        """
        await self._dim(name)
        await self._call(self._api.flush, collection_name(name))

    async def count(self, name: str, filter: Filter | None = None) -> int:
        await self._dim(name)
        rows = await self._call(
            self._api.query, collection_name(name), filter=to_expression(filter), output_fields=["count(*)"]
        )
        return int(rows[0]["count(*)"])

    async def scroll(
        self,
        name: str,
        *,
        filter: Filter | None = None,
        limit: int = 10,
        order_by: str | None = None,
        descending: bool = True,
    ) -> list[Point]:
        """Points matching ``filter``. Milvus queries have no ``ORDER BY``: with ``order_by``, at
        most ``QUERY_WINDOW`` matches that have the key are fetched and sorted here."""
        await self._dim(name)
        expression = to_expression(filter)
        fields = ["id", "payload", TS_FIELD]
        if order_by is None:
            rows = await self._call(
                self._api.query, collection_name(name), filter=expression, output_fields=fields, limit=limit
            )
            return [_point(row) for row in rows]
        has_key = f"{TS_FIELD} is not null" if order_by == TS_FIELD else f"exists payload[{literal(order_by)}]"
        expression = f"({expression}) and {has_key}" if expression else has_key
        rows = await self._call(
            self._api.query, collection_name(name), filter=expression, output_fields=fields, limit=QUERY_WINDOW
        )
        key: Callable[[dict[str, Any]], Any] = (
            (lambda row: row[TS_FIELD]) if order_by == TS_FIELD else (lambda row: row["payload"][order_by])
        )
        rows.sort(key=key, reverse=descending)
        return [_point(row) for row in rows[:limit]]

    # -- internals -----------------------------------------------------------------------------

    async def _dim(self, name: str) -> int:
        dim = self._dims.get(name)
        if dim is None:
            target = collection_name(name)
            if not await self._call(self._api.has_collection, target):
                raise CollectionNotFound(f"vector collection {name!r} does not exist")
            described = await self._call(self._api.describe_collection, target)
            dim = next(int(f["params"]["dim"]) for f in described["fields"] if f["name"] == DENSE)
            # A collection made by another process (or before a restart) must be loaded to be read.
            await self._call(self._api.load_collection, target)
            self._dims[name] = dim
        return dim

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking client call on the pool, translating Milvus errors at this boundary."""
        if self._pool is None:
            raise BackendError("vector store (milvus) is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        except ShoalError:
            raise
        except MilvusException as exc:
            raise BackendError(f"vector store (milvus): {exc.message}") from exc
        except (OSError, RuntimeError, ValueError) as exc:
            raise BackendError(f"vector store (milvus): {exc}") from exc


def _row(point: Point, dim: int) -> dict[str, Any]:
    if len(point.id.encode()) > _ID_MAX:
        raise InvalidInput(f"point id longer than {_ID_MAX} bytes")
    if point.vector is None:
        raise InvalidInput(f"point {point.id!r}: Milvus needs a dense vector on every point")
    if point.sparse is not None:
        raise InvalidInput(f"point {point.id!r} has a sparse vector but Milvus collections have none")
    clash = RESERVED.intersection(point.payload)
    if clash:
        raise InvalidInput(f"payload keys {sorted(clash)} are reserved")
    payload: dict[str, Any] = {}
    stamp = None
    for key, value in point.payload.items():
        if key == TS_FIELD:
            stamp = epoch_us(value)
        else:
            payload[key] = rfc3339(value) if isinstance(value, datetime) else value
    return {"id": point.id, DENSE: dense(point.vector, dim), "payload": payload, TS_FIELD: stamp}


def _payload(row: dict[str, Any]) -> dict[str, Any]:
    payload = dict(row.get("payload") or {})
    stamp = row.get(TS_FIELD)
    if stamp is not None:
        payload[TS_FIELD] = rfc3339(_EPOCH + timedelta(microseconds=int(stamp)))
    return payload


def _vector(value: Any) -> list[float] | None:
    return None if value is None else [float(x) for x in value]


def _point(row: dict[str, Any]) -> Point:
    return Point(id=row["id"], vector=_vector(row.get(DENSE)), payload=_payload(row))
