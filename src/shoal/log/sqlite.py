"""The embedded log: one SQLite file in WAL mode, written by a single group-committing writer.

Every ``append`` is queued for one writer, which writes everything queued in ONE transaction on its
own connection, then resolves all the waiting callers and wakes the consumers of the topics it wrote.
Consumers read through their own connections (WAL lets readers run beside the writer) and wait on
in-process notifications, never a polling loop.

Where the statements run: reads, and the writer's transactions when no commit waits for the disk
(``fsync="interval"``), run on the event loop's thread, as Redis writes its append-only file from its
event loop and fsyncs it from a thread. They are short (a few hundred microseconds: SQLite's page
cache, no fsync), and each one on a worker thread cost far more than itself: the sqlite3 module
releases the GIL around every statement step, and while the loop is busy a thread waits up to
Python's switch interval (5 ms) to win it back, once per step. Under a few hundred requests a
second that convoy, not the SQL, was the 202's tail (bench/recommend.py, POST → 202 at 500/s: p50 /
p99 8–10 / 46–80 ms on worker threads, 2–5 / 16–25 ms on the loop). What waits for the disk stays
on threads: the commits of ``fsync="always"``, the background fsync and the checkpoints.

When ``append`` returns, its transaction is committed to the file: it survives ``kill -9`` of the
process either way. ``fsync`` decides what survives a power loss or a kernel crash too:

- ``"always"`` (``synchronous=FULL``): every commit is fsynced before ``append`` returns. A commit costs
  one fsync however many appends share it; the disk's fsync tail is the append's tail.
- ``"interval"`` (``synchronous=NORMAL``): commits reach the OS and the write-ahead file is fsynced in
  the background at most ``fsync_interval_s`` after a commit (Redis ``appendfsync everysec``, Kafka's
  ``flush.ms``): at most that window is lost to a power cut, and no request waits for the disk.

The file has one writer: use it from one process (scale out with Kafka).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import structlog

from shoal.errors import BackendError, InvalidInput, Overloaded, ShuttingDown
from shoal.log.base import Consumer, Log, Message, partition_for

T = TypeVar("T")

Fsync = Literal["always", "interval"]

logger = structlog.get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS partitions (
    topic TEXT NOT NULL,
    "partition" INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, "partition")
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    topic TEXT NOT NULL,
    "partition" INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (topic, "partition", "offset")
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offsets (
    "group" TEXT NOT NULL,
    topic TEXT NOT NULL,
    "partition" INTEGER NOT NULL,
    committed INTEGER NOT NULL,
    PRIMARY KEY ("group", topic, "partition")
) WITHOUT ROWID;
"""

_INSERT_MESSAGE = 'INSERT INTO messages (topic, "partition", "offset", key, value, ts) VALUES (?, ?, ?, ?, ?, ?)'
_UPSERT_PARTITION = (
    'INSERT INTO partitions (topic, "partition", next_offset) VALUES (?, ?, ?) '
    'ON CONFLICT (topic, "partition") DO UPDATE SET next_offset = excluded.next_offset'
)
# max(): commits of one group can reach the writer out of order; the committed offset never goes back.
_UPSERT_OFFSET = (
    'INSERT INTO offsets ("group", topic, "partition", committed) VALUES (?, ?, ?, ?) '
    'ON CONFLICT ("group", topic, "partition") DO UPDATE SET committed = max(committed, excluded.committed)'
)
_SELECT_ALL_ENDS = 'SELECT topic, "partition", next_offset FROM partitions ORDER BY topic, "partition"'
_SELECT_ENDS = 'SELECT "partition", next_offset FROM partitions WHERE topic = ? ORDER BY "partition"'
_SELECT_COMMITTED = 'SELECT "partition", committed FROM offsets WHERE "group" = ? AND topic = ?'
_SELECT_MESSAGES = (
    'SELECT "offset", key, value, ts FROM messages WHERE topic = ? AND "partition" = ? AND "offset" >= ? '
    'ORDER BY "offset" LIMIT ?'
)
_SUM_APPENDED = "SELECT coalesce(sum(next_offset), 0) FROM partitions WHERE topic = ?"
_SUM_COMMITTED = 'SELECT coalesce(sum(committed), 0) FROM offsets WHERE "group" = ? AND topic = ?'
_SELECT_FLOOR = 'SELECT min(committed), count(*) FROM offsets WHERE topic = ? AND "partition" = ? AND "group" IN'
_DELETE_BELOW = 'DELETE FROM messages WHERE topic = ? AND "partition" = ? AND "offset" < ?'


