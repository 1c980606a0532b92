"""The embedding engine: one provider behind micro-batching, a bounded queue and a two-level cache.

Callers ``await engine.embed(texts)`` from anywhere. Texts already seen come from the L1 (in-process
LRU) or the L2 (a ``Cache``: SQLite file or Redis), keyed by ``sha256(model_id + "\\0" + text)``. The
rest join one bounded queue; a single batcher task takes what is queued (texts that arrive while a batch
runs form the next one), sorts it by length so each batch pads little, and runs the provider batch by
batch.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import numpy as np
import structlog
from cachetools import TTLCache

from shoal.cache.base import Cache
from shoal.embedding.base import EmbeddingProvider, Vectors
from shoal.errors import BackendError, EmbeddingError, Overloaded, ShoalError, ShuttingDown

logger = structlog.get_logger(__name__)

_WINDOW_BATCHES = 8
_AHEAD = 2  # provider calls queued behind the running one (each worker finds the next pass waiting)
_WARMUP_TEXTS = ("warm up", "a slightly longer sentence to warm up the model with more tokens")


@dataclass
class _Job:
    text: str
    key: str
    future: asyncio.Future[Vectors]
    queued_at: float = field(default_factory=time.monotonic)


@dataclass
class EngineStats:
    """Counters since start; read by ``/metrics``."""

    hits_l1: int = 0
    hits_l2: int = 0
    misses: int = 0
    batches: int = 0
    texts_embedded: int = 0
    provider_seconds: float = 0.0
    batch_sizes: collections.Counter[int] = field(default_factory=collections.Counter)


class EmbeddingEngine:
    """Embeds texts with ``provider``, batching concurrent callers and caching by content.

    The engine does not open or close ``provider`` or ``l2``: whoever made them owns them.

    Args:
        provider: an open ``EmbeddingProvider``.
        l2: the shared cache below the in-process one (``None``: L1 only).
        l1_size: entries kept in process (0 disables L1).
        ttl: seconds a cached vector lives, in L1 and L2.
        batch_size: texts per provider call for a local provider; a remote one gets ``provider.max_batch``.
        max_wait_ms: how long the first text queued on an idle engine waits for company (texts queued
            while a batch runs form the next batch anyway).
        queue_size: texts waiting for the provider at most; beyond it ``embed`` raises ``Overloaded``.
    """

    def __init__(
        self,
        provider: EmbeddingProvider,
        l2: Cache | None = None,
        l1_size: int = 50_000,
        ttl: float = 30 * 24 * 3600,
        batch_size: int = 32,
        max_wait_ms: float = 0.0,
        queue_size: int = 20_000,
    ) -> None:
        self.provider = provider
        self.l2 = l2
        self.ttl = ttl
        self.batch_size = provider.max_batch if provider.is_remote else batch_size
        self.max_wait = max_wait_ms / 1000
        self.queue_size = queue_size
        self._l1: TTLCache[str, bytes] | None = TTLCache(l1_size, ttl) if l1_size > 0 else None
        self._pending: collections.deque[_Job] = collections.deque()
        self._inflight: dict[str, asyncio.Future[Vectors]] = {}
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._l2_write: asyncio.Task[None] | None = None
        self._provider_free_at = 0.0
        self._stats = EngineStats()

    # -- lifecycle -------------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="shoal-embedding-batcher")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop taking texts, finish every queued one, then stop the batcher."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            task, self._task = self._task, None
            await task

    async def warmup(self) -> None:
        """Run the provider once so the first real request does not pay for lazy initialisation.

        A remote provider is left alone: a warm-up call would be billed.
        """
        if not self.provider.is_remote:
            await self.provider.embed(list(_WARMUP_TEXTS))

    # -- facts -----------------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self.provider.model_id

    @property
    def dim(self) -> int:
        return self.provider.dim

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    def count_tokens(self, texts: Sequence[str]) -> int:
        return self.provider.count_tokens(texts)

    def throughput(self) -> float:
        """Texts per second the provider sustained while busy (0 before the first batch)."""
        s = self._stats
        return s.texts_embedded / s.provider_seconds if s.provider_seconds else 0.0

    def stats(self) -> dict[str, Any]:
        """A snapshot for metrics: cache hits and misses, queue depth, batches and throughput."""
        s = self._stats
        return {
            "hits_l1": s.hits_l1,
            "hits_l2": s.hits_l2,
            "misses": s.misses,
            "queue_depth": self.queue_depth,
            "batches": s.batches,
            "batch_sizes": dict(s.batch_sizes),
            "texts_embedded": s.texts_embedded,
            "throughput": self.throughput(),
        }

    # -- embedding -------------------------------------------------------------------------------
    async def embed_one(self, text: str) -> Vectors:
        """The vector of one text, shape ``(dim,)``."""
        vectors = await self.embed([text])
        vec: Vectors = vectors[0]
        return vec

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """Vectors of shape ``(len(texts), dim)`` in input order, float32, L2-normalised.

        Raises:
            Overloaded: the queue has no room for this call's uncached texts.
            ShuttingDown: the engine is closing or closed.
            EmbeddingError: the provider failed.
        """
        if self._task is None or self._closing:
            raise ShuttingDown("the embedding engine is not running")
        if self._task.done():
            raise EmbeddingError("the embedding batcher stopped; see the log for why")
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        unique = list(dict.fromkeys(texts))  # repeated texts are embedded once
        keys = [self._key(t) for t in unique]
        found = await self._lookup(keys)
        missing = [i for i, vec in enumerate(found) if vec is None]
        for start in range(0, len(missing), self.queue_size):
            part = missing[start : start + self.queue_size]
            vectors = await self._compute([unique[i] for i in part], [keys[i] for i in part])
            for i, vec in zip(part, vectors, strict=True):
                found[i] = vec
        by_text = dict(zip(unique, found, strict=True))
        rows = [by_text[t] for t in texts]
        return np.stack([r for r in rows if r is not None]).astype(np.float32, copy=False)

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.model_id}\0{text}".encode()).hexdigest()

    def _decode(self, raw: bytes | None) -> Vectors | None:
        if raw is None or len(raw) != self.dim * 4:
            return None  # absent, or written for another dimension: recompute
        vec: Vectors = np.frombuffer(raw, dtype=np.float32)
        return vec

    async def _lookup(self, keys: list[str]) -> list[Vectors | None]:
        found: list[Vectors | None] = [None] * len(keys)
        if self._l1 is not None:
            for i, key in enumerate(keys):
                found[i] = self._decode(self._l1.get(key))
        self._stats.hits_l1 += sum(v is not None for v in found)
        rest = [i for i, v in enumerate(found) if v is None]
        if rest and self.l2 is not None:
            try:
                raws = await self.l2.get_many([keys[i] for i in rest])
            except BackendError as exc:
                # The L2 only saves work: without it the provider still answers.
                logger.warning("embedding cache read failed", error=str(exc))
                raws = [None] * len(rest)
            for i, raw in zip(rest, raws, strict=True):
                vec = self._decode(raw)
                if raw is not None and vec is not None:
                    found[i] = vec
                    self._stats.hits_l2 += 1
                    if self._l1 is not None:
                        self._l1[keys[i]] = raw
        self._stats.misses += sum(v is None for v in found)
        return found

    async def _compute(self, texts: list[str], keys: list[str]) -> list[Vectors]:
        """Queue what nobody is computing yet, then wait for every text's vector."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Vectors]] = []
        new: list[_Job] = []
        for text, key in zip(texts, keys, strict=True):
            fut = self._inflight.get(key)
            if fut is None:
                fut = loop.create_future()
                new.append(_Job(text, key, fut))
            futures.append(fut)
        if len(self._pending) + len(new) > self.queue_size:
            waiting = len(self._pending)
            raise Overloaded(f"embedding queue is full ({waiting} of {self.queue_size} texts waiting)")
        for job in new:
            self._inflight[job.key] = job.future
        self._pending.extend(new)
        if new:
            self._wakeup.set()
        # asyncio.wait never cancels what it waits on, so one caller giving up leaves a vector other
        # callers share alone; and it costs one waiter per call, not a shield and a gather per text.
        if futures:
            await asyncio.wait(futures)
        return [f.result() for f in futures]

    # -- the batcher -----------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            await self._loop()
        except BaseException as exc:
            # Nobody may wait forever on a batcher that is gone: fail what is queued, then surface it.
            error = EmbeddingError(f"the embedding batcher stopped: {exc!r}")
            self._fail(self._take(len(self._pending)), error)
            for fut in self._inflight.values():
                if not fut.done():
                    fut.set_exception(error)
            self._inflight.clear()
            if self._l2_write is not None:
                self._l2_write.cancel()  # a cache write only saves work; nobody waits on it
            raise

    async def _loop(self) -> None:
        while True:
            await self._wakeup.wait()
            if not self._pending:
                await self._l2_written()
                if self._closing:
                    return
                if not self._pending:  # a text queued during the write has set the wakeup: keep it
                    self._wakeup.clear()
                continue
            await self._gather_batch()
            # The window is bounded so texts queued later still wait only a few batches.
            window = await self._sorted(self._take(self.batch_size * _WINDOW_BATCHES))
            await self._run_window([window[i : i + self.batch_size] for i in range(0, len(window), self.batch_size)])

    async def _run_window(self, batches: list[list[_Job]]) -> None:
        """Run ``batches`` in order, keeping the next ``_AHEAD`` queued at the provider while this one's
        vectors are handed out, so work on the event loop never leaves the model idle."""
        calls: collections.deque[asyncio.Task[Vectors]] = collections.deque()
        try:
            for i, jobs in enumerate(batches):
                while len(calls) <= _AHEAD and i + len(calls) < len(batches):
                    calls.append(self._start(batches[i + len(calls)]))
                await self._run_batch(jobs, calls.popleft())
        finally:
            for call in calls:
                call.cancel()  # only when the batcher itself is being torn down

    def _start(self, jobs: list[_Job]) -> asyncio.Task[Vectors]:
        return asyncio.create_task(self._provider_call([job.text for job in jobs]), name="shoal-embedding-call")

    async def _provider_call(self, texts: list[str]) -> Vectors:
        """One provider call, counting only the time the provider was busy with it (calls queue)."""
        queued = time.perf_counter()
        vectors = await self.provider.embed(texts)
        done = time.perf_counter()
        self._stats.provider_seconds += done - max(queued, self._provider_free_at)
        self._provider_free_at = done
        return vectors

    async def _gather_batch(self) -> None:
        """Wait until a batch is full or ``max_wait`` passed since the oldest text was queued."""
        deadline = self._pending[0].queued_at + self.max_wait
        while len(self._pending) < self.batch_size and not self._closing:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), left)
            except TimeoutError:
                return

    async def _sorted(self, jobs: list[_Job]) -> list[_Job]:
        """``jobs`` by token count, so similar lengths share a batch and pad little.

        Tokens, not characters: on tweets (URLs, emoji, hashtags) sorting by characters pads ~25 %
        more. Counting runs off the loop; a window that fits one batch is not sorted at all.
        """
        if len(jobs) <= self.batch_size:
            return jobs
        lengths = await asyncio.to_thread(self.provider.token_lengths, [job.text for job in jobs])
        order = sorted(range(len(jobs)), key=lengths.__getitem__)
        return [jobs[i] for i in order]

    def _take(self, limit: int) -> list[_Job]:
        return [self._pending.popleft() for _ in range(min(limit, len(self._pending)))]

    async def _run_batch(self, jobs: list[_Job], call: asyncio.Task[Vectors]) -> None:
        try:
            vectors = await call
        except ShoalError as exc:
            self._fail(jobs, exc)
            return
        except Exception as exc:  # a provider bug must fail its callers, not kill the batcher
            self._fail(jobs, EmbeddingError(f"{self.model_id}: {exc!r}"))
            return
        s = self._stats
        s.batches += 1
        s.batch_sizes[len(jobs)] += 1
        s.texts_embedded += len(jobs)
        items: dict[str, bytes] = {}
        for job, vec in zip(jobs, vectors, strict=True):
            self._inflight.pop(job.key, None)
            if not job.future.done():
                job.future.set_result(vec)
            items[job.key] = vec.astype(np.float32).tobytes()
        if self._l1 is not None:
            self._l1.update(items)
        if self.l2 is not None:
            # The write overlaps the next batch's inference; one write at a time bounds the memory.
            await self._l2_written()
            self._l2_write = asyncio.create_task(self._write_l2(self.l2, items), name="shoal-embedding-l2")

    async def _write_l2(self, l2: Cache, items: dict[str, bytes]) -> None:
        try:
            await l2.set_many(items, self.ttl)
        except BackendError as exc:
            logger.warning("embedding cache write failed", error=str(exc))

    async def _l2_written(self) -> None:
        if self._l2_write is not None:
            write, self._l2_write = self._l2_write, None
            await write

    def _fail(self, jobs: list[_Job], exc: ShoalError) -> None:
        for job in jobs:
            self._inflight.pop(job.key, None)
            if not job.future.done():
                job.future.set_exception(exc)
