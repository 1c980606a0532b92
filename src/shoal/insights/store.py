"""Insights persistence: one row per conversation (pending → analyzed | failed) and the online clusters,
in the record store's database (tables created by migration ``0002_insights``).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shoal.errors import BackendError, InvalidInput
from shoal.insights.analyzer import BRIEF, Analysis
from shoal.insights.clusters import Cluster, OnlineClusterer
from shoal.records.schema import Json, Key, UtcDateTime, make_engine

Status = Literal["pending", "analyzed", "failed"]

metadata = sa.MetaData()

insights = sa.Table(
    "insights",
    metadata,
    sa.Column("conversation_id", Key, primary_key=True),
    sa.Column("ts", UtcDateTime, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("author", sa.String, nullable=True),
    sa.Column("raw_data", Json, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("sentiment_score", sa.Float, nullable=True),
    sa.Column("sentiment", sa.String(8), nullable=True),
    sa.Column("confidence", sa.Float, nullable=True),
    sa.Column("cluster", sa.String, nullable=True),
    sa.Column("cluster_id", sa.Integer, nullable=True),
    sa.Column("clusters", Json, nullable=True),
    sa.Column("reasoning", sa.Text, nullable=True),
    sa.Column("analyzer", sa.String, nullable=True),
    sa.Column("analyzed_at", UtcDateTime, nullable=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index("ix_insights_status_ts", "status", "ts"),
    sa.Index("ix_insights_ts", "ts", "conversation_id"),
    sa.Index("ix_insights_author_ts", "author", "ts"),
    sa.Index("ix_insights_cluster_ts", "cluster", "ts"),
)

clusters_table = sa.Table(
    "insight_clusters",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("label", sa.String, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("seen", sa.Integer, nullable=False),
    sa.Column("cohesion", sa.Float, nullable=False),
    sa.Column("top_terms", Json, nullable=False),
    sa.Column("examples", Json, nullable=False),
    sa.Column("terms", Json, nullable=False),
    sa.Column("total", sa.LargeBinary, nullable=False),
    sa.Column("reservoir", sa.LargeBinary, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Conversation:
    """An accepted conversation on its way to analysis."""

    id: str
    text: str
    ts: datetime
    author: str | None
    raw_data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Query:
    start: datetime
    end: datetime
    limit: int = 100
    min_confidence: float | None = None
    sentiment: str | None = None
    cluster: str | None = None
    author: str | None = None
    status: Status = "analyzed"
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[dict[str, Any]]
    total: int
    next_cursor: str | None


def encode_cursor(ts: datetime, cid: str) -> str:
    return base64.urlsafe_b64encode(f"{ts.astimezone(UTC).isoformat()}|{cid}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
        ts, _, cid = raw.partition("|")
        return datetime.fromisoformat(ts), cid
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("cursor: not a cursor returned by this endpoint") from exc


class InsightsStore:
    """Async SQL store for insights; opened on the record store's database URL.

    The tables come from the record store's migrations (SQLite migrates on open; PostgreSQL needs
    ``shoal migrate``), so open this after the record store.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._engine: AsyncEngine | None = None

    async def __aenter__(self) -> Self:
        self._engine = make_engine(self._url)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()

    @property
    def dialect(self) -> str:
        assert self._engine is not None
        return self._engine.dialect.name

    @contextlib.asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        if self._engine is None:
            raise BackendError("insights store is not open")
        try:
            async with self._engine.begin() as conn:
                yield conn
        except (SQLAlchemyError, OSError) as exc:
            raise BackendError(f"insights store: {exc}") from exc

    def _insert(self, table: sa.Table) -> sqlite.Insert | postgresql.Insert:
        return postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table)

    async def ping(self) -> None:
        async with self._begin() as conn:
            await conn.execute(sa.select(sa.func.count()).select_from(insights).limit(1))

    # -- conversations ---------------------------------------------------------------------------
    async def add_pending(self, conversations: Sequence[Conversation]) -> None:
        """Record conversations as pending; ones already known (a replay) are left as they are."""
        if not conversations:
            return
        now = datetime.now(UTC)
        values = [
            {
                "conversation_id": c.id,
                "ts": c.ts,
                "text": c.text,
                "author": c.author,
                "raw_data": c.raw_data,
                "status": "pending",
                "attempts": 0,
                "updated_at": now,
            }
            for c in conversations
        ]
        async with self._begin() as conn:
            await conn.execute(self._insert(insights).on_conflict_do_nothing(), values)

    async def save_analyses(self, analyses: dict[str, Analysis]) -> None:
        now = datetime.now(UTC)
        stmt = (
            insights.update()
            .where(insights.c.conversation_id == sa.bindparam("cid"))
            .values(
                status="analyzed",
                error=None,
                sentiment_score=sa.bindparam("s_score"),
                sentiment=sa.bindparam("s_label"),
                confidence=sa.bindparam("s_conf"),
                cluster=sa.bindparam("s_cluster"),
                cluster_id=sa.bindparam("s_cluster_id"),
                clusters=sa.bindparam("s_clusters", type_=Json),
                reasoning=sa.bindparam("s_reason"),
                analyzer=sa.bindparam("s_analyzer"),
                analyzed_at=now,
                updated_at=now,
                attempts=insights.c.attempts + 1,
            )
        )
        params = [
            {
                "cid": cid,
                "s_score": a.sentiment_score,
                "s_label": a.sentiment,
                "s_conf": a.confidence,
                "s_cluster": a.cluster,
                "s_cluster_id": a.cluster_id,
                "s_clusters": a.clusters,
                "s_reason": a.reasoning,
                "s_analyzer": a.analyzer,
            }
            for cid, a in analyses.items()
        ]
        if params:
            async with self._begin() as conn:
                await conn.execute(stmt, params)

    async def record_failure(self, ids: Sequence[str], error: str, max_attempts: int) -> int:
        """Count a failed attempt; conversations past ``max_attempts`` become ``failed``. Returns how
        many are still pending (and will be retried)."""
        now = datetime.now(UTC)
        attempts = insights.c.attempts + 1
        async with self._begin() as conn:
            await conn.execute(
                insights.update()
                .where(insights.c.conversation_id.in_(list(ids)), insights.c.status == "pending")
                .values(
                    attempts=attempts,
                    error=error[:2000],
                    updated_at=now,
                    status=sa.case((attempts >= max_attempts, "failed"), else_="pending"),
                )
            )
            pending = await conn.scalar(
                sa.select(sa.func.count()).where(
                    insights.c.conversation_id.in_(list(ids)), insights.c.status == "pending"
                )
            )
        return int(pending or 0)

    async def statuses(self, ids: Sequence[str]) -> dict[str, str]:
        stmt = sa.select(insights.c.conversation_id, insights.c.status).where(insights.c.conversation_id.in_(list(ids)))
        async with self._begin() as conn:
            return {cid: status for cid, status in await conn.execute(stmt)}

    async def get(self, cid: str) -> dict[str, Any] | None:
        async with self._begin() as conn:
            row = (await conn.execute(sa.select(insights).where(insights.c.conversation_id == cid))).first()
        return row._asdict() if row is not None else None

    async def briefs(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The ``BRIEF`` fields of the analysed conversations among ``ids`` (others are left out)."""
        if not ids:
            return {}
        columns = [insights.c[name] for name in BRIEF]
        stmt = sa.select(insights.c.conversation_id, *columns).where(
            insights.c.conversation_id.in_(list(ids)), insights.c.status == "analyzed"
        )
        async with self._begin() as conn:
            return {row[0]: dict(zip(BRIEF, row[1:], strict=True)) for row in await conn.execute(stmt)}

    def _where(self, q: Query) -> list[sa.ColumnElement[bool]]:
        where = [insights.c.ts >= q.start, insights.c.ts <= q.end, insights.c.status == q.status]
        if q.min_confidence is not None:
            where.append(insights.c.confidence >= q.min_confidence)
        if q.sentiment is not None:
            where.append(insights.c.sentiment == q.sentiment)
        if q.cluster is not None:
            where.append(insights.c.cluster == q.cluster)
        if q.author is not None:
            where.append(insights.c.author == q.author)
        return where

    async def query(self, q: Query) -> Page:
        """Rows in ``[start, end]`` (both inclusive) by time then id, with keyset pagination."""
        where = self._where(q)
        page_where = list(where)
        if q.cursor is not None:
            ts, cid = decode_cursor(q.cursor)
            page_where.append(
                sa.tuple_(insights.c.ts, insights.c.conversation_id)
                > sa.tuple_(sa.literal(ts, UtcDateTime), sa.literal(cid))
            )
        stmt = (
            sa.select(insights)
            .where(*page_where)
            .order_by(insights.c.ts, insights.c.conversation_id)
            .limit(q.limit + 1)
        )
        async with self._begin() as conn:
            rows = [r._asdict() for r in await conn.execute(stmt)]
            total = int(await conn.scalar(sa.select(sa.func.count()).select_from(insights).where(*where)) or 0)
        more = len(rows) > q.limit
        rows = rows[: q.limit]
        cursor = encode_cursor(rows[-1]["ts"], rows[-1]["conversation_id"]) if more and rows else None
        return Page(rows, total, cursor)

    async def counts(self, start: datetime, end: datetime) -> dict[str, int]:
        """Conversations per status in the range."""
        stmt = (
            sa.select(insights.c.status, sa.func.count())
            .where(insights.c.ts >= start, insights.c.ts <= end)
            .group_by(insights.c.status)
        )
        async with self._begin() as conn:
            return {status: int(n) for status, n in await conn.execute(stmt)}

    def _epoch(self) -> sa.ColumnElement[Any]:
        if self.dialect == "postgresql":
            return sa.func.extract("epoch", insights.c.ts)
        return sa.cast(sa.func.strftime("%s", insights.c.ts), sa.Integer)

    async def buckets(self, start: datetime, end: datetime, seconds: int) -> list[dict[str, Any]]:
        """Analyzed conversations per time bucket: count, mean score, count per label."""
        bucket = sa.cast(sa.func.floor((self._epoch() - start.timestamp()) / seconds), sa.Integer).label("b")
        stmt = (
            sa.select(bucket, insights.c.sentiment, sa.func.count(), sa.func.sum(insights.c.sentiment_score))
            .where(insights.c.ts >= start, insights.c.ts <= end, insights.c.status == "analyzed")
            .group_by(bucket, insights.c.sentiment)
        )
        async with self._begin() as conn:
            rows = list(await conn.execute(stmt))
        return [{"bucket": int(b), "sentiment": s, "count": int(n), "sum": float(t or 0.0)} for b, s, n, t in rows]

    async def cluster_counts(self, start: datetime, end: datetime) -> dict[str, int]:
        stmt = (
            sa.select(insights.c.cluster, sa.func.count())
            .where(
                insights.c.ts >= start,
                insights.c.ts <= end,
                insights.c.status == "analyzed",
                insights.c.cluster.is_not(None),
            )
            .group_by(insights.c.cluster)
        )
        async with self._begin() as conn:
            return {label: int(n) for label, n in await conn.execute(stmt)}

    # -- clusters --------------------------------------------------------------------------------
    async def save_clusters(self, clusterer: OnlineClusterer, *, full: bool = False) -> None:
        """Persist the clusters changed since the last save and drop the merged/split ones.

        Label, size, sum, top terms and examples are written for every changed cluster. The bulky
        parts — term counts and the reservoir sample, ~100 kB a cluster — only for a new cluster, one
        that grew by a quarter since they were last written, or every stale one with ``full`` (at
        shutdown): a crash then costs those samples at most a quarter's growth, never a cluster.
        """
        if full:
            clusterer.dirty.update(c.id for c in clusterer.clusters.values() if c.saved_at != c.size)
        dirty = [clusterer.clusters[i] for i in clusterer.dirty if i in clusterer.clusters]
        removed = list(clusterer.removed)
        if not dirty and not removed:
            return
        now = datetime.now(UTC)
        bulky = [c for c in dirty if full or not c.saved_at or c.size >= c.saved_at * 1.25 + 1]
        whole = {c.id for c in bulky}
        brief = [_cluster_brief(c, now) for c in dirty if c.id not in whole]
        values = [{**_cluster_brief(c, now), **_cluster_bulk(clusterer, c)} for c in bulky]
        async with self._begin() as conn:
            if removed:
                await conn.execute(clusters_table.delete().where(clusters_table.c.id.in_(removed)))
            if values:
                stmt = self._insert(clusters_table)
                update = {c.name: stmt.excluded[c.name] for c in clusters_table.columns if c.name != "id"}
                await conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=update), values)
            if brief:
                columns = {
                    name: sa.bindparam(f"v_{name}", type_=clusters_table.c[name].type)
                    for name in brief[0]
                    if name != "id"
                }
                update_brief = (
                    clusters_table.update().where(clusters_table.c.id == sa.bindparam("v_id")).values(columns)
                )
                await conn.execute(update_brief, [{f"v_{k}": v for k, v in row.items()} for row in brief])
        for cluster in bulky:
            cluster.saved_at = cluster.size
        clusterer.dirty.clear()
        clusterer.removed.clear()

    async def load_clusters(self, dim: int) -> list[Cluster]:
        async with self._begin() as conn:
            rows = list(await conn.execute(sa.select(clusters_table)))
        out = []
        for r in rows:
            reservoir = np.frombuffer(r.reservoir, dtype=np.float32).reshape(-1, dim)
            out.append(
                Cluster(
                    id=r.id,
                    total=np.frombuffer(r.total, dtype=np.float64).copy(),
                    size=r.size,
                    terms=_counter(r.terms),
                    examples=list(r.examples),
                    reservoir=reservoir.copy(),
                    seen=r.seen,
                    label=r.label,
                    top=list(r.top_terms),
                    labelled_at=r.size,
                    saved_at=r.size,
                )
            )
        return out

    async def list_clusters(self, limit: int) -> list[dict[str, Any]]:
        stmt = (
            sa.select(
                clusters_table.c.id,
                clusters_table.c.label,
                clusters_table.c.size,
                clusters_table.c.cohesion,
                clusters_table.c.top_terms,
                clusters_table.c.examples,
                clusters_table.c.updated_at,
            )
            .order_by(clusters_table.c.size.desc(), clusters_table.c.id)
            .limit(limit)
        )
        async with self._begin() as conn:
            return [r._asdict() for r in await conn.execute(stmt)]


def _counter(terms: dict[str, int]) -> Any:
    from collections import Counter

    return Counter(terms)


def _cluster_brief(cluster: Cluster, now: datetime) -> dict[str, Any]:
    return {
        "id": cluster.id,
        "label": cluster.label,
        "size": cluster.size,
        "seen": cluster.seen,
        "cohesion": round(cluster.cohesion, 4),
        "top_terms": cluster.top,
        "examples": cluster.examples,
        "total": cluster.total.astype(np.float64).tobytes(),
        "updated_at": now,
    }


def _cluster_bulk(clusterer: OnlineClusterer, cluster: Cluster) -> dict[str, Any]:
    reservoir = cluster.reservoir if len(cluster.reservoir) else np.zeros((0, clusterer.dim))
    return {"terms": dict(cluster.terms), "reservoir": reservoir.astype(np.float32).tobytes()}