def _connect(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; the writer issues BEGIN/COMMIT itself.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread, timeout=30.0)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


@dataclass(slots=True)
class _Append:
    topic: str
    items: Sequence[tuple[str, bytes]]
    future: asyncio.Future[list[Message]]


@dataclass(slots=True)
class _Commit:
    group: str
    topic: str
    offsets: dict[int, int]
    future: asyncio.Future[None]


@dataclass(slots=True)
class _Truncate:
    topic: str
    groups: Sequence[str]
    future: asyncio.Future[int]


_Op = _Append | _Commit | _Truncate


@dataclass(slots=True)
class _Writes:
    """What one transaction changes, collected before it is executed."""

    messages: list[tuple[str, int, int, str, bytes, float]] = field(default_factory=list)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    committed: list[tuple[str, str, int, int]] = field(default_factory=list)


class _Reader:
    """A read connection used on the event loop's thread (see the module docstring); opened on first use."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` with the connection; driver errors become ``BackendError``. A WAL read never
        waits for the writer."""
        if self._closed:
            raise ShuttingDown("the log connection is closed")
        try:
            if self._conn is None:
                self._conn = _connect(self._path)
                self._conn.execute("PRAGMA query_only = ON")
            return fn(self._conn)
        except sqlite3.Error as exc:
            raise BackendError(f"sqlite log read failed: {exc}") from exc

    async def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _Checkpointer:
    """WAL upkeep on its own thread and connection, off the writer's path.

    The first commit after a round arms one timer; when it fires, a round runs: with ``fsync_wal`` it
    fsyncs the ``-wal`` file (every commit so far then survives a power loss; any descriptor of the
    file flushes the pages the writer wrote), then a PASSIVE checkpoint copies committed pages into the
    main file beside the writer, so the WAL stays small and no COMMIT pays a checkpoint's fsyncs. An
    idle log arms nothing. ``close`` runs the round a pending timer would have run.
    """

    def __init__(self, path: Path, *, fsync_wal: bool, interval_s: float) -> None:
        self._wal = path.with_name(path.name + "-wal")
        self._path = path
        self._fsync_wal = fsync_wal
        self._interval_s = interval_s
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used on the executor's one thread only
        self._timer: asyncio.TimerHandle | None = None
        self._rounds: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()  # one round at a time
        self.fsyncs = 0

    def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shoal-log-checkpoint")

    def committed(self) -> None:
        if self._timer is None and self._executor is not None:
            self._timer = asyncio.get_running_loop().call_later(self._interval_s, self._fire)

    def _fire(self) -> None:
        self._timer = None
        task = asyncio.create_task(self._round(), name="shoal-log-checkpoint")
        self._rounds.add(task)
        task.add_done_callback(self._rounds.discard)

    async def _round(self) -> None:
        async with self._lock:
            try:
                await asyncio.get_running_loop().run_in_executor(self._executor, self._round_sync)
            except (OSError, sqlite3.Error):
                # The next commit arms another round; the commits stay safe from a process crash.
                logger.exception("sqlite log fsync or checkpoint failed", path=str(self._path))

    def _round_sync(self) -> None:
        if self._fsync_wal:
            try:
                fd = os.open(self._wal, os.O_RDONLY)
            except FileNotFoundError:  # no WAL: every commit is in the (synced) main file
                pass
            else:
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self.fsyncs += 1
        if self._conn is None:
            self._conn = _connect(self._path)
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            await self._round()
        if self._rounds:
            await asyncio.gather(*self._rounds)
        executor, self._executor = self._executor, None
        await asyncio.get_running_loop().run_in_executor(executor, self._close_sync)
        executor.shutdown()

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class SqliteLog(Log):
    """A durable log in one SQLite file (WAL) with group commit.

    Args:
        path: the database file (created with its parent directory).
        partitions: partitions of a topic created by this instance; a topic keeps the count it was
            created with, so reopening with another count does not move keys.
        queue_size: most messages waiting for the writer; past it ``append`` raises ``Overloaded``.
        fsync: ``"always"`` (fsync every commit) or ``"interval"`` (fsync in the background; see above).
        fsync_interval_s: with ``"interval"``, the longest a commit waits for its fsync.
    """

    def __init__(
        self,
        path: Path,
        partitions: int = 4,
        *,
        queue_size: int = 50_000,
        fsync: Fsync = "always",
        fsync_interval_s: float = 1.0,
    ) -> None:
        if partitions < 1 or queue_size < 1:
            raise InvalidInput("partitions and queue_size must be at least 1")
        if fsync not in ("always", "interval"):
            raise InvalidInput(f"fsync must be 'always' or 'interval', not {fsync!r}")
        if fsync_interval_s <= 0:
            raise InvalidInput("fsync_interval_s must be positive")
        self.path = Path(path)
        self.partitions = partitions
        self.queue_size = queue_size
        self.fsync = fsync
        self.fsync_interval_s = fsync_interval_s
        self._checkpointer = _Checkpointer(self.path, fsync_wal=fsync == "interval", interval_s=fsync_interval_s)
        self._ops: list[_Op] = []
        self._queued = 0  # messages in self._ops
        self._wakeup = asyncio.Event()
        self._closing = False
        self._writer_task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        # The writer's connection and each partition's next offset: used by one transaction at a time,
        # on the loop (``fsync="interval"``) or the writer's thread (``"always"``, truncations).
        self._conn: sqlite3.Connection | None = None
        self._next: dict[str, list[int]] = {}
        self._reader = _Reader(self.path)
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._consumers: set[SqliteConsumer] = set()

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shoal-log-writer")
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._open_writer)
        except sqlite3.Error as exc:
            self._executor.shutdown()
            raise BackendError(f"cannot open the sqlite log at {self.path}: {exc}") from exc
        self._checkpointer.open()
        self._writer_task = asyncio.create_task(self._write_loop(), name="shoal-log-writer")

    @property
    def fsyncs(self) -> int:
        """Background fsyncs of the write-ahead file so far (``fsync="interval"``)."""
        return self._checkpointer.fsyncs

    async def close(self) -> None:
        """Write what is queued, then close. Pending consumer polls return ``[]``."""
        self._closing = True
        self._wakeup.set()
        if self._writer_task is not None:
            await self._writer_task
            self._writer_task = None
        await self._checkpointer.close()  # after the last commit: its fsync and checkpoint run now
        for consumer in list(self._consumers):
            await consumer.close()
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_writer)
            self._executor.shutdown()
            self._executor = None
        await self._reader.close()

    async def append(self, topic: str, items: Sequence[tuple[str, bytes]]) -> list[Message]:
        if not items:
            return []
        future: asyncio.Future[list[Message]] = asyncio.get_running_loop().create_future()
        self._submit(_Append(topic, items, future), len(items))
        return await future

    def consumer(self, topic: str, group: str) -> SqliteConsumer:
        consumer = SqliteConsumer(self, topic, group)
        self._consumers.add(consumer)
        return consumer

    async def lag(self, topic: str, group: str) -> int:
        def count(conn: sqlite3.Connection) -> int:
            appended = conn.execute(_SUM_APPENDED, (topic,)).fetchone()[0]
            committed = conn.execute(_SUM_COMMITTED, (group, topic)).fetchone()[0]
            return int(appended) - int(committed)

        return await self._reader.call(count)

    async def ping(self) -> None:
        if self._writer_task is None or self._writer_task.done():
            raise BackendError("the sqlite log is not open")
        try:
            await self._reader.call(lambda conn: conn.execute("SELECT count(*) FROM partitions").fetchone())
        except ShuttingDown as exc:
            raise BackendError("the sqlite log is closed") from exc

    async def truncate(self, topic: str, groups: Sequence[str]) -> int:
        """Delete the messages of ``topic`` that every one of ``groups`` has committed.

        Offsets are never reused. Returns how many messages were deleted.
        """
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._submit(_Truncate(topic, list(groups), future), 0)
        return await future

    # -- used by consumers -------------------------------------------------------------------------

    async def _commit(self, group: str, topic: str, offsets: dict[int, int]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Commits are not counted against queue_size: refusing them would only cause redelivery.
        self._submit(_Commit(group, topic, offsets, future), 0)
        await future

    def _waiter(self, topic: str) -> asyncio.Future[None]:
        """A future resolved after the next transaction that appends to ``topic``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(topic, set()).add(future)
        return future

    def _forget(self, topic: str, future: asyncio.Future[None]) -> None:
        self._waiters.get(topic, set()).discard(future)

    # -- the writer --------------------------------------------------------------------------------

    def _submit(self, op: _Op, size: int) -> None:
        if self._closing or self._writer_task is None:
            raise ShuttingDown("the log is not open")
        if size and self._queued and self._queued + size > self.queue_size:
            raise Overloaded(f"log append queue is full ({self._queued} messages waiting)")
        self._ops.append(op)
        self._queued += size
        self._wakeup.set()

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            ops, self._ops, self._queued = self._ops, [], 0
            if ops:
                # Everything queued while the previous transaction was running goes into this one.
                try:
                    if self.fsync == "interval" and not any(isinstance(op, _Truncate) for op in ops):
                        results = self._write(ops)  # no fsync to wait for: on the loop (module docstring)
                    else:
                        results = await loop.run_in_executor(self._executor, self._write, ops)
                except Exception as exc:
                    error = BackendError(f"sqlite log write failed: {exc}")
                    error.__cause__ = exc
                    for op in ops:
                        if not op.future.done():
                            op.future.set_exception(error)
                else:
                    self._resolve(ops, results)
                    self._checkpointer.committed()
            if self._closing and not self._ops:
                return

    def _resolve(self, ops: list[_Op], results: list[Any]) -> None:
        topics: set[str] = set()
        for op, result in zip(ops, results, strict=True):
            if not op.future.done():
                op.future.set_result(result)
            if isinstance(op, _Append):
                topics.add(op.topic)
        for topic in topics:
            for waiter in self._waiters.pop(topic, ()):
                if not waiter.done():
                    waiter.set_result(None)

    def _open_writer(self) -> None:
        conn = _connect(self.path, check_same_thread=False)  # the loop's and the writer's: one at a time
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise sqlite3.OperationalError(f"cannot switch {self.path} to WAL (journal_mode={mode})")
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.fsync == 'always' else 'NORMAL'}")
            # Checkpoints run on the checkpointer's thread, never inside a COMMIT a 202 waits for.
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.executescript(SCHEMA)
            self._next = {}
            for topic, _, next_offset in conn.execute(_SELECT_ALL_ENDS):
                self._next.setdefault(topic, []).append(next_offset)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _close_writer(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _write(self, ops: list[_Op]) -> list[Any]:
        """Run ``ops`` in one transaction; one result per op."""
        assert self._conn is not None
        conn = self._conn
        writes = _Writes()
        now = time.time()
        results: list[Any] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                if isinstance(op, _Append):
                    results.append(self._plan_append(op, writes, now))
                elif isinstance(op, _Commit):
                    writes.committed.extend((op.group, op.topic, p, o) for p, o in op.offsets.items())
                    results.append(None)
                else:
                    results.append(self._truncate(conn, op))
            conn.executemany(_INSERT_MESSAGE, writes.messages)
            conn.executemany(_UPSERT_PARTITION, [(t, p, o) for (t, p), o in writes.next_offsets.items()])
            conn.executemany(_UPSERT_OFFSET, writes.committed)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        # Only now, after COMMIT, do the new offsets become the writer's state.
        for (topic, partition), next_offset in writes.next_offsets.items():
            counters = self._next.setdefault(topic, [0] * self.partitions)
            counters[partition] = next_offset
        return results

    def _plan_append(self, op: _Append, writes: _Writes, now: float) -> list[Message]:
        counters = self._next.get(op.topic)
        if counters is None:  # a new topic: every partition gets a row, so its count is persisted
            counters = [0] * self.partitions
            for partition in range(self.partitions):
                writes.next_offsets.setdefault((op.topic, partition), 0)
        messages: list[Message] = []
        for key, value in op.items:
            partition = partition_for(key, len(counters))
            offset = writes.next_offsets.get((op.topic, partition), counters[partition])
            writes.next_offsets[(op.topic, partition)] = offset + 1
            writes.messages.append((op.topic, partition, offset, key, value, now))
            messages.append(Message(op.topic, partition, offset, key, value, now))
        return messages

    @staticmethod
    def _truncate(conn: sqlite3.Connection, op: _Truncate) -> int:
        groups = sorted(set(op.groups))
        marks = ", ".join("?" * len(groups))
        deleted = 0
        for partition, _ in conn.execute(_SELECT_ENDS, (op.topic,)).fetchall():
            floor, groups_seen = conn.execute(f"{_SELECT_FLOOR} ({marks})", (op.topic, partition, *groups)).fetchone()
            # A group that never committed this partition still needs all of it.
            if groups and groups_seen == len(groups):
                deleted += conn.execute(_DELETE_BELOW, (op.topic, partition, floor)).rowcount
        return deleted


class SqliteConsumer(Consumer):
    """Reads one topic for one group through its own connection.

    It hands out messages after the group's committed offsets and after what it already handed out
    (an in-memory fetch position per partition). Uncommitted messages come back after a restart.
    One consumer per group: the embedded log does not split partitions between consumers.
    """

    def __init__(self, log: SqliteLog, topic: str, group: str) -> None:
        self.topic = topic
        self.group = group
        self._log = log
        self._reader = _Reader(log.path)
        self._positions: dict[int, int] | None = None
        self._start = 0  # partition read first, rotated so a busy partition cannot starve others
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    async def poll(self, max_records: int, timeout: float | None = None) -> list[Message]:
        if max_records < 1:
            raise InvalidInput("max_records must be at least 1")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._closed:
            # Register before reading, so an append committed during the read still wakes us.
            waiter = self._waiter = self._log._waiter(self.topic)
            try:
                try:
                    messages = await self._reader.call(lambda conn: self._fetch(conn, max_records))
                except ShuttingDown:
                    return []
                if messages or self._closed:
                    return messages
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return []
                try:
                    async with asyncio.timeout(remaining):
                        await waiter
                except TimeoutError:
                    return []
            finally:
                self._log._forget(self.topic, waiter)
                self._waiter = None
        return []

    async def commit(self, messages: Sequence[Message]) -> None:
        offsets = self.next_offsets(messages)
        if offsets:
            await self._log._commit(self.group, self.topic, offsets)

    async def rewind(self, messages: Sequence[Message]) -> None:
        """Hand ``messages`` (and everything after them in their partitions) out again on next poll."""
        firsts: dict[int, int] = {}
        for message in messages:
            firsts[message.partition] = min(firsts.get(message.partition, message.offset), message.offset)

        def move(_: sqlite3.Connection) -> None:
            if self._positions is not None:
                for partition, offset in firsts.items():
                    self._positions[partition] = min(self._positions.get(partition, 0), offset)

        if firsts:
            await self._reader.call(move)

    async def lag(self) -> int:
        return await self._log.lag(self.topic, self.group)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._log._consumers.discard(self)
        await self._reader.close()

    def _fetch(self, conn: sqlite3.Connection, max_records: int) -> list[Message]:
        """The next messages after the fetch positions."""
        if self._positions is None:
            self._positions = dict(conn.execute(_SELECT_COMMITTED, (self.group, self.topic)).fetchall())
        ends = dict(conn.execute(_SELECT_ENDS, (self.topic,)).fetchall())
        order = sorted(ends)
        if not order:
            return []
        self._start = (self._start + 1) % len(order)
        messages: list[Message] = []
        for partition in order[self._start :] + order[: self._start]:
            position = self._positions.get(partition, 0)
            if position >= ends[partition]:
                continue
            batch = [
                Message(self.topic, partition, offset, key, bytes(value), ts)
                for offset, key, value, ts in conn.execute(
                    _SELECT_MESSAGES, (self.topic, partition, position, max_records - len(messages))
                )
            ]
            if batch:
                self._positions[partition] = batch[-1].offset + 1
                messages.extend(batch)
            if len(messages) >= max_records:
                break
        return messages
