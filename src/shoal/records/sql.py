"""The record store on SQLAlchemy (async): SQLite (aiosqlite) by default, PostgreSQL (asyncpg) at scale."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shoal.errors import BackendError, CollectionNotFound
from shoal.records.base import Collection, CollectionStats, Record, RecordStore, Status
from shoal.records.migrations import check_current, ensure_current, migrate, upgrade_engine
from shoal.records.schema import collections as _collections
from shoal.records.schema import make_engine
from shoal.records.schema import records as _records

__all__ = ["SqlRecordStore", "check_current", "migrate"]

# ids per IN (...) statement: far below SQLite's and asyncpg's bound-parameter limits
_CHUNK = 1000
_RECORD_COLUMNS = [c.name for c in _records.columns]
_COLLECTION_COLUMNS = [c.name for c in _collections.columns]


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _record(row: sa.Row[Any]) -> Record:
    values = row._asdict()
    values["status"] = Status(values["status"])
    return Record(**values)


def _collection(row: sa.Row[Any]) -> Collection:
    return Collection(**row._asdict())


class SqlRecordStore(RecordStore):
    """Collections and records in SQL.

    Args:
        url: ``sqlite+aiosqlite:///path/shoal.db`` (migrated on open) or ``postgresql+asyncpg://...``
            (checked on open: run ``shoal migrate`` after an upgrade).
        auto_migrate: migrate on open; defaults to True for SQLite and False for PostgreSQL.
    """

    def __init__(self, url: str, *, auto_migrate: bool | None = None) -> None:
        self._url = url
        self._dialect = make_url(url).get_backend_name()
        self._auto_migrate = self._dialect == "sqlite" if auto_migrate is None else auto_migrate
        self._engine: AsyncEngine | None = None
        upsert = self._insert(_records)
        # Built once: the statement is the same for every batch (only its parameters change), and
        # building ``excluded``'s columns cost ~0.7 ms a call, half of a small batch's upsert.
        self._upsert_records = upsert.on_conflict_do_update(
            index_elements=[_records.c.collection, _records.c.id],
            set_={name: upsert.excluded[name] for name in _RECORD_COLUMNS if name not in {"collection", "id"}},
        )

    # -- lifecycle ---------------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, then migrate (SQLite) or check the schema is current (PostgreSQL).

        Raises:
            ConfigurationError: the schema is behind (``shoal migrate`` fixes it) or ahead of the code.
            BackendError: the database is unreachable.
        """
        engine = make_engine(self._url)
        try:
            if self._auto_migrate:
                await upgrade_engine(engine)
            else:
                await ensure_current(engine)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine

    async def close(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()

    async def ping(self) -> None:
        async with self._begin() as conn:
            await conn.execute(sa.select(1))

    @contextlib.asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; driver errors leave as ``BackendError``."""
        if self._engine is None:
            raise BackendError("record store is not open")
        try:
            async with self._engine.begin() as conn:
                yield conn
        except (SQLAlchemyError, OSError) as exc:
            # the driver's message, without the statement and its (possibly thousands of) parameters
            cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
            raise BackendError(f"record store ({self._dialect}): {cause}") from exc

    def _insert(self, table: sa.Table) -> sqlite.Insert | postgresql.Insert:
        return postgresql.insert(table) if self._dialect == "postgresql" else sqlite.insert(table)

    # -- collections -------------------------------------------------------------------------------
    async def create_collection(self, collection: Collection) -> bool:
        values = {name: getattr(collection, name) for name in _COLLECTION_COLUMNS}
        stmt = self._insert(_collections).values(values).on_conflict_do_nothing().returning(_collections.c.name)
        async with self._begin() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def get_collection(self, name: str) -> Collection | None:
        async with self._begin() as conn:
            row = (await conn.execute(sa.select(_collections).where(_collections.c.name == name))).first()
        return _collection(row) if row is not None else None

    async def list_collections(self) -> list[Collection]:
        async with self._begin() as conn:
            rows = await conn.execute(sa.select(_collections).order_by(_collections.c.name))
            return [_collection(row) for row in rows]

    async def update_collection(self, collection: Collection) -> None:
        """Replace every field but the name and ``created_at``.

        Raises:
            CollectionNotFound: no collection has that name.
        """
        values = {name: getattr(collection, name) for name in _COLLECTION_COLUMNS if name not in {"name", "created_at"}}
        stmt = (
            sa.update(_collections)
            .where(_collections.c.name == collection.name)
            .values(values)
            .returning(_collections.c.name)
        )
        async with self._begin() as conn:
            if (await conn.execute(stmt)).first() is None:
                raise CollectionNotFound(collection.name)

    async def delete_collection(self, name: str) -> bool:
        # records go with it: ON DELETE CASCADE (SQLite enforces it because every connection turns
        # foreign keys on)
        stmt = sa.delete(_collections).where(_collections.c.name == name).returning(_collections.c.name)
        async with self._begin() as conn:
            return (await conn.execute(stmt)).first() is not None

    # -- records -----------------------------------------------------------------------------------
    async def upsert(self, records: Sequence[Record]) -> None:
        """Insert or replace records by (collection, id) in one batched statement.

        ``updated_at`` is set to the time of the write (the caller's value is ignored). Within one
        batch the last record of a given key wins.

        Raises:
            CollectionNotFound: a record names a collection that does not exist.
        """
        if not records:
            return
        now = datetime.now(UTC)
        # last one wins, as sequential upserts would; one statement must not touch a row twice
        rows = {
            (r.collection, r.id): {name: getattr(r, name) for name in _RECORD_COLUMNS} | {"updated_at": now}
            for r in records
        }
        async with self._begin() as conn:
            try:
                await conn.execute(self._upsert_records, list(rows.values()))
            except IntegrityError as exc:
                missing = sorted({r.collection for r in records})
                raise CollectionNotFound(f"no collection among {missing} accepts these records") from exc

    async def get(self, collection: str, ids: Sequence[str]) -> list[Record]:
        """The records that exist, in the order of ``ids``."""
        found: dict[str, Record] = {}
        async with self._begin() as conn:
            for chunk in _chunks(ids):
                stmt = sa.select(_records).where(_records.c.collection == collection, _records.c.id.in_(chunk))
                for row in await conn.execute(stmt):
                    record = _record(row)
                    found[record.id] = record
        return [found[i] for i in dict.fromkeys(ids) if i in found]

    async def delete(self, collection: str, ids: Sequence[str]) -> int:
        """Delete by id; return how many existed."""
        deleted = 0
        async with self._begin() as conn:
            for chunk in _chunks(ids):
                stmt = (
                    sa.delete(_records)
                    .where(_records.c.collection == collection, _records.c.id.in_(chunk))
                    .returning(_records.c.id)
                )
                deleted += len((await conn.execute(stmt)).all())
        return deleted

    async def versions(self, collection: str, ids: Sequence[str]) -> dict[str, datetime | None]:
        found: dict[str, datetime | None] = {}
        if not ids:
            return found
        async with self._begin() as conn:
            for chunk in _chunks(ids):
                stmt = sa.select(_records.c.id, _records.c.updated_at).where(
                    _records.c.collection == collection, _records.c.id.in_(chunk)
                )
                found.update((row.id, row.updated_at) for row in await conn.execute(stmt))
        return found

    async def mark_embedded(
        self, collection: str, versions: Mapping[str, datetime], *, model: str, dim: int, at: datetime
    ) -> list[str]:
        """One ``UPDATE … WHERE id IN (…) AND (id, updated_at) IN (…) RETURNING id`` per chunk of 1000
        records (the plain ``id IN`` lets SQLite seek the primary key instead of scanning the collection)."""
        if not versions:
            return []
        values = {
            "status": Status.EMBEDDED.value,
            "embedding_model": model,
            "embedding_dim": dim,
            "embedded_at": at,
            "error": None,
            "updated_at": datetime.now(UTC),
        }
        key = sa.tuple_(_records.c.id, _records.c.updated_at)
        stamped: list[str] = []
        async with self._begin() as conn:
            for chunk in _chunks(list(versions)):
                stmt = (
                    sa.update(_records)
                    .where(
                        _records.c.collection == collection,
                        _records.c.id.in_(chunk),
                        key.in_([(i, versions[i]) for i in chunk]),
                    )
                    .values(values)
                    .returning(_records.c.id)
                )
                stamped.extend((await conn.execute(stmt)).scalars())
        return stamped

    async def stats(self, collection: str) -> CollectionStats:
        """Counts by status, the latest error and the embedding models in use, in two queries.

        ``oldest_pending`` is the earliest ``updated_at`` of a pending record: how long the backlog has
        waited, not how old its content is. ``models`` counts embedded records per model. An unknown
        collection has all-zero stats.
        """
        status = _records.c.status
        in_collection = _records.c.collection == collection
        last_error = (
            sa.select(_records.c.error)
            .where(in_collection, status == Status.FAILED.value)
            .order_by(_records.c.updated_at.desc(), _records.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        totals = sa.select(
            sa.func.count(),
            sa.func.count().filter(status == Status.EMBEDDED.value),
            sa.func.count().filter(status == Status.PENDING.value),
            sa.func.count().filter(status == Status.FAILED.value),
            sa.func.min(_records.c.updated_at).filter(status == Status.PENDING.value),
            last_error,
        ).where(in_collection)
        models = (
            sa.select(_records.c.embedding_model, sa.func.count())
            .where(in_collection, status == Status.EMBEDDED.value, _records.c.embedding_model.is_not(None))
            .group_by(_records.c.embedding_model)
        )
        async with self._begin() as conn:
            total, embedded, pending, failed, oldest, error = (await conn.execute(totals)).one()
            per_model = {model: count for model, count in await conn.execute(models)}
        return CollectionStats(
            total=total,
            embedded=embedded,
            pending=pending,
            failed=failed,
            last_error=error,
            oldest_pending=oldest,
            models=per_model,
        )

    async def find(
        self,
        collection: str,
        *,
        status: Sequence[Status] | None = None,
        not_model: str | None = None,
        since: datetime | None = None,
        after_id: str | None = None,
        limit: int = 100,
    ) -> list[Record]:
        """Records in id order after ``after_id``: status among ``status`` *or* embedded by a model other
        than ``not_model`` (either alone when only one is given), and ``ts >= since``."""
        wanted: list[sa.ColumnElement[bool]] = []
        if status is not None:
            wanted.append(_records.c.status.in_([Status(s).value for s in status]))
        if not_model is not None:
            wanted.append(
                sa.and_(
                    _records.c.status == Status.EMBEDDED.value,
                    _records.c.embedding_model.is_distinct_from(not_model),
                )
            )
        stmt = sa.select(_records).where(_records.c.collection == collection)
        if wanted:
            stmt = stmt.where(sa.or_(*wanted))
        if since is not None:
            stmt = stmt.where(_records.c.ts >= since)
        if after_id is not None:
            stmt = stmt.where(_records.c.id > after_id)
        stmt = stmt.order_by(_records.c.id).limit(limit)
        async with self._begin() as conn:
            return [_record(row) for row in await conn.execute(stmt)]
