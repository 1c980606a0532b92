"""A cache in one SQLite file (WAL): the embedded L2, e.g. of the embedding engine.

Every call runs on one dedicated thread that owns the connection, so the event loop never blocks on
disk and the connection is never shared between threads. Expired rows are hidden on read and
deleted in bulk now and then by the write path (no background task to track).
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from shoal.cache.base import Cache
from shoal.errors import BackendError

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    expires_at REAL  -- unix seconds; NULL: never
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cache_expires_at ON cache (expires_at) WHERE expires_at IS NOT NULL;
"""
# SQLite's bound-parameter limit is 32766 since 3.32 but 999 before; stay well under both.
_CHUNK = 500


def _chunks(keys: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), _CHUNK):
        yield keys[start : start + _CHUNK]


class SqliteCache(Cache):
    """Bytes by key in the file at ``path``; survives restarts and is shared by processes on one host.

    ``ttl`` is the default lifetime in seconds (``None``: rows never expire). Expiry uses wall-clock
    time because rows outlive the process. There is no size bound: rows leave by expiry.
    """

    def __init__(self, path: str | Path, ttl: float | None = None, *, purge_interval: float = 60.0) -> None:
        self.path = Path(path)
        self.default_ttl = ttl
        self.purge_interval = purge_interval
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._next_purge = 0.0

    # -- lifecycle -----------------------------------------------------------------------------
    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shoal-sqlite-cache")
        await self._run(self._connect)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._disconnect)
        finally:
            executor.shutdown(wait=False)

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so one set_many is one transaction.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        conn.execute("PRAGMA journal_mode=WAL")
        # A cache may lose its last writes on power loss; it must not pay an fsync per commit.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        self._conn = conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise BackendError(f"sqlite cache {self.path} is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        except (sqlite3.Error, OSError) as exc:
            raise BackendError(f"sqlite cache {self.path}: {exc}") from exc

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise BackendError(f"sqlite cache {self.path} is not open")
        return self._conn

    # -- operations (each body runs on the cache's thread) -------------------------------------
    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []

        def read() -> list[bytes | None]:
            now = time.time()
            found: dict[str, bytes] = {}
            for chunk in _chunks(keys):
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, value FROM cache WHERE key IN ({marks}) AND (expires_at IS NULL OR expires_at > ?)",
                    (*chunk, now),
                )
                found.update(rows)
            return [found.get(key) for key in keys]

        return await self._run(read)

    async def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        if not items:
            return
        lifetime = self.default_ttl if ttl is None else ttl
        rows = list(items.items())

        def write() -> None:
            now = time.time()
            expires_at = None if lifetime is None else now + lifetime
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT OR REPLACE INTO cache (key, value, expires_at) VALUES (?, ?, ?)",
                    [(key, bytes(value), expires_at) for key, value in rows],
                )
                if now >= self._next_purge:
                    self._next_purge = now + self.purge_interval
                    db.execute("DELETE FROM cache WHERE expires_at <= ?", (now,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

        await self._run(write)

    async def delete_many(self, keys: Sequence[str]) -> None:
        if not keys:
            return

        def delete() -> None:
            for chunk in _chunks(keys):
                marks = ",".join("?" * len(chunk))
                self._db.execute(f"DELETE FROM cache WHERE key IN ({marks})", tuple(chunk))

        await self._run(delete)

    async def ttl(self, key: str) -> float | None:
        """Seconds left for ``key``; ``math.inf`` if it never expires, ``None`` if missing."""

        def read() -> float | None:
            now = time.time()
            row = self._db.execute(
                "SELECT expires_at FROM cache WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
                (key, now),
            ).fetchone()
            if row is None:
                return None
            return math.inf if row[0] is None else max(0.0, float(row[0]) - now)

        return await self._run(read)

    async def purge(self) -> int:
        """Delete every expired row now; returns how many went."""

        def delete() -> int:
            return self._db.execute("DELETE FROM cache WHERE expires_at <= ?", (time.time(),)).rowcount

        return await self._run(delete)

    async def ping(self) -> None:
        await self._run(lambda: self._db.execute("SELECT 1").fetchone())
