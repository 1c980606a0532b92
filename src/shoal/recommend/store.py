"""Where profiles live: three tables of their own in the record store's database (SQLite file or
PostgreSQL), created by the Alembic revision ``0003``.

A profiler batch is one transaction: it records the batch's event ids (an insert that skips ids
recorded before and returns the new ones, so one statement both checks and records them), reads the
users' profiles and the items' trending counts, and writes them back. The log offsets are committed
only after that, so a crash between the two replays events whose ids are already recorded: they are
skipped, and no event is ever applied twice. Five statements a batch, however many events it holds.

The statements are plain synchronous SQLAlchemy Core, run in two hops a batch (open + reads, then
writes + commit), not one awaited call per statement: on a SQLite file they run on one thread of the
store's own over the stdlib driver, on PostgreSQL through ``run_sync`` over asyncpg. Per statement,
the async driver costs a thread hop, a greenlet switch and a loop wake-up on the event loop's
thread; a small batch paid more for that than for its SQL.

On SQLite the number of *steps* matters as much: the stdlib driver releases the GIL around every
``sqlite3_step``, and a statement steps once per row it reads (``RETURNING``, a ``SELECT``) and
once per parameter set of an ``executemany``. While the event loop is busy, each step then waits up
to the interpreter's switch interval (5 ms) to win the GIL back: at 500 events/s a batch of ~80
events stepped ~300 times and spent ~110 ms in the store (p50), nearly all of it waiting. So on
SQLite a batch reads with one statement that returns one row (the applied ids, the profiles and the
trends, each aggregated into a JSON array by SQLite) after ``BEGIN IMMEDIATE``, and writes with one
multi-row ``INSERT`` a table: six steps a batch, however many events it holds. PostgreSQL (asyncpg
fetches a statement's rows in one round trip) reads rows as they are and records the ids with
``INSERT … RETURNING``, which also makes the check atomic against another worker that took the
partition over.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from shoal.errors import BackendError
from shoal.recommend.popular import Trend
from shoal.recommend.profiles import Profile, vector_from_bytes, vector_to_bytes
from shoal.records.schema import Json, Key, UtcDateTime, make_engine, make_sqlite_file_engine, metadata

T = TypeVar("T")
_CHUNK = 500

profiles_table = sa.Table(
    "recommend_profiles",
    metadata,
    sa.Column("user_id", Key, primary_key=True),
    sa.Column("vector", sa.LargeBinary, nullable=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("seen", Json, nullable=False),
    sa.Column("recent", Json, nullable=False),
    sa.Column("counters", Json, nullable=False),
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

applied_table = sa.Table(
    "recommend_applied",
    metadata,
    sa.Column("event_id", Key, primary_key=True),
    sa.Column("user_id", Key, nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False),
    sa.Index("ix_recommend_applied_applied_at", "applied_at"),
)

trending_table = sa.Table(
    "recommend_trending",
    metadata,
    sa.Column("item_id", Key, primary_key=True),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("rank", sa.Float, nullable=False),
    sa.Index("ix_recommend_trending_rank", "rank"),
)

# built once: a batch's reads only bind their ids
_SELECT_PROFILES = sa.select(profiles_table).where(profiles_table.c.user_id.in_(sa.bindparam("ids", expanding=True)))
_SELECT_TRENDS = sa.select(trending_table).where(trending_table.c.item_id.in_(sa.bindparam("ids", expanding=True)))


def _exact(column: sa.ColumnElement[float]) -> sa.ColumnElement[str]:
    """A float as text that reads back to the same double (SQLite's JSON keeps 15 digits only)."""
    return sa.func.printf("%!.17g", column)


def _aggregated(table: sa.Table, key: str, param: str, *values: sa.ColumnElement[Any]) -> sa.ScalarSelect[str]:
    """The rows of ``table`` whose ``key`` is in the expanding ``param``, as one JSON array of arrays."""
    row = sa.func.json_array(*values) if len(values) > 1 else values[0]
    return (
        sa.select(sa.func.json_group_array(row))
        .where(table.c[key].in_(sa.bindparam(param, expanding=True)))
        .scalar_subquery()
    )


_p, _t = profiles_table.c, trending_table.c
# SQLite: a batch's three reads as one statement returning one row (the module docstring)
_SELECT_BATCH_SQLITE = sa.select(
    _aggregated(applied_table, "event_id", "events", applied_table.c.event_id).label("applied"),
    _aggregated(
        profiles_table,
        "user_id",
        "users",
        _p.user_id,
        sa.case((_p.vector.is_(None), None), else_=sa.func.hex(_p.vector)),
        _exact(_p.at),
        sa.func.json(_p.seen),
        sa.func.json(_p.recent),
        sa.func.json(_p.counters),
        _p.events,
        _p.updated_at,
    ).label("profiles"),
    _aggregated(trending_table, "item_id", "items", _t.item_id, _exact(_t.score), _exact(_t.at)).label("trends"),
)


@dataclass(slots=True)
class Batch:
    """What one transaction read: applied ids, the users' profiles and the items' trends."""

    applied: set[str]
    """Event ids of the batch that were applied by an earlier batch (a retry or a replay)."""
    profiles: dict[str, Profile]
    trends: dict[str, Trend]
    new_ids: list[tuple[str, str]] = field(default_factory=list)
    """(event_id, user_id) applied in this batch: the profiles of these users are written back."""
    unrecorded: list[dict[str, Any]] = field(default_factory=list)
    """Rows of the event ids not recorded yet, inserted with the writes (SQLite: the lock is held)."""


class ProfileStore:
    """Profiles, applied event ids and trending counts in SQL. Use as an async context manager."""

    def __init__(self, url: str, *, popular_half_life_s: float) -> None:
        self._url = url
        self._dialect = make_url(url).get_backend_name()
        self._half_life = popular_half_life_s
        self._engine: AsyncEngine | None = None
        self._sync: sa.Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        insert = self._insert(applied_table).on_conflict_do_nothing(index_elements=[applied_table.c.event_id])
        self._record_ids = insert.returning(applied_table.c.event_id)
        self._upserts = {profiles_table.name: self._upsert(profiles_table, "user_id")}
        self._upserts[trending_table.name] = self._upsert(trending_table, "item_id")
        self._inserts: dict[tuple[str, str | None], _RowsInsert] = {}
        # how SQLAlchemy reads a stored timestamp back (the SQLite batch read returns it as text)
        dialect = sqlite.dialect()
        read_time = profiles_table.c.updated_at.type.dialect_impl(dialect).result_processor(dialect, None)
        assert read_time is not None
        self._read_time = read_time

    async def __aenter__(self) -> ProfileStore:
        # A SQLite file: the stdlib driver on one thread of our own; otherwise the async engine
        self._sync = make_sqlite_file_engine(self._url)
        if self._sync is not None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="shoal-profiles")
        else:
            self._engine = make_engine(self._url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()
        if self._sync is not None and self._thread is not None:
            sync, thread = self._sync, self._thread
            self._sync = self._thread = None
            await asyncio.get_running_loop().run_in_executor(thread, sync.dispose)
            thread.shutdown(wait=True)

    @contextlib.asynccontextmanager
    async def _transaction(
        self, first: Callable[[sa.Connection], T], last: Callable[[sa.Connection], None] | None = None
    ) -> AsyncIterator[T]:
        """One transaction in two hops: ``first(conn)`` right after it begins (its result is
        yielded), ``last(conn)`` just before it commits. An error in the block rolls it back.

        A transaction that writes must write first: on SQLite the write lock is then taken at once
        (a deferred transaction that reads and then writes fails outright if another connection
        committed in between)."""
        try:
            if self._sync is not None and self._thread is not None:
                async with self._threaded(first, last) as result:
                    yield result
            elif self._engine is not None:
                async with self._engine.connect() as conn:
                    await conn.begin()
                    yield await conn.run_sync(first)
                    if last is not None:
                        await conn.run_sync(last)
                    await conn.commit()
            else:
                raise BackendError("profile store is not open")
        except (SQLAlchemyError, OSError) as exc:
            raise self._error(exc) from exc

    def _error(self, exc: Exception) -> BackendError:
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        return BackendError(f"profile store ({self._dialect}): {cause}")

    @contextlib.asynccontextmanager
    async def _threaded(
        self, first: Callable[[sa.Connection], T], last: Callable[[sa.Connection], None] | None
    ) -> AsyncIterator[T]:
        assert self._sync is not None and self._thread is not None
        sync, thread = self._sync, self._thread

        def begin() -> tuple[sa.Connection, T]:
            conn = sync.connect()
            try:
                conn.begin()
                return conn, first(conn)
            except BaseException:
                conn.close()
                raise

        def end(conn: sa.Connection) -> None:
            with conn:  # closing rolls back what is not committed
                if last is not None:
                    last(conn)
                conn.commit()

        opening = asyncio.get_running_loop().run_in_executor(thread, begin)
        try:
            conn, result = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # the hop runs on whether or not we wait for it: close the connection it opens
            opening.add_done_callback(functools.partial(_close_opened, thread))
            raise
        try:
            yield result
        except BaseException:
            await _hop(thread, conn.close)
            raise
        await _hop(thread, end, conn)

    async def _once(self, work: Callable[[sa.Connection], T]) -> T:
        """A transaction of ``work`` alone: one hop on SQLite, which never holds a connection while
        the loop runs (many concurrent readers cannot take every connection and wait on each other)."""
        if self._sync is None or self._thread is None:
            async with self._transaction(work) as result:
                return result
        sync = self._sync

        def run() -> T:
            with sync.connect() as conn:
                conn.begin()
                result = work(conn)
                conn.commit()
                return result

        try:
            return await asyncio.shield(asyncio.get_running_loop().run_in_executor(self._thread, run))
        except (SQLAlchemyError, OSError) as exc:
            raise self._error(exc) from exc

    def _insert(self, table: sa.Table) -> sqlite.Insert | postgresql.Insert:
        return postgresql.insert(table) if self._dialect == "postgresql" else sqlite.insert(table)

    def _upsert(self, table: sa.Table, key: str) -> sqlite.Insert | postgresql.Insert:
        insert = self._insert(table)
        updates = {c.name: insert.excluded[c.name] for c in table.columns if c.name != key}
        return insert.on_conflict_do_update(index_elements=[table.c[key]], set_=updates)

    def _rows_insert(self, conn: sa.Connection, table: sa.Table, key: str | None = None) -> _RowsInsert:
        made = self._inserts.get((table.name, key))
        if made is None:
            made = self._inserts[(table.name, key)] = _RowsInsert(conn.dialect, table, key)
        return made

    def _put(self, conn: sa.Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]], key: str) -> None:
        """Insert ``rows``, replacing the row of an existing ``key``: on SQLite as multi-row
        statements (an ``executemany`` steps once per row there), elsewhere as an ``executemany``."""
        if not rows:
            return
        if self._dialect == "sqlite":
            self._rows_insert(conn, table, key).run(conn, rows)
        else:
            conn.execute(self._upserts[table.name], list(rows))

    @contextlib.asynccontextmanager
    async def batch(
        self, events: Sequence[tuple[str, str]], user_ids: Iterable[str], item_ids: Iterable[str]
    ) -> AsyncIterator[Batch]:
        """Record the ``(event_id, user_id)`` pairs as applied, read the state the batch needs and
        write it back when the block exits without error, all in one transaction (the caller skips
        ``applied``, mutates ``profiles`` / ``trends`` and fills ``new_ids``)."""
        users = list(dict.fromkeys(user_ids))
        items = list(dict.fromkeys(item_ids))
        state: list[Batch] = []

        def read(conn: sa.Connection) -> Batch:
            if self._dialect == "sqlite":
                state.append(self._read_sqlite(conn, events, users, items))
            else:
                state.append(
                    Batch(
                        applied=self._record(conn, events),
                        profiles=self._profiles(conn, users),
                        trends=self._trends(conn, items),
                    )
                )
            return state[0]

        async with self._transaction(read, lambda conn: self._write(conn, state[0])) as batch:
            yield batch

    def _read_sqlite(
        self, conn: sa.Connection, events: Sequence[tuple[str, str]], users: Sequence[str], items: Sequence[str]
    ) -> Batch:
        """The batch's reads in one statement a chunk (the module docstring); the event ids not
        recorded yet are inserted with the writes. The write lock is taken first, so nothing read
        can change before the commit (a deferred transaction that reads and then writes fails
        outright if another connection committed in between)."""
        if self._sync is not None:  # a file; an in-memory database has the async engine's one connection
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        by_id = dict(events)  # first-seen order of the ids
        event_ids = list(by_id)
        batch = Batch(applied=set(), profiles={u: Profile(u) for u in users}, trends={})
        for start in range(0, max(len(event_ids), len(users), len(items)), _CHUNK):
            window = slice(start, start + _CHUNK)
            params = {"events": event_ids[window], "users": list(users[window]), "items": list(items[window])}
            row = conn.execute(_SELECT_BATCH_SQLITE, params).one()
            batch.applied.update(orjson.loads(row.applied))
            for user_id, vector, at, seen, recent, counters, count, updated_at in orjson.loads(row.profiles):
                batch.profiles[user_id] = Profile(
                    user_id=user_id,
                    vector=vector_from_bytes(bytes.fromhex(vector)) if vector is not None else None,
                    at=float(at),
                    seen=dict.fromkeys(seen),
                    recent=list(recent),
                    counters=dict(counters),
                    events=count,
                    updated_at=cast(datetime, self._read_time(updated_at)),  # the column is NOT NULL
                )
            for item_id, score, at in orjson.loads(row.trends):
                batch.trends[item_id] = Trend(item_id, float(score), float(at))
        applied_at = time.time()
        batch.unrecorded = [
            {"event_id": e, "user_id": by_id[e], "applied_at": applied_at} for e in event_ids if e not in batch.applied
        ]
        return batch

    def _record(self, conn: sa.Connection, events: Sequence[tuple[str, str]]) -> set[str]:
        """Insert the event ids not recorded yet; the others are the ones applied before."""
        now = time.time()
        rows = {e: {"event_id": e, "user_id": u, "applied_at": now} for e, u in events}
        if not rows:
            return set()
        fresh = set(conn.execute(self._record_ids, list(rows.values())).scalars())
        return rows.keys() - fresh

    def _profiles(self, conn: sa.Connection, users: Sequence[str]) -> dict[str, Profile]:
        found = {u: Profile(u) for u in users}
        for start in range(0, len(users), _CHUNK):
            for row in conn.execute(_SELECT_PROFILES, {"ids": users[start : start + _CHUNK]}):
                found[row.user_id] = _profile(row)
        return found

    def _trends(self, conn: sa.Connection, items: Sequence[str]) -> dict[str, Trend]:
        found: dict[str, Trend] = {}
        for start in range(0, len(items), _CHUNK):
            for row in conn.execute(_SELECT_TRENDS, {"ids": items[start : start + _CHUNK]}):
                found[row.item_id] = Trend(row.item_id, row.score, row.at)
        return found

    def _write(self, conn: sa.Connection, batch: Batch) -> None:
        if batch.unrecorded:  # in the second hop: the first, which the batch waits for, is one step shorter
            self._rows_insert(conn, applied_table).run(conn, batch.unrecorded)
        if not batch.new_ids:
            return
        now = datetime.now(UTC)
        touched = {user for _, user in batch.new_ids}
        rows = [
            {
                "user_id": p.user_id,
                "vector": vector_to_bytes(p.vector),
                "at": p.at,
                "seen": list(p.seen),
                "recent": p.recent,
                "counters": p.counters,
                "events": p.events,
                "updated_at": now,
            }
            for p in batch.profiles.values()
            if p.user_id in touched
        ]
        for p in batch.profiles.values():
            if p.user_id in touched:
                p.updated_at = now
        self._put(conn, profiles_table, rows, "user_id")
        trends = [
            {"item_id": t.item_id, "score": t.score, "at": t.at, "rank": _finite(t.rank(self._half_life))}
            for t in batch.trends.values()
        ]
        self._put(conn, trending_table, trends, "item_id")

    async def get(self, user_id: str) -> Profile | None:
        stmt = sa.select(profiles_table).where(profiles_table.c.user_id == user_id)
        row = await self._once(lambda conn: conn.execute(stmt).first())
        return _profile(row) if row is not None else None

    async def trending(self, limit: int) -> list[Trend]:
        """The ``limit`` items with the highest decayed count, best first."""
        stmt = sa.select(trending_table).order_by(trending_table.c.rank.desc()).limit(limit)
        return await self._once(lambda conn: [Trend(r.item_id, r.score, r.at) for r in conn.execute(stmt)])

    async def forget_applied(self, older_than_s: float) -> int:
        """Drop applied event ids older than ``older_than_s`` (idempotency has a horizon)."""
        stmt = sa.delete(applied_table).where(applied_table.c.applied_at < time.time() - older_than_s)
        return await self._once(lambda conn: conn.execute(stmt).rowcount or 0)

    async def ping(self) -> None:
        stmt = sa.select(sa.func.count()).select_from(applied_table).limit(1)
        await self._once(lambda conn: conn.execute(stmt).scalar())


