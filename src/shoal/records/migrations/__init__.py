"""Alembic migrations of the record store, run from code (no ``alembic.ini`` on disk).

``migrate(url)`` brings a database to the latest revision (``shoal migrate``); ``check_current(url)``
says whether it is there. The SQLite default migrates itself on open; PostgreSQL only checks, so a
schema change on a shared server is a deliberate step.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from shoal.errors import BackendError, ConfigurationError
from shoal.records.schema import make_engine

BEHIND = "database schema is behind; run `shoal migrate`"
# an arbitrary constant: the advisory lock that serialises concurrent migrators on one PostgreSQL database
_PG_LOCK_KEY = 7_465_801


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    return config


def head_revisions() -> set[str]:
    """The revisions the code expects the database to be at."""
    return set(ScriptDirectory.from_config(_config()).get_heads())


def _current(connection: Connection) -> set[str]:
    return set(MigrationContext.configure(connection).get_current_heads())


def _upgrade(connection: Connection) -> None:
    config = _config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _sqlite_locked(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and "database is locked" in str(exc)


async def upgrade_engine(engine: AsyncEngine) -> None:
    """Upgrade the database behind ``engine`` to head, in one transaction.

    Processes opening a new SQLite file together race to switch it to WAL, and SQLite answers some of
    those conflicts "database is locked" at once instead of waiting out ``busy_timeout``; the upgrade
    is idempotent (it reads the revision inside its transaction), so it is simply tried again.
    """
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_sqlite_locked),
            stop=stop_after_attempt(5),
            wait=wait_random_exponential(multiplier=0.05, max=1.0),
            reraise=True,
        ):
            with attempt:
                await _upgrade_once(engine)
    except (SQLAlchemyError, OSError) as exc:
        raise BackendError(f"record store migration failed: {exc}") from exc


async def _upgrade_once(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            # take the write lock first: SQLite would otherwise autocommit DDL statement by statement
            # and two processes starting together could both try to create the tables
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif engine.dialect.name == "postgresql":
            await connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
        await connection.run_sync(_upgrade)
        await connection.commit()


async def ensure_current(engine: AsyncEngine) -> None:
    """Raise ``ConfigurationError`` (naming the fix) unless the database is at the head revision."""
    try:
        async with engine.connect() as connection:
            current = await connection.run_sync(_current)
    except (SQLAlchemyError, OSError) as exc:
        raise BackendError(f"record store unreachable: {exc}") from exc
    heads = head_revisions()
    if current == heads:
        return
    unknown = current - {rev.revision for rev in ScriptDirectory.from_config(_config()).walk_revisions()}
    if unknown:
        raise ConfigurationError(
            f"database schema is at revision {sorted(unknown)}, newer than this version of Shoal knows; upgrade Shoal"
        )
    raise ConfigurationError(BEHIND)


async def migrate(url: str) -> None:
    """Bring the database at ``url`` to the latest schema (idempotent)."""
    engine = make_engine(url)
    try:
        await upgrade_engine(engine)
    finally:
        await engine.dispose()


async def check_current(url: str) -> bool:
    """True when the database at ``url`` is at the latest schema revision."""
    engine = make_engine(url)
    try:
        await ensure_current(engine)
    except ConfigurationError:
        return False
    finally:
        await engine.dispose()
    return True
