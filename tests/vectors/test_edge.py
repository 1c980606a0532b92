"""Qdrant Edge specifics: files on disk, reopening, real HNSW builds, reserved payload keys."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from qdrant_edge import Bm25
from qdrant_edge import SparseVector as EdgeSparse

from shoal.errors import BackendError, CollectionNotFound, Conflict, InvalidInput
from shoal.filters import Filter
from shoal.vectors.base import Point, SparseVector
from shoal.vectors.edge import EdgeVectorStore
from tests.vectors.conftest import unit_vectors

DIM = 32


async def test_reopen_keeps_points_config_and_indexes(tmp_path: Path) -> None:
    vectors = unit_vectors(50, DIM)
    bm25 = Bm25()
    async with EdgeVectorStore(tmp_path) as store:
        await store.create_collection("c", DIM, sparse=True, indexes={"rank": "integer"})
        await store.upsert(
            "c",
            [
                Point(
                    id=f"p{i}",
                    vector=vectors[i].tolist(),
                    payload={"rank": i, "ts": 1_700_000_000 + i},
                    sparse=_sv(bm25.embed_document(f"word{i} shared")),
                )
                for i in range(50)
            ],
        )
    async with EdgeVectorStore(tmp_path) as store:
        assert await store.has_collection("c")
        assert await store.count("c") == 50
        (hit,) = await store.search("c", vectors[7].tolist(), limit=1)
        assert hit.id == "p7" and hit.payload == {"rank": 7, "ts": "2023-11-14T22:13:27Z"}
        (sparse_hit,) = await store.search_sparse("c", _sv(bm25.embed_query("word9")), limit=1)
        assert sparse_hit.id == "p9"
        top = await store.scroll("c", limit=2, order_by="rank")
        assert [p.id for p in top] == ["p49", "p48"]
        await store.create_collection("c", DIM, sparse=True)  # same config: fine
        with pytest.raises(Conflict):
            await store.create_collection("c", DIM + 1, sparse=True)
        with pytest.raises(Conflict):
            await store.create_collection("c", DIM)


async def test_drop_removes_files(tmp_path: Path) -> None:
    async with EdgeVectorStore(tmp_path) as store:
        await store.create_collection("gone", DIM)
        await store.upsert("gone", [Point(id="a", vector=unit_vectors(1, DIM)[0].tolist())])
        assert (tmp_path / "gone").is_dir()
        await store.drop_collection("gone")
        assert not (tmp_path / "gone").exists()
        await store.create_collection("gone", DIM)
        assert await store.count("gone") == 0


async def test_unknown_collection_and_closed_store(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path)
    async with store:
        await store.ping()
        with pytest.raises(CollectionNotFound):
            await store.search("nope", [0.0] * DIM)
    with pytest.raises(BackendError):
        await store.ping()


async def test_reserved_payload_keys_are_refused(tmp_path: Path) -> None:
    async with EdgeVectorStore(tmp_path) as store:
        await store.create_collection("c", DIM)
        vector = unit_vectors(1, DIM)[0].tolist()
        for key in ("_id", "_ts"):
            with pytest.raises(InvalidInput):
                await store.upsert("c", [Point(id="a", vector=vector, payload={key: "x"})])
        with pytest.raises(InvalidInput):
            await store.upsert("c", [Point(id="a", vector=vector, payload={"ts": "yesterday"})])


async def test_mixed_match_any_is_invalid(tmp_path: Path) -> None:
    async with EdgeVectorStore(tmp_path) as store:
        await store.create_collection("c", DIM)
        mixed = Filter.model_validate({"must": [{"key": "k", "match": {"any": ["a", 1]}}]})
        with pytest.raises(InvalidInput):
            await store.count("c", mixed)


async def test_optimize_builds_hnsw_while_serving(tmp_path: Path) -> None:
    vectors = unit_vectors(3000, DIM, seed=5)
    # A 100 KB threshold makes 3000 x 32 floats (~384 KB) worth an HNSW build.
    async with EdgeVectorStore(tmp_path, indexing_threshold_kb=100) as store:
        await store.create_collection("c", DIM, indexes={"user": "keyword"})
        await store.upsert(
            "c", [Point(id=f"p{i}", vector=v.tolist(), payload={"user": f"u{i % 7}"}) for i, v in enumerate(vectors)]
        )
        optimizing = asyncio.create_task(store.optimize("c"))
        late = unit_vectors(50, DIM, seed=6)
        try:
            for i, vector in enumerate(late):
                await store.upsert("c", [Point(id=f"late{i}", vector=vector.tolist(), payload={"user": "u0"})])
                (hit,) = await store.search("c", vector.tolist(), limit=1)
                assert hit.id == f"late{i}"
        finally:
            await optimizing
        await store.optimize("c")
        info = store._collections["c"].shard.info()
        assert info.indexed_vectors_count >= 3000
        assert await store.count("c") == 3050

        everything = np.vstack([vectors, late])
        ids = [f"p{i}" for i in range(3000)] + [f"late{i}" for i in range(50)]
        queries = unit_vectors(20, DIM, seed=8)
        found = 0
        for query in queries:
            exact = {ids[j] for j in np.argsort(-(everything @ query))[:10]}
            hits = await store.search("c", query.tolist(), limit=10, ef=128)
            found += len(exact & {h.id for h in hits})
        assert found / (10 * len(queries)) >= 0.9


def _sv(vector: EdgeSparse) -> SparseVector:
    return SparseVector(list(vector.indices), list(vector.values))


async def test_new_collections_store_float16_vectors(tmp_path: Path) -> None:
    # half the mapped vector pages (docs/vectors.md, memory); float32 on request
    vector = unit_vectors(1, DIM)[0]
    half = vector.astype(np.float16).astype(np.float32)
    for float16, expected in ((True, half), (False, vector)):
        async with EdgeVectorStore(tmp_path / str(float16), float16=float16) as store:
            await store.create_collection("c", DIM)
            await store.upsert("c", [Point(id="a", vector=vector.tolist())])
            (point,) = await store.retrieve("c", ["a"], with_vectors=True)
            assert point.vector is not None
            np.testing.assert_array_equal(np.asarray(point.vector, dtype=np.float32), expected)


def _tree_bytes(path: Path) -> int:
    """Bytes allocated on disk (Edge preallocates sparse files, so sizes would mislead)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


async def test_optimize_drops_the_segments_it_replaced(tmp_path: Path) -> None:
    # Edge keeps the segments an optimize replaced (files mapped, pages resident) until a flush; the
    # store flushes after each optimize, so the points live in one segment's files, not two.
    vectors = unit_vectors(3000, DIM, seed=11)
    async with EdgeVectorStore(tmp_path, indexing_threshold_kb=100) as store:
        await store.create_collection("c", DIM)
        await store.upsert("c", [Point(id=f"p{i}", vector=v.tolist(), payload={"n": i}) for i, v in enumerate(vectors)])
        segments = tmp_path / "c" / "shard" / "segments"
        before = {d.name for d in segments.iterdir()}
        await store.optimize("c")
        assert store._collections["c"].shard.info().indexed_vectors_count == 3000
        after = {d.name: _tree_bytes(d) for d in segments.iterdir()}
        assert not before & after.keys()  # the segment the points were written to is gone
        largest = max(after.values())
        assert sum(after.values()) - largest < largest / 10  # the rest are empty appendable segments
        assert await store.count("c") == 3000