class _RowsInsert:
    """A multi-row ``INSERT`` (``… ON CONFLICT (key) DO UPDATE`` with a ``key``) in the driver's own
    SQL, for SQLite: one statement, so one step, for up to ``_CHUNK`` rows. The values go through
    the columns' SQLAlchemy bind processors, as a Core statement's would; the text is built here
    because compiling a Core multi-row ``INSERT`` costs ~1 ms of Python for every 100 values, with
    the GIL held, on every call (its values are part of the statement, so it is never cached)."""

    def __init__(self, dialect: sa.Dialect, table: sa.Table, key: str | None = None) -> None:
        quote = dialect.identifier_preparer.quote
        names = [c.name for c in table.columns]
        self._columns = [(c.name, c.type.dialect_impl(dialect).bind_processor(dialect)) for c in table.columns]
        self._head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) VALUES "
        self._row = "(" + ", ".join("?" * len(names)) + ")"
        self._tail = (
            ""
            if key is None
            else f" ON CONFLICT ({quote(key)}) DO UPDATE SET "
            + ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in names if n != key)
        )

    def run(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            params = tuple(
                process(row[name]) if process is not None else row[name]
                for row in chunk
                for name, process in self._columns
            )
            conn.exec_driver_sql(self._head + ", ".join([self._row] * len(chunk)) + self._tail, params)


async def _hop(thread: ThreadPoolExecutor, fn: Callable[..., None], *args: object) -> None:
    """``fn`` on the store's thread, run to the end even if the caller is cancelled meanwhile
    (cancelling a queued executor job would skip it: a commit or a close must not be skipped)."""
    await asyncio.shield(asyncio.get_running_loop().run_in_executor(thread, fn, *args))


def _close_opened(thread: ThreadPoolExecutor, opening: asyncio.Future[tuple[sa.Connection, object]]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        thread.submit(opening.result()[0].close)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -1e300


def _profile(row: sa.Row[object]) -> Profile:
    return Profile(
        user_id=row.user_id,
        vector=vector_from_bytes(row.vector),
        at=row.at,
        seen=dict.fromkeys(row.seen),
        recent=list(row.recent),
        counters=dict(row.counters),
        events=row.events,
        updated_at=row.updated_at,
    )
