"""Jobs: backfills and model switches running inside the server, at most one per collection.

A job is a tracked task with a stop event. HTTP callers follow it as a stream of progress events;
when the follower goes away (Ctrl-C, ``kill`` of ``shoal backfill``) the job is asked to stop and
ends cleanly after writing the pages already embedded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from shoal.embedops.backfill import BackfillReport
from shoal.errors import Conflict, ShoalError
from shoal.tasks import TaskSet

logger = structlog.get_logger(__name__)

FINAL_STATES = frozenset({"done", "stopped", "failed"})


@dataclass
class Job:
    """One running (or finished) job. ``info`` carries job-specific facts (e.g. ``promoted``)."""

    kind: str
    collection: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    report: BackfillReport | None = None
    info: dict[str, Any] = field(default_factory=dict)
    state: str = "running"
    error: str | None = None
    version: int = 0
    started: float = field(default_factory=time.time)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set (then replaced by a fresh one) on every change: followers wait on the one they hold."""
    task: asyncio.Task[Any] | None = None

    def progress(self, report: BackfillReport) -> None:
        """Record progress and wake followers (called synchronously by the backfill engine)."""
        self.report = report
        self._bump()

    def _bump(self) -> None:
        self.version += 1
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def snapshot(self) -> dict[str, Any]:
        report = self.report.to_dict() if self.report is not None else {}
        return {
            **report,
            "kind": self.kind,
            "collection": self.collection,
            "state": self.state,
            "error": self.error,
            "started_at": self.started,
            **self.info,
        }


class Jobs:
    """The jobs of this process, one per collection, run as tracked tasks."""

    def __init__(self, tasks: TaskSet) -> None:
        self._tasks = tasks
        self._jobs: dict[str, Job] = {}

    def get(self, collection: str) -> Job | None:
        return self._jobs.get(collection)

    def start(self, kind: str, collection: str, body: Callable[[Job], Awaitable[None]]) -> Job:
        """Run ``body(job)`` as the collection's job.

        Raises:
            Conflict: a job is already running on ``collection``.
        """
        running = self._jobs.get(collection)
        if running is not None and running.state == "running":
            raise Conflict(f"a {running.kind} is already running on {collection!r}")
        job = Job(kind, collection)
        self._jobs[collection] = job
        job.task = self._tasks.spawn(self._run(job, body), name=f"embedops:{kind}:{collection}")
        return job

    async def _run(self, job: Job, body: Callable[[Job], Awaitable[None]]) -> None:
        try:
            await body(job)
            job.state = "stopped" if job.stop.is_set() and job.info.get("complete") is not True else "done"
        except asyncio.CancelledError:
            job.state = "stopped"
            raise
        except ShoalError as exc:
            job.state, job.error = "failed", f"{exc.code}: {exc}"
        except Exception as exc:  # a bug must end the job visibly, not kill the follower's stream
            logger.exception("embedops job failed", kind=job.kind, collection=job.collection)
            job.state, job.error = "failed", repr(exc)
        finally:
            if job.report is not None and job.state != "running" and job.report.state == "running":
                job.report.state = job.state
            job._bump()

    async def stop_all(self, timeout: float) -> None:
        """Ask every running job to stop and wait for them to write what is in flight."""
        running = [j for j in self._jobs.values() if j.state == "running" and j.task is not None]
        for job in running:
            job.stop.set()
        tasks = [j.task for j in running if j.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)

    async def follow(self, job: Job, heartbeat: float) -> AsyncIterator[dict[str, Any]]:
        """Progress snapshots of ``job`` until it ends (the last one is final); at least one every
        ``heartbeat`` seconds. A follower that goes away (the iterator is closed) stops the job."""
        seen = -1
        try:
            while True:
                if job.version != seen:
                    seen = job.version
                    snapshot = job.snapshot()
                    yield {"event": job.state if job.state in FINAL_STATES else "progress", **snapshot}
                    if job.state in FINAL_STATES:
                        return
                changed = job.changed
                if job.version == seen:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), heartbeat)
                if job.version == seen:
                    seen = -1  # heartbeat: repeat the latest snapshot
        finally:
            if job.state == "running":
                job.stop.set()
