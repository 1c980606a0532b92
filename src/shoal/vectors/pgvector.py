"""PostgreSQL + pgvector: one table per collection, HNSW over cosine distance, payload in JSONB.

URLs: ``pgvector://user[:password]@host:port/db`` or ``postgresql://…`` (``postgresql+asyncpg://`` is
accepted too); ``?schema=name`` keeps Shoal's tables in that schema (created if missing, default
``public``); other query parameters go to asyncpg (e.g. ``?host=/run/postgresql`` for a socket).

Each collection is a table ``(id text primary key, embedding vector(dim), payload jsonb, ts
timestamptz)`` with an HNSW index (``vector_cosine_ops``, m=16, ef_construction=64); the registry table
``shoal_vector_collections`` maps names to tables. Every statement commits on return, so an upsert is
searchable by any connection afterwards (read-your-write). Filtered searches turn on
``hnsw.iterative_scan = relaxed_order`` so a selective filter still fills ``limit``; results are
re-sorted in SQL because relaxed order can swap near-equal neighbours. pgvector has no IDF-weighted
sparse vectors, so ``sparse=True`` raises ``ConfigurationError``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import numpy as np
from pgvector import Vector
from pgvector.asyncpg import register_vector

from shoal.errors import BackendError, CollectionNotFound, ConfigurationError, Conflict, InvalidInput, ShoalError
from shoal.filters import Filter
from shoal.vectors.base import Hit, IndexKind, Point, VectorStore, payload_subset
from shoal.vectors.edge_filters import RESERVED, TS_FIELD, dense, rfc3339
from shoal.vectors.sql_filters import TRY_TIMESTAMPTZ_DDL, SqlFilter

REGISTRY = "shoal_vector_collections"
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class _Collection:
    table: str  # quoted, schema-qualified
    dim: int


def connection_options(url: str) -> tuple[str, str]:
    """(asyncpg DSN, schema) for a Shoal vector URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"pgvector", "postgresql", "postgres", "postgresql+asyncpg"}:
        raise ConfigurationError(f"not a pgvector URL: {url!r}")
    query = dict(parse_qsl(parts.query))
    schema = query.pop("schema", "public")
    if not _SCHEMA_NAME.match(schema):
        raise ConfigurationError(f"pgvector schema {schema!r}: use letters, digits and _")
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(query), ""))
    return dsn, schema


def _table_name(name: str) -> str:
    readable = re.sub(r"[^a-z0-9_]", "_", name.lower())[:32]
    return f"vec_{readable}_{hashlib.sha1(name.encode()).hexdigest()[:10]}"


