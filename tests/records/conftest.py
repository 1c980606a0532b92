"""Record store fixtures: one contract suite over SQLite (a temp file) and PostgreSQL (a throwaway
database on the shared server, created for the session and dropped after it)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from shoal.records.migrations import migrate
from shoal.records.sql import SqlRecordStore
from tests.conftest import POSTGRES_URL, require_service


def _with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_database(server_url: str) -> str:
    """Create a new, empty database on the server of ``server_url``; return its URL."""
    name = f"shoal_records_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_asyncpg_dsn(server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return _with_database(server_url, name)


async def drop_database(server_url: str, url: str) -> None:
    """Drop the database of ``url`` (made by ``create_database``), closing whatever is still connected."""
    admin = await asyncpg.connect(_asyncpg_dsn(server_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def pg_records_url() -> Iterator[str]:
    """A migrated throwaway PostgreSQL database shared by the session's contract tests."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    # sync fixture: a session-wide database must outlive each test's event loop
    url = asyncio.run(create_database(POSTGRES_URL))
    try:
        asyncio.run(migrate(url))
        yield url
    finally:
        asyncio.run(drop_database(POSTGRES_URL, url))


@pytest.fixture
async def empty_pg_url(postgres_url: str) -> AsyncIterator[str]:
    """A fresh, unmigrated PostgreSQL database for one test."""
    url = await create_database(postgres_url)
    try:
        yield url
    finally:
        await drop_database(postgres_url, url)


async def _truncate(url: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await connection.execute("TRUNCATE records, collections")
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database of each implementation (sync: the session database is made outside any loop)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"
    url: str = request.getfixturevalue("pg_records_url")
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlRecordStore]:
    async with SqlRecordStore(store_url) as opened:
        try:
            yield opened
        finally:
            if store_url.startswith("postgresql"):  # the session database outlives this test
                await _truncate(store_url)
