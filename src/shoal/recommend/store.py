"""Where profiles live: three tables of their own in the record store's database (SQLite file or
PostgreSQL), created by the Alembic revision ``0003``.

A profiler batch is one transaction: it reads which of the batch's event ids were applied before,
reads the users' profiles, and writes the new profiles, the applied event ids and the trending
counts together. The log offsets are committed only after that, so a crash between the two replays
events whose ids are already recorded: they are skipped, and no event is ever applied twice.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shoal.errors import BackendError
from shoal.recommend.popular import Trend
from shoal.recommend.profiles import Profile, vector_from_bytes, vector_to_bytes
from shoal.records.schema import Json, Key, UtcDateTime, make_engine, metadata

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


@dataclass(slots=True)
class Batch:
    """What one transaction read: applied ids, the users' profiles and the items' trends."""

    applied: set[str]
    profiles: dict[str, Profile]
    trends: dict[str, Trend]
    new_ids: list[tuple[str, str]] = field(default_factory=list)
    """(event_id, user_id) applied in this batch, written with the profiles."""


class ProfileStore:
    """Profiles, applied event ids and trending counts in SQL. Use as an async context manager."""

    def __init__(self, url: str, *, popular_half_life_s: float) -> None:
        self._url = url
        self._dialect = make_url(url).get_backend_name()
        self._half_life = popular_half_life_s
        self._engine: AsyncEngine | None = None

    async def __aenter__(self) -> ProfileStore:
        self._engine = make_engine(self._url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()

    @contextlib.asynccontextmanager
    async def _transaction(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        if self._engine is None:
            raise BackendError("profile store is not open")
        try:
            async with self._engine.connect() as conn:
                if write and self._dialect == "sqlite":
                    # take the write lock before reading: a deferred transaction that reads and then
                    # writes fails at once if another connection committed in between
                    await conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    await conn.begin()
                yield conn
                await conn.commit()
        except (SQLAlchemyError, OSError) as exc:
            cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
            raise BackendError(f"profile store ({self._dialect}): {cause}") from exc

    def _insert(self, table: sa.Table) -> sqlite.Insert | postgresql.Insert:
        return postgresql.insert(table) if self._dialect == "postgresql" else sqlite.insert(table)

    @contextlib.asynccontextmanager
    async def batch(
        self, event_ids: Sequence[str], user_ids: Iterable[str], item_ids: Iterable[str]
    ) -> AsyncIterator[Batch]:
        """Read the state a batch needs and write it back when the block exits without error, all
        in one transaction (the caller mutates ``profiles`` / ``trends`` and fills ``new_ids``)."""
        async with self._transaction(write=True) as conn:
            batch = Batch(
                applied=await self._applied(conn, event_ids),
                profiles=await self._profiles(conn, list(dict.fromkeys(user_ids))),
                trends=await self._trends(conn, list(dict.fromkeys(item_ids))),
            )
            yield batch
            await self._write(conn, batch)

    async def _applied(self, conn: AsyncConnection, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), _CHUNK):
            stmt = sa.select(applied_table.c.event_id).where(applied_table.c.event_id.in_(ids[start : start + _CHUNK]))
            found.update((await conn.execute(stmt)).scalars())
        return found

    async def _profiles(self, conn: AsyncConnection, users: Sequence[str]) -> dict[str, Profile]:
        found = {u: Profile(u) for u in users}
        for start in range(0, len(users), _CHUNK):
            stmt = sa.select(profiles_table).where(profiles_table.c.user_id.in_(users[start : start + _CHUNK]))
            for row in await conn.execute(stmt):
                found[row.user_id] = _profile(row)
        return found

    async def _trends(self, conn: AsyncConnection, items: Sequence[str]) -> dict[str, Trend]:
        found: dict[str, Trend] = {}
        for start in range(0, len(items), _CHUNK):
            stmt = sa.select(trending_table).where(trending_table.c.item_id.in_(items[start : start + _CHUNK]))
            for row in await conn.execute(stmt):
                found[row.item_id] = Trend(row.item_id, row.score, row.at)
        return found

    async def _write(self, conn: AsyncConnection, batch: Batch) -> None:
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
        upsert = self._insert(profiles_table)
        upsert = upsert.on_conflict_do_update(
            index_elements=[profiles_table.c.user_id],
            set_={c.name: upsert.excluded[c.name] for c in profiles_table.columns if c.name != "user_id"},
        )
        await conn.execute(upsert, rows)
        stamp = time.time()
        await conn.execute(
            sa.insert(applied_table), [{"event_id": e, "user_id": u, "applied_at": stamp} for e, u in batch.new_ids]
        )
        if batch.trends:
            trend = self._insert(trending_table)
            trend = trend.on_conflict_do_update(
                index_elements=[trending_table.c.item_id],
                set_={c.name: trend.excluded[c.name] for c in trending_table.columns if c.name != "item_id"},
            )
            await conn.execute(
                trend,
                [
                    {"item_id": t.item_id, "score": t.score, "at": t.at, "rank": _finite(t.rank(self._half_life))}
                    for t in batch.trends.values()
                ],
            )

    async def get(self, user_id: str) -> Profile | None:
        async with self._transaction(write=False) as conn:
            row = (await conn.execute(sa.select(profiles_table).where(profiles_table.c.user_id == user_id))).first()
        return _profile(row) if row is not None else None

    async def trending(self, limit: int) -> list[Trend]:
        """The ``limit`` items with the highest decayed count, best first."""
        stmt = sa.select(trending_table).order_by(trending_table.c.rank.desc()).limit(limit)
        async with self._transaction(write=False) as conn:
            return [Trend(r.item_id, r.score, r.at) for r in await conn.execute(stmt)]

    async def forget_applied(self, older_than_s: float) -> int:
        """Drop applied event ids older than ``older_than_s`` (idempotency has a horizon)."""
        stmt = sa.delete(applied_table).where(applied_table.c.applied_at < time.time() - older_than_s)
        async with self._transaction(write=True) as conn:
            return (await conn.execute(stmt)).rowcount or 0

    async def ping(self) -> None:
        async with self._transaction(write=False) as conn:
            await conn.execute(sa.select(sa.func.count()).select_from(applied_table).limit(1))


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