class PgVectorStore(VectorStore):
    """Vector collections as pgvector tables.

    Args:
        url: See the module docstring.
        pool_size: Most connections held.
        hnsw_m: HNSW graph degree for new collections.
        hnsw_ef_construction: HNSW build beam for new collections.
        ef_search: Default ``hnsw.ef_search`` (pgvector's default is 40); ``search(ef=...)`` overrides.
    """

    supports_sparse = False

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 64,
        ef_search: int = 100,
    ) -> None:
        self.url = url
        self._dsn, self.schema = connection_options(url)
        self._pool_size = pool_size
        self._m = hnsw_m
        self._ef_construction = hnsw_ef_construction
        self._ef_search = ef_search
        self._pool: asyncpg.Pool | None = None
        self._collections: dict[str, _Collection] = {}

    async def open(self) -> None:
        try:
            conn = await asyncpg.connect(self._dsn)
        except (OSError, asyncpg.PostgresError) as exc:
            raise BackendError(f"vector store (pgvector): cannot connect: {exc}") from exc
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await conn.execute(f'SET search_path TO "{self.schema}", public')
            await conn.execute(TRY_TIMESTAMPTZ_DDL)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {REGISTRY} (name text PRIMARY KEY, tbl text NOT NULL, dim int NOT NULL)"
            )
        except asyncpg.PostgresError as exc:
            raise BackendError(f"vector store (pgvector): cannot prepare schema {self.schema!r}: {exc}") from exc
        finally:
            await conn.close()
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._pool_size,
                init=register_vector,
                # A startup setting, so the pool's RESET ALL on release keeps it.
                server_settings={"search_path": f'"{self.schema}", public'},
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise BackendError(f"vector store (pgvector): cannot connect: {exc}") from exc

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def ping(self) -> None:
        await self._fetchval("SELECT 1")

    # -- collections ---------------------------------------------------------------------------

    async def create_collection(
        self, name: str, dim: int, *, sparse: bool = False, indexes: Mapping[str, IndexKind] | None = None
    ) -> None:
        """Create the table and its HNSW index if missing; an existing one must have ``dim``.

        ``ts`` always has a b-tree index; ``indexes`` is accepted and ignored (payload filters run
        inside the HNSW iterative scan, or as a scan of the rows the planner picks).
        """
        if sparse:
            raise ConfigurationError("pgvector has no BM25 sparse vectors: use the edge or qdrant vector store")
        if await self.has_collection(name):
            existing = await self._get(name)
            if existing.dim != dim:
                raise Conflict(f"collection {name!r} exists with dim={existing.dim}")
            return
        table = _table_name(name)
        async with self._acquire() as conn, conn.transaction():
            # The advisory lock serialises concurrent creators across processes.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"shoal:{table}")
            await conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{table}" (id text PRIMARY KEY, embedding vector({int(dim)}), '
                "payload jsonb NOT NULL DEFAULT '{}', ts timestamptz)"
            )
            await conn.execute(
                f'CREATE INDEX IF NOT EXISTS "{table}_hnsw" ON "{table}" USING hnsw (embedding vector_cosine_ops) '
                f"WITH (m = {int(self._m)}, ef_construction = {int(self._ef_construction)})"
            )
            await conn.execute(f'CREATE INDEX IF NOT EXISTS "{table}_ts" ON "{table}" (ts)')
            await conn.execute(
                f"INSERT INTO {REGISTRY} (name, tbl, dim) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                name,
                table,
                dim,
            )
        self._collections[name] = _Collection(f'"{self.schema}"."{table}"', dim)

    async def drop_collection(self, name: str) -> None:
        self._collections.pop(name, None)
        async with self._acquire() as conn, conn.transaction():
            table = await conn.fetchval(f"DELETE FROM {REGISTRY} WHERE name = $1 RETURNING tbl", name)
            if table is not None:
                await conn.execute(f'DROP TABLE IF EXISTS "{table}"')

    async def has_collection(self, name: str) -> bool:
        return bool(await self._fetchval(f"SELECT EXISTS (SELECT 1 FROM {REGISTRY} WHERE name = $1)", name))

    # -- writes --------------------------------------------------------------------------------

    async def upsert(self, name: str, points: Sequence[Point]) -> None:
        if not points:
            return
        collection = await self._get(name)
        rows = [_row(p, collection.dim) for p in points]
        ids, vectors, payloads, stamps = (list(column) for column in zip(*rows, strict=True))
        await self._execute(
            f"INSERT INTO {collection.table} (id, embedding, payload, ts) "
            "SELECT * FROM unnest($1::text[], $2::vector[], $3::jsonb[], $4::timestamptz[]) "
            "ON CONFLICT (id) DO UPDATE SET "
            "embedding = excluded.embedding, payload = excluded.payload, ts = excluded.ts",
            ids,
            vectors,
            payloads,
            stamps,
        )

    async def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            collection = await self._get(name)
            await self._execute(f"DELETE FROM {collection.table} WHERE id = ANY($1::text[])", list(ids))

    async def delete_by_filter(self, name: str, filter: Filter) -> None:
        if filter.is_empty():
            raise InvalidInput("delete_by_filter needs a non-empty filter")
        collection = await self._get(name)
        sql = SqlFilter()
        await self._execute(f"DELETE FROM {collection.table} WHERE {sql.where(filter)}", *sql.params)

    async def optimize(self, name: str) -> None:
        """Refresh planner statistics (HNSW itself is maintained on every insert)."""
        collection = await self._get(name)
        await self._execute(f"ANALYZE {collection.table}")

    # -- reads ---------------------------------------------------------------------------------

    async def retrieve(self, name: str, ids: Sequence[str], *, with_vectors: bool = False) -> list[Point]:
        if not ids:
            return []
        collection = await self._get(name)
        vector = "embedding" if with_vectors else "NULL::vector"
        rows = await self._fetch(
            f"SELECT id, payload, ts, {vector} AS embedding FROM {collection.table} WHERE id = ANY($1::text[])",
            list(ids),
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
        collection = await self._get(name)
        query = np.asarray(dense(vector, collection.dim), dtype=np.float32)
        sql = SqlFilter(first_param=3)
        where = sql.where(filter, exclude_ids=exclude_ids)
        threshold = "TRUE" if score_threshold is None else f"1 - distance >= {float(score_threshold)!r}"
        statement = (
            f"WITH nearest AS MATERIALIZED ("
            f"SELECT id, payload, ts, {'embedding' if with_vectors else 'NULL::vector AS embedding'}, "
            f"embedding <=> $1 AS distance FROM {collection.table} "
            f"WHERE embedding IS NOT NULL AND {where} ORDER BY embedding <=> $1 LIMIT $2) "
            f"SELECT id, payload, ts, embedding, 1 - distance AS score FROM nearest "
            f"WHERE {threshold} ORDER BY distance, id OFFSET {int(offset)}"
        )
        ef_search = max(ef or self._ef_search, limit + offset)
        async with self._acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL hnsw.ef_search = {int(min(ef_search, 1000))}")
            if where != "TRUE":
                await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            rows = await self._guard(conn.fetch(statement, query, limit + offset, *sql.params))
        return [
            Hit(
                id=row["id"],
                score=float(row["score"]),
                payload=payload_subset(_payload(row), payload_keys),
                vector=_vector(row["embedding"]),
            )
            for row in rows
        ]

    async def count(self, name: str, filter: Filter | None = None) -> int:
        collection = await self._get(name)
        sql = SqlFilter()
        return int(
            await self._fetchval(f"SELECT count(*) FROM {collection.table} WHERE {sql.where(filter)}", *sql.params)
        )

    async def scroll(
        self,
        name: str,
        *,
        filter: Filter | None = None,
        limit: int = 10,
        order_by: str | None = None,
        descending: bool = True,
    ) -> list[Point]:
        """Points matching ``filter``; with ``order_by`` only points that have the key, like Qdrant."""
        collection = await self._get(name)
        sql = SqlFilter(first_param=2)
        where = sql.where(filter)
        order = "id"
        if order_by is not None:
            key = sql.order_key(order_by)
            where = f"{where} AND {key} IS NOT NULL"
            order = f"{key} {'DESC' if descending else 'ASC'}, id"
        rows = await self._fetch(
            f"SELECT id, payload, ts, NULL::vector AS embedding FROM {collection.table} "
            f"WHERE {where} ORDER BY {order} LIMIT $1",
            limit,
            *sql.params,
        )
        return [_point(row) for row in rows]

    # -- internals -----------------------------------------------------------------------------

    async def _get(self, name: str) -> _Collection:
        collection = self._collections.get(name)
        if collection is None:
            row = await self._fetchrow(f"SELECT tbl, dim FROM {REGISTRY} WHERE name = $1", name)
            if row is None:
                raise CollectionNotFound(f"vector collection {name!r} does not exist")
            collection = self._collections[name] = _Collection(f'"{self.schema}"."{row["tbl"]}"', int(row["dim"]))
        return collection

    def _acquire(self) -> Any:
        if self._pool is None:
            raise BackendError("vector store (pgvector) is not open")
        return self._pool.acquire()

    async def _execute(self, statement: str, *args: Any) -> None:
        async with self._acquire() as conn:
            await self._guard(conn.execute(statement, *args))

    async def _fetch(self, statement: str, *args: Any) -> list[asyncpg.Record]:
        async with self._acquire() as conn:
            rows: list[asyncpg.Record] = await self._guard(conn.fetch(statement, *args))
            return rows

    async def _fetchrow(self, statement: str, *args: Any) -> asyncpg.Record | None:
        async with self._acquire() as conn:
            row: asyncpg.Record | None = await self._guard(conn.fetchrow(statement, *args))
            return row

    async def _fetchval(self, statement: str, *args: Any) -> Any:
        async with self._acquire() as conn:
            return await self._guard(conn.fetchval(statement, *args))

    @staticmethod
    async def _guard(pending: Any) -> Any:
        """Await a driver call, translating its errors at this boundary."""
        try:
            return await pending
        except ShoalError:
            raise
        except (asyncpg.DataError, asyncpg.InvalidTextRepresentationError) as exc:
            raise InvalidInput(f"vector store (pgvector): {exc}") from exc
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise BackendError(f"vector store (pgvector): {exc}") from exc


def _row(point: Point, dim: int) -> tuple[str, Vector | None, str, datetime | None]:
    clash = RESERVED.intersection(point.payload)
    if clash:
        raise InvalidInput(f"payload keys {sorted(clash)} are reserved")
    payload: dict[str, Any] = {}
    stamp = None
    for key, value in point.payload.items():
        if key == TS_FIELD:
            stamp = datetime.fromisoformat(rfc3339(value))
        else:
            payload[key] = rfc3339(value) if isinstance(value, datetime) else value
    # Wrapped: asyncpg would read a bare ndarray inside vector[] as one more array dimension.
    vector = None if point.vector is None else Vector(dense(point.vector, dim))
    if point.sparse is not None:
        raise InvalidInput(f"point {point.id!r} has a sparse vector but pgvector collections have none")
    return point.id, vector, json.dumps(payload), stamp


def _payload(row: asyncpg.Record) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(row["payload"])
    if row["ts"] is not None:
        payload[TS_FIELD] = rfc3339(row["ts"])
    return payload


def _vector(value: Vector | None) -> list[float] | None:
    return None if value is None else [float(x) for x in value.to_numpy()]


def _point(row: asyncpg.Record) -> Point:
    return Point(id=row["id"], vector=_vector(row["embedding"]), payload=_payload(row))
