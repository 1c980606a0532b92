"""What only the SQLite log promises: its file format, partition counts, truncation, kill -9, fsync modes."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest
from pydantic import ValidationError

from shoal.errors import BackendError, InvalidInput, ShuttingDown
from shoal.log import partition_for
from shoal.log.sqlite import Fsync, SqliteLog
from tests.app_fixtures import make_settings, running_app, services_of
from tests.log.test_contract import WAIT, drain
from tests.waiting import eventually

CRASH_WRITER = Path(__file__).with_name("crash_writer.py")


async def test_file_is_in_wal_mode(tmp_path: Path) -> None:
    async with SqliteLog(tmp_path / "log.db") as log:
        await log.append("t", [("k", b"v")])
        with closing(sqlite3.connect(tmp_path / "log.db")) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert conn.execute('SELECT topic, "partition", "offset", key, value FROM messages').fetchall() == [
                ("t", partition_for("k", 4), 0, "k", b"v")
            ]


async def test_a_topic_keeps_its_partition_count_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with SqliteLog(path, partitions=8) as log:
        before = await log.append("old", [(f"k{i}", b"v") for i in range(20)])
    async with SqliteLog(path, partitions=2) as log:
        after = await log.append("old", [(f"k{i}", b"v") for i in range(20)])
        fresh = await log.append("new", [(f"k{i}", b"v") for i in range(20)])
    assert [m.partition for m in after] == [m.partition for m in before]
    per_partition = Counter(m.partition for m in before)
    assert [m.offset for m in after] == [m.offset + per_partition[m.partition] for m in before]
    assert {m.partition for m in fresh} <= {0, 1}


async def test_truncate_drops_what_every_group_committed(tmp_path: Path) -> None:
    async with SqliteLog(tmp_path / "log.db", partitions=1) as log:
        await log.append("t", [("k", b"v")] * 10)
        async with log.consumer("t", "a") as a, log.consumer("t", "b") as b:
            await a.commit((await drain(a, 10))[:7])
            assert await log.truncate("t", ["a", "b"]) == 0  # b never committed
            await b.commit((await drain(b, 10))[:4])
        assert await log.truncate("t", ["a", "b"]) == 4
        (message,) = await log.append("t", [("k", b"after")])
        assert message.offset == 10  # offsets are never reused
        async with log.consumer("t", "b") as b:
            assert [m.offset for m in await drain(b, 7)] == [4, 5, 6, 7, 8, 9, 10]
        assert await log.lag("t", "b") == 7


async def test_rewind_hands_a_batch_out_again(tmp_path: Path) -> None:
    async with SqliteLog(tmp_path / "log.db") as log:
        await log.append("t", [("k", b"1"), ("k", b"2"), ("k", b"3")])
        async with log.consumer("t", "g") as consumer:
            batch = await drain(consumer, 3)
            await consumer.rewind(batch[1:])
            assert await drain(consumer, 2) == batch[1:]


async def test_a_closed_log_refuses_appends_and_fails_ping(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.db")
    async with log:
        await log.ping()
    with pytest.raises(ShuttingDown):
        await log.append("t", [("k", b"v")])
    with pytest.raises(BackendError):
        await log.ping()


async def test_closing_the_log_wakes_its_consumers(tmp_path: Path) -> None:
    async with SqliteLog(tmp_path / "log.db") as log:
        waiting = asyncio.create_task(log.consumer("t", "g").poll(10))
    async with asyncio.timeout(WAIT):
        assert await waiting == []


async def test_a_waiting_poll_is_woken_by_the_writer(tmp_path: Path) -> None:
    async with SqliteLog(tmp_path / "log.db") as log, log.consumer("t", "g") as consumer:
        waiting = asyncio.create_task(consumer.poll(10))
        # White-box: make sure the poll is parked on its notification before the append.
        await eventually(lambda: asyncio.sleep(0, bool(log._waiters.get("t"))))
        (appended,) = await log.append("t", [("k", b"v")])
        async with asyncio.timeout(WAIT):
            assert await waiting == [appended]


async def test_a_failed_transaction_is_a_backend_error_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with SqliteLog(path, partitions=1) as log:
        await log.append("t", [("k", b"0")])
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("ALTER TABLE messages RENAME TO hidden")
        with pytest.raises(BackendError):
            await log.append("t", [("k", b"lost")])
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("ALTER TABLE hidden RENAME TO messages")
        (message,) = await log.append("t", [("k", b"1")])
        assert message.offset == 1  # the failed transaction used no offset


async def test_an_unusable_file_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError):
        async with SqliteLog(tmp_path):  # a directory, not a database file
            pass


@pytest.mark.parametrize("fsync", ["always", "interval"])
async def test_nothing_acknowledged_is_lost_under_kill_9(tmp_path: Path, fsync: str) -> None:
    path = tmp_path / "log.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(CRASH_WRITER), str(path), "t", "32", fsync, stdout=asyncio.subprocess.PIPE, env=env
    )
    assert process.stdout is not None
    acked: list[str] = []
    try:
        async with asyncio.timeout(60):
            while len(acked) < 3000:
                raw = await process.stdout.readline()
                assert raw, f"the writer exited early (code {await process.wait()})"
                acked.append(raw.decode())
    finally:
        if process.returncode is None:
            process.kill()  # SIGKILL: no cleanup, no final checkpoint
    # Lines already in the pipe were acknowledged before the kill too.
    acked.extend((await process.stdout.read()).decode().splitlines(keepends=True))
    assert await process.wait() == -9

    async with SqliteLog(path) as log, log.consumer("t", "check") as consumer:
        stored = {(m.partition, m.offset): (m.key, m.value.decode()) for m in await drain(consumer, len(acked), 5000)}
    for line in acked:
        if not line.endswith("\n"):
            continue  # torn by the kill mid-write
        partition, offset, key, value = line.split()
        assert stored.get((int(partition), int(offset))) == (key, value)
    for number in {p for p, _ in stored}:
        offsets = sorted(o for p, o in stored if p == number)
        assert offsets == list(range(len(offsets)))


async def test_interval_fsync_follows_a_commit_and_never_runs_idle(tmp_path: Path) -> None:
    async with SqliteLog(tmp_path / "log.db", fsync="interval", fsync_interval_s=0.3) as log:
        assert log.fsyncs == 0  # nothing written: no timer, no fsync
        await log.append("t", [("k", b"1")])
        await log.append("t", [("k", b"2")])  # within the same interval: one fsync covers both

        async def fsyncs() -> int:
            return log.fsyncs

        assert await eventually(fsyncs) == 1
        await log.append("t", [("k", b"3")])  # a commit after the round arms the next one
        assert await eventually(fsyncs, until=lambda n: n >= 2) == 2


async def test_interval_fsync_syncs_what_is_pending_on_close(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.db", fsync="interval", fsync_interval_s=60)
    async with log:
        await log.append("t", [("k", b"v")])
        assert log.fsyncs == 0  # the timer has not fired
    assert log.fsyncs == 1


async def test_fsync_mode_is_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="fsync"):
        SqliteLog(tmp_path / "log.db", fsync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="fsync_interval_s"):
        SqliteLog(tmp_path / "log.db", fsync="interval", fsync_interval_s=0)


async def test_settings_choose_the_fsync_mode(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="log_fsync"):
        make_settings(tmp_path, log_fsync="sometimes")
    assert make_settings(tmp_path).log_fsync == "interval"  # the default: no 202 waits for the disk
    settings = make_settings(tmp_path / "always", log_fsync="always")
    async with running_app(settings, features=[]) as (_, app):
        log = services_of(app).log
        assert isinstance(log, SqliteLog)
        assert log.fsync == "always"
    settings = make_settings(tmp_path, log_fsync="interval", log_fsync_interval_s=0.05)
    async with running_app(settings, features=[]) as (client, app):
        log = services_of(app).log
        assert isinstance(log, SqliteLog)
        assert (log.fsync, log.fsync_interval_s) == ("interval", 0.05)
        assert (await client.post("/v1/collections", json={"name": "c"})).status_code == 201
        r = await client.post("/v1/collections/c/records", json={"records": [{"text": "an accepted record"}]})
        assert r.status_code == 202

        async def fsyncs() -> int:
            return log.fsyncs

        assert await eventually(fsyncs) >= 1


@pytest.mark.parametrize("fsync", ["always", "interval"])
async def test_checkpoints_run_in_the_background_not_in_commits(tmp_path: Path, fsync: Fsync) -> None:
    """The writer's connection never checkpoints; the background round copies the WAL into the main file."""
    path = tmp_path / "log.db"
    async with SqliteLog(path, fsync=fsync, fsync_interval_s=0.05) as log:
        for start in range(0, 2000, 100):
            await log.append("t", [(f"k{i}", os.urandom(2048)) for i in range(start, start + 100)])

        async def main_file_bytes() -> int:
            return path.stat().st_size

        # ~4 MB of messages reach the main file only through the checkpointer's rounds
        assert await eventually(main_file_bytes, until=lambda n: n > 4_000_000) > 4_000_000
        async with log.consumer("t", "check") as consumer:
            assert len(await drain(consumer, 2000, 2000)) == 2000
