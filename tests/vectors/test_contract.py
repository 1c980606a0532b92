"""Contract suite: the behaviour every ``VectorStore`` promises, run against each backend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from qdrant_edge import Bm25

from shoal.errors import CollectionNotFound, InvalidInput, ShoalError
from shoal.filters import Filter
from shoal.vectors.base import Point, SearchRequest, SparseVector, VectorStore
from tests.vectors.conftest import unit_vectors

DIM = 16
N = 120
T0 = datetime(2025, 1, 1, tzinfo=UTC)
VECTORS = unit_vectors(N, DIM)
WORDS = ["alpha", "beta", "gamma"]


def payload(i: int) -> dict[str, Any]:
    return {
        "user": f"u{i % 5}",
        "n": i,
        "tags": ["even" if i % 2 == 0 else "odd", f"m{i % 3}"],
        "text": f"note {WORDS[i % 3]} number {i}",
        "ts": T0 + timedelta(minutes=i),
    }


def points(n: int = N) -> list[Point]:
    return [Point(id=f"p{i}", vector=VECTORS[i].tolist(), payload=payload(i)) for i in range(n)]


def where(**clauses: Any) -> Filter:
    return Filter.model_validate(clauses)


async def filled(store: VectorStore, name: str = "c") -> VectorStore:
    await store.create_collection(name, DIM)
    await store.upsert(name, points())
    return store


def exact_ids(query: np.ndarray, allowed: list[int], k: int) -> list[str]:
    scores = VECTORS[allowed] @ query
    return [f"p{allowed[j]}" for j in np.argsort(-scores)[:k]]


async def test_collections_lifecycle(store: VectorStore) -> None:
    assert not await store.has_collection("c")
    await store.create_collection("c", DIM)
    await store.create_collection("c", DIM)  # idempotent
    assert await store.has_collection("c")
    await store.drop_collection("c")
    await store.drop_collection("c")  # no error when missing
    assert not await store.has_collection("c")
    with pytest.raises(CollectionNotFound):
        await store.count("c")


async def test_upsert_retrieve_delete_count(store: VectorStore) -> None:
    await filled(store)
    assert await store.count("c") == N
    got = await store.retrieve("c", ["p3", "missing", "p1"], with_vectors=True)
    assert [p.id for p in got] == ["p3", "p1"]
    assert got[0].payload["user"] == "u3"
    assert got[0].payload["ts"] == "2025-01-01T00:03:00Z"
    assert not {"_id", "_ts"} & got[0].payload.keys()
    assert got[0].vector is not None
    # Edge stores dense vectors as float16 (half the memory): unit-vector components within 1e-3
    np.testing.assert_allclose(got[0].vector, VECTORS[3], atol=1e-3)
    assert (await store.retrieve("c", ["p3"]))[0].vector is None

    await store.upsert("c", [Point(id="p3", vector=VECTORS[4].tolist(), payload={"user": "new"})])
    (replaced,) = await store.retrieve("c", ["p3"])
    assert replaced.payload == {"user": "new"}
    assert await store.count("c") == N

    await store.delete("c", ["p3", "p4", "never"])
    assert await store.count("c") == N - 2
    assert await store.retrieve("c", ["p3", "p4"]) == []


async def test_search_order_and_cosine_scores(store: VectorStore) -> None:
    await filled(store)
    query = unit_vectors(1, DIM, seed=7)[0]
    hits = await store.search("c", query.tolist(), limit=10)
    assert [h.id for h in hits] == exact_ids(query, list(range(N)), 10)
    for hit in hits:
        assert hit.score == pytest.approx(float(VECTORS[int(hit.id[1:])] @ query), abs=1e-3)  # float16 storage (Edge)
        assert hit.vector is None
        assert not {"_id", "_ts"} & hit.payload.keys()
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    (first,) = await store.search("c", VECTORS[9].tolist(), limit=1, with_vectors=True)
    assert first.id == "p9" and first.score == pytest.approx(1.0, abs=1e-3)
    assert first.vector is not None and len(first.vector) == DIM


async def test_search_offset_threshold_ef_exclude(store: VectorStore) -> None:
    await filled(store)
    query = VECTORS[0].tolist()
    top = await store.search("c", query, limit=8)
    page = await store.search("c", query, limit=4, offset=4)
    assert [h.id for h in page] == [h.id for h in top[4:]]
    cut = (top[3].score + top[4].score) / 2
    assert [h.id for h in await store.search("c", query, limit=8, score_threshold=cut)] == [h.id for h in top[:4]]
    excluded = [h.id for h in top[:3]]
    rest = await store.search("c", query, limit=5, exclude_ids=excluded, ef=64)
    assert [h.id for h in rest] == [h.id for h in top[3:8]]


async def test_search_many_answers_like_one_search_each(store: VectorStore) -> None:
    await filled(store)
    requests = [
        SearchRequest(VECTORS[0].tolist(), limit=5),
        SearchRequest(VECTORS[1].tolist(), limit=3, filter=where(must=[{"key": "user", "match": {"value": "u1"}}])),
        SearchRequest(VECTORS[2].tolist(), limit=4, exclude_ids=("p2", "p7"), ef=64),
    ]
    batched = await store.search_many("c", requests)
    for request, hits in zip(requests, batched, strict=True):
        one = await store.search(
            "c", request.vector, limit=request.limit, filter=request.filter, exclude_ids=request.exclude_ids
        )
        assert [h.id for h in hits] == [h.id for h in one]
        assert [h.score for h in hits] == pytest.approx([h.score for h in one], abs=1e-5)
    assert {h.payload["user"] for h in batched[1]} == {"u1"}
    assert not {"p2", "p7"} & {h.id for h in batched[2]}
    assert await store.search_many("c", []) == []


async def test_search_returns_only_the_selected_payload_keys(store: VectorStore) -> None:
    await filled(store)
    query = VECTORS[4].tolist()
    full = await store.search("c", query, limit=5)
    some = await store.search("c", query, limit=5, payload_keys=["user", "ts", "absent"])
    assert [(h.id, h.score) for h in some] == [(h.id, h.score) for h in full]
    for whole, hit in zip(full, some, strict=True):
        assert hit.payload == {"user": whole.payload["user"], "ts": whole.payload["ts"]}
    assert all(h.payload == {} for h in await store.search("c", query, limit=3, payload_keys=[]))
    (batched,) = await store.search_many("c", [SearchRequest(query, limit=5, payload_keys=("text",))])
    assert [h.payload for h in batched] == [{"text": h.payload["text"]} for h in full]


FILTER_CASES: dict[str, tuple[dict[str, Any], Any]] = {
    "match value": ({"must": [{"key": "user", "match": {"value": "u2"}}]}, lambda i: i % 5 == 2),
    "match int": ({"must": [{"key": "n", "match": {"value": 7}}]}, lambda i: i == 7),
    "match any": ({"must": [{"key": "user", "match": {"any": ["u1", "u3"]}}]}, lambda i: i % 5 in (1, 3)),
    "match any array": ({"must": [{"key": "tags", "match": {"any": ["m0"]}}]}, lambda i: i % 3 == 0),
    "match except": ({"must": [{"key": "user", "match": {"except": ["u0", "u1"]}}]}, lambda i: i % 5 > 1),
    "match text": ({"must": [{"key": "text", "match": {"text": "gamma"}}]}, lambda i: i % 3 == 2),
    "range number": ({"must": [{"key": "n", "range": {"gte": 10, "lt": 20.5}}]}, lambda i: 10 <= i <= 20),
    "range ts": (
        {"must": [{"key": "ts", "range": {"gt": "2025-01-01T00:30:00Z", "lte": "2025-01-01T01:00:00+00:00"}}]},
        lambda i: 30 < i <= 60,
    ),
    "has_id": ({"must": [{"has_id": ["p1", "p2", "nope"]}]}, lambda i: i in (1, 2)),
    "must_not": ({"must_not": [{"key": "tags", "match": {"value": "even"}}]}, lambda i: i % 2 == 1),
    "must_not has_id": ({"must_not": [{"has_id": [f"p{i}" for i in range(100)]}]}, lambda i: i >= 100),
    "should": (
        {"should": [{"key": "n", "match": {"value": 3}}, {"key": "n", "range": {"gte": 115}}]},
        lambda i: i == 3 or i >= 115,
    ),
    "nested": (
        {
            "must": [{"key": "user", "match": {"value": "u0"}}],
            "should": [
                {"must": [{"key": "tags", "match": {"value": "even"}}, {"key": "n", "range": {"lt": 50}}]},
                {"must_not": [{"key": "n", "range": {"lt": 100}}]},
            ],
        },
        lambda i: i % 5 == 0 and ((i % 2 == 0 and i < 50) or i >= 100),
    ),
}


@pytest.mark.parametrize("case", list(FILTER_CASES))
async def test_filters(store: VectorStore, case: str) -> None:
    clauses, predicate = FILTER_CASES[case]
    allowed = [i for i in range(N) if predicate(i)]
    flt = where(**clauses)
    await filled(store)
    assert await store.count("c", flt) == len(allowed)
    query = unit_vectors(1, DIM, seed=3)[0]
    hits = await store.search("c", query.tolist(), limit=5, filter=flt)
    assert [h.id for h in hits] == exact_ids(query, allowed, 5)
    listed = await store.scroll("c", filter=flt, limit=N)
    assert sorted(p.id for p in listed) == sorted(f"p{i}" for i in allowed)


async def test_delete_by_filter(store: VectorStore) -> None:
    await filled(store)
    await store.delete_by_filter("c", where(must=[{"key": "user", "match": {"value": "u1"}}]))
    assert await store.count("c") == N - N // 5
    assert await store.count("c", where(must=[{"key": "user", "match": {"value": "u1"}}])) == 0


async def test_scroll_newest_first(store: VectorStore) -> None:
    await filled(store)
    mine = where(must=[{"key": "user", "match": {"value": "u4"}}])
    newest = await store.scroll("c", filter=mine, limit=3, order_by="ts")
    assert [p.id for p in newest] == ["p119", "p114", "p109"]
    oldest = await store.scroll("c", filter=mine, limit=2, order_by="ts", descending=False)
    assert [p.id for p in oldest] == ["p4", "p9"]
    assert oldest[0].payload["ts"] == "2025-01-01T00:04:00Z"


DOCS = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "the cat and the dog play",
    "quantum chromodynamics of the cat",
    "a dog barks at night",
]


async def test_sparse_bm25_idf(store: VectorStore) -> None:
    if not store.supports_sparse:
        pytest.skip(f"{type(store).__name__} has no sparse vectors")
    bm25 = Bm25()
    await store.create_collection("docs", DIM, sparse=True)
    await store.upsert(
        "docs",
        [
            Point(id=f"d{i}", vector=VECTORS[i].tolist(), payload={"i": i}, sparse=_sv(bm25.embed_document(t)))
            for i, t in enumerate(DOCS)
        ],
    )
    hits = await store.search_sparse("docs", _sv(bm25.embed_query("quantum cat")), limit=5)
    assert hits[0].id == "d3"  # the only doc with the rare word wins
    assert {h.id for h in hits} == {"d0", "d2", "d3"}
    # IDF: "the" is in every doc (idf ~ 0) so it ranks nothing above a rarer word
    common = await store.search_sparse("docs", _sv(bm25.embed_query("night the")), limit=1)
    assert common[0].id == "d4"
    only_dogs = where(must=[{"key": "i", "range": {"gte": 1}}])
    filtered = await store.search_sparse("docs", _sv(bm25.embed_query("cat")), limit=5, filter=only_dogs)
    assert {h.id for h in filtered} == {"d2", "d3"}


async def test_hybrid_rrf(store: VectorStore) -> None:
    hybrid = getattr(store, "hybrid", None)
    if hybrid is None or not store.supports_sparse:
        pytest.skip(f"{type(store).__name__} has no hybrid query")
    bm25 = Bm25()
    await store.create_collection("docs", DIM, sparse=True)
    await store.upsert(
        "docs",
        [
            Point(id=f"d{i}", vector=VECTORS[i].tolist(), payload={"i": i}, sparse=_sv(bm25.embed_document(t)))
            for i, t in enumerate(DOCS)
        ],
    )
    dense, sparse = VECTORS[1].tolist(), _sv(bm25.embed_query("quantum cat"))
    dense_ids = [h.id for h in await store.search("docs", dense, limit=5)]
    sparse_ids = [h.id for h in await store.search_sparse("docs", sparse, limit=5)]

    def rrf(w_dense: float, w_sparse: float) -> dict[str, float]:
        # Edge's weighted RRF: 1 / (k - 1 + rank / weight), ranks from 1, k = 60.
        fused: dict[str, float] = {}
        for weight, ids in ((w_dense, dense_ids), (w_sparse, sparse_ids)):
            for rank, point_id in enumerate(ids, start=1):
                fused[point_id] = fused.get(point_id, 0.0) + 1 / (59 + rank / weight)
        return fused

    for weights in (None, (3.0, 1.0), (1.0, 3.0)):
        hits = await hybrid("docs", dense, sparse, limit=5, weights=weights)
        assert {h.id: h.score for h in hits} == pytest.approx(rrf(*(weights or (1.0, 1.0))), rel=1e-5)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # With k = 60 the weights barely move ranks; with a small k they decide.
    assert (await hybrid("docs", dense, sparse, limit=1, weights=(5.0, 1.0), rrf_k=1))[0].id == dense_ids[0]
    assert (await hybrid("docs", dense, sparse, limit=1, weights=(1.0, 5.0), rrf_k=1))[0].id == sparse_ids[0]
    not_d3 = where(must_not=[{"has_id": ["d3"]}])
    assert "d3" not in {h.id for h in await hybrid("docs", dense, sparse, limit=5, filter=not_d3)}


async def test_sparse_needs_sparse_collection(store: VectorStore) -> None:
    await store.create_collection("c", DIM)
    with pytest.raises(ShoalError):
        await store.search_sparse("c", SparseVector([1], [1.0]))


async def test_wrong_dimension_is_invalid_input(store: VectorStore) -> None:
    await store.create_collection("c", DIM)
    with pytest.raises(InvalidInput):
        await store.upsert("c", [Point(id="x", vector=[1.0, 0.0])])
    with pytest.raises(InvalidInput):
        await store.search("c", [1.0, 0.0])


async def test_optimize_concurrent_with_reads_and_writes(store: VectorStore) -> None:
    await filled(store)
    extra = unit_vectors(400, DIM, seed=11)
    optimizing = asyncio.create_task(store.optimize("c"))
    try:
        for i, vector in enumerate(extra):
            point_id = f"x{i}"
            await store.upsert("c", [Point(id=point_id, vector=vector.tolist(), payload={"n": N + i})])
            (hit,) = await store.search("c", vector.tolist(), limit=1)  # read-your-write
            assert hit.id == point_id
    finally:
        await optimizing
    await store.optimize("c")
    assert await store.count("c") == N + len(extra)
    assert [h.id for h in await store.search("c", extra[5].tolist(), limit=1)] == ["x5"]


def _sv(vector: Any) -> SparseVector:
    return SparseVector(list(vector.indices), list(vector.values))
