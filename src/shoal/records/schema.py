"""The record store's tables and the engine that talks to them (SQLite or PostgreSQL).

The tables here describe the head migration; ``shoal/records/migrations`` creates them. Change both
together (``docs/records.md`` shows how to generate a revision).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

SQLITE_BUSY_TIMEOUT_MS = 10_000


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite keeps no offset, so values are converted to UTC before they are written; a naive value is
    taken to be UTC already.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        # SQLite's storage format drops the offset: store the UTC wall clock so text order is time order
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSONB on PostgreSQL (compact, indexable), JSON text on SQLite
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# Byte order for ids on every dialect, so keyset pagination pages identically on SQLite and Postgres
Key = sa.String().with_variant(sa.String(collation="C"), "postgresql")

metadata = sa.MetaData()

collections = sa.Table(
    "collections",
    metadata,
    sa.Column("name", Key, primary_key=True),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("model", sa.String, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("vector_name", sa.String, nullable=False),
    sa.Column("shadow_vector_name", sa.String, nullable=True),
    sa.Column("shadow_model", sa.String, nullable=True),
    sa.Column("config", Json, nullable=False),
)

records = sa.Table(
    "records",
    metadata,
    sa.Column(
        "collection",
        Key,
        sa.ForeignKey("collections.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("id", Key, primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("payload", Json, nullable=False),
    sa.Column("ts", UtcDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("embedding_model", sa.String, nullable=True),
    sa.Column("embedding_dim", sa.Integer, nullable=True),
    sa.Column("embedded_at", UtcDateTime, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index("ix_records_collection_status", "collection", "status"),
    sa.Index("ix_records_collection_ts", "collection", "ts"),
    sa.Index("ix_records_collection_embedding_model", "collection", "embedding_model"),
)


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # per connection: WAL lets readers run beside the writer, foreign keys make delete cascade,
    # busy_timeout makes concurrent writers wait instead of failing with "database is locked".
    # synchronous=FULL: processors commit their log offsets (also FULL) right after writing here, so
    # a write must be on disk before that, or a power cut would lose what the log then forgets.
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")  # first: switching to WAL may wait
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_file(parsed: URL) -> Path | None:
    """The file of a SQLite URL, its directory created; ``None`` for another database, an in-memory
    one or a ``file:`` URI (left to SQLite)."""
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in {"", ":memory:"} or database.startswith("file:"):
        return None
    path = Path(database).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def make_engine(url: str) -> AsyncEngine:
    """An async engine for ``sqlite+aiosqlite://`` or ``postgresql+asyncpg://`` URLs.

    A SQLite file's parent directory is created; an in-memory SQLite database is shared by one
    connection so that every session sees the same data.
    """
    parsed = make_url(url)
    options: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if parsed.get_backend_name() == "sqlite":
        if (parsed.database or "") in {"", ":memory:"}:
            options["poolclass"] = StaticPool
        _sqlite_file(parsed)
        engine = create_async_engine(parsed, **options)
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(parsed, pool_pre_ping=True, **options)


def make_sqlite_file_engine(url: str) -> sa.Engine | None:
    """A synchronous engine over the stdlib driver for a ``sqlite+aiosqlite://`` *file* URL, with the
    same pragmas and JSON codec as ``make_engine``; ``None`` for any other URL (an in-memory database
    is only shared through the async engine's one connection).

    For a caller that runs several statements in one hop on a thread of its own. The pool has no
    ceiling: that thread must never wait for a connection only it can give back."""
    parsed = make_url(url)
    if _sqlite_file(parsed) is None:
        return None
    engine = sa.create_engine(
        parsed.set(drivername="sqlite"), max_overflow=-1, json_serializer=_json_dumps, json_deserializer=orjson.loads
    )
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine
