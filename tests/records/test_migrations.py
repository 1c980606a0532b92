"""Schema migrations: SQLite migrates itself on open, PostgreSQL asks for ``shoal migrate``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from shoal.errors import BackendError, ConfigurationError
from shoal.records import Collection, migrations
from shoal.records.migrations import check_current, head_revisions, migrate
from shoal.records.schema import make_engine, metadata
from shoal.records.sql import SqlRecordStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def all_tables() -> sa.MetaData:
    """Every table the migrations create: the record store's and the features' own."""
    import shoal.insights.store as insights_store
    import shoal.recommend.store  # noqa: F401 - registers its tables on the shared metadata

    combined = sa.MetaData()
    for source in (metadata, insights_store.metadata):
        for table in source.tables.values():
            if table.name not in combined.tables:
                table.to_metadata(combined)
    return combined


def _diff(connection: Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(connection), all_tables()))


async def schema_diff(url: str) -> list[Any]:
    """Differences between the migrated database and ``schema.py`` (should be none)."""
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_diff)
    finally:
        await engine.dispose()


async def set_revision(url: str, revision: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        await engine.dispose()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'dir' / 'shoal.db'}"


async def test_sqlite_open_migrates_a_fresh_file(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    assert not await check_current(url)
    async with SqlRecordStore(url) as store:
        assert await store.create_collection(Collection("c", 3, "m", T0, "c__v1"))
    assert await check_current(url)
    async with SqlRecordStore(url) as store:  # reopening keeps the data
        assert [c.name for c in await store.list_collections()] == ["c"]
    assert await schema_diff(url) == []


async def test_sqlite_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    stores = [SqlRecordStore(url) for _ in range(3)]
    await asyncio.gather(*(store.open() for store in stores))
    for store in stores:
        await store.close()
    assert await check_current(url)


async def test_sqlite_without_auto_migrate_only_checks(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    with pytest.raises(ConfigurationError, match="shoal migrate"):
        await SqlRecordStore(url, auto_migrate=False).open()
    await migrate(url)
    async with SqlRecordStore(url, auto_migrate=False) as store:
        await store.ping()


async def test_in_memory_sqlite(tmp_path: Path) -> None:
    async with SqlRecordStore("sqlite+aiosqlite://") as store:
        assert await store.create_collection(Collection("c", 3, "m", T0, "c__v1"))
        assert [c.name for c in await store.list_collections()] == ["c"]


@pytest.mark.service
async def test_postgres_behind_refuses_to_open_until_migrated(empty_pg_url: str) -> None:
    assert not await check_current(empty_pg_url)
    with pytest.raises(ConfigurationError, match="run `shoal migrate`"):
        await SqlRecordStore(empty_pg_url).open()

    await migrate(empty_pg_url)
    await migrate(empty_pg_url)  # idempotent
    assert await check_current(empty_pg_url)
    async with SqlRecordStore(empty_pg_url) as store:
        assert await store.create_collection(Collection("c", 3, "m", T0, "c__v1"))
    assert await schema_diff(empty_pg_url) == []


@pytest.mark.service
async def test_postgres_ahead_of_the_code_says_so(empty_pg_url: str) -> None:
    await migrate(empty_pg_url)
    await set_revision(empty_pg_url, "9999_from_the_future")
    with pytest.raises(ConfigurationError, match="newer than this version"):
        await SqlRecordStore(empty_pg_url).open()


@pytest.mark.service
async def test_postgres_unreachable_is_a_backend_error(postgres_url: str) -> None:
    url = sa.make_url(postgres_url).set(port=1).render_as_string(hide_password=False)
    with pytest.raises(BackendError):
        await SqlRecordStore(url).open()


def test_one_head_revision() -> None:
    """Every feature's revision chains onto the previous one: one linear history."""
    heads = head_revisions()
    assert len(heads) == 1
    newest = sorted(p.stem for p in (Path(migrations.__file__).parent / "versions").glob("0*.py"))[-1]
    assert heads == {newest}
