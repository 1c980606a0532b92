"""Index and query through the HTTP API: shape, filters, citations, extractive answers, caching,
deletion, and the durability behind ``202``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import orjson
from fastapi import FastAPI

from shoal.rag.llm import NO_ANSWER
from tests.app_fixtures import services_of
from tests.rag.conftest import open_rag
from tests.waiting import eventually

DOCS: list[dict[str, Any]] = [
    {
        "id": "cats",
        "title": "Cats",
        "text": "Cats are small carnivorous mammals. Domestic cats purr when they are content. "
        "They sleep for most of the day.",
        "metadata": {"lang": "en", "year": 2020},
    },
    {
        "id": "rockets",
        "title": "Rockets",
        "text": "Rockets burn propellant to produce thrust. Liquid hydrogen is a common rocket fuel.",
        "metadata": {"lang": "en", "year": 2023},
    },
    {
        "id": "bread",
        "title": "Pain",
        "text": "Le pain est fait de farine, d'eau et de levure. La pâte lève pendant des heures.",
        "metadata": {"lang": "fr", "year": 2021},
    },
]


async def index(client: httpx.AsyncClient, docs: list[dict[str, Any]], **params: str) -> httpx.Response:
    response = await client.post("/index", params={"wait": "true", **params}, json={"documents": docs})
    assert response.status_code == 200, response.text
    return response


async def test_query_returns_the_documented_shape_with_cited_extractive_answer(
    rag_client: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    client, _ = rag_client
    await index(client, DOCS)
    response = await client.post("/query", json={"query": "Why do cats purr?", "top_k": 2})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"answer", "sources", "timings_ms", "cached"}
    assert set(body["timings_ms"]) == {"embed", "retrieve", "rerank", "generate", "total"}
    assert body["cached"] is False
    assert [s["n"] for s in body["sources"]] == [1, 2]
    for source in body["sources"]:
        assert set(source) == {"n", "doc_id", "chunk_id", "title", "text", "score"}
    assert body["sources"][0]["doc_id"] == "cats" and body["sources"][0]["title"] == "Cats"
    # Extractive (no LLM configured): the purring sentence, cited to the source that holds it.
    answer = body["answer"]
    assert "purr" in answer
    for sentence, n in re.findall(r"(.+?) \[(\d+)\]", answer):
        assert sentence.strip() in body["sources"][int(n) - 1]["text"]


async def test_extractive_answer_says_so_when_nothing_matches(rag_client: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = rag_client
    await index(client, DOCS)
    body = (await client.post("/query", json={"query": "quantum chromodynamics gluons"})).json()
    assert body["answer"] == NO_ANSWER


async def test_metadata_filters_restrict_sources(rag_client: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = rag_client
    await index(client, DOCS)
    french = {"must": [{"key": "lang", "match": {"value": "fr"}}]}
    body = (await client.post("/query", json={"query": "rocket fuel", "filter": french, "generate": False})).json()
    assert [s["doc_id"] for s in body["sources"]] == ["bread"]
    assert body["answer"] is None
    recent = {
        "must": [{"key": "year", "range": {"gte": 2021}}],
        "must_not": [{"key": "lang", "match": {"value": "fr"}}],
    }
    body = (await client.post("/query", json={"query": "cats purr", "filter": recent, "top_k": 5})).json()
    assert {s["doc_id"] for s in body["sources"]} == {"rockets"}
    bad = await client.post("/query", json={"query": "x", "filter": {"must": [{"key": "lang"}]}})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_schema"


async def test_dense_sparse_and_hybrid_modes(rag_client: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = rag_client
    await index(client, DOCS)
    for mode in ("dense", "sparse", "hybrid"):
        body = (await client.post("/query", json={"query": "liquid hydrogen fuel", "mode": mode})).json()
        assert body["sources"][0]["doc_id"] == "rockets", mode


async def test_results_are_cached_until_the_index_changes(rag_client: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = rag_client
    await index(client, DOCS)
    query = {"query": "rocket fuel", "top_k": 3}
    first = (await client.post("/query", json=query)).json()
    second = (await client.post("/query", json=query)).json()
    assert (first["cached"], second["cached"]) == (False, True)
    assert second["sources"] == first["sources"] and second["answer"] == first["answer"]
    other = (await client.post("/query", json={**query, "top_k": 2})).json()
    assert other["cached"] is False  # parameters are part of the key
    await index(client, [{"id": "fuel", "title": "Fuel", "text": "Kerosene is another rocket fuel."}])
    third = (await client.post("/query", json=query)).json()
    assert third["cached"] is False
    assert "fuel" in {s["doc_id"] for s in third["sources"]}


async def test_delete_removes_every_chunk(rag_client: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = rag_client
    await index(client, DOCS)
    response = await client.delete("/index/rockets", params={"wait": "true"})
    assert response.status_code == 200
    body = (await client.post("/query", json={"query": "rocket fuel", "top_k": 10, "generate": False})).json()
    assert "rockets" not in {s["doc_id"] for s in body["sources"]}
    assert (await client.delete("/index/x", params={"collection": "nope"})).status_code == 404


async def test_202_is_durable_and_indexed_later(rag_client: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, app = rag_client
    response = await client.post("/index", json={"documents": DOCS[:1], "collection": "notes"})
    assert response.status_code == 202
    assert response.json() == {"collection": "notes", "ids": ["cats"], "status": "accepted", "pending": []}

    async def found() -> list[str]:
        body = (await client.post("/query", json={"query": "cats", "collection": "notes", "generate": False})).json()
        return [s["doc_id"] for s in body["sources"]]

    assert await eventually(found) == ["cats"]
    # the document was in the log before the 202
    services = services_of(app)
    async with services.log.consumer("documents", "rag-test-reader") as consumer:
        messages = await consumer.poll(10, timeout=1)
    assert [orjson.loads(m.value)["id"] for m in messages] == ["cats"]


async def test_bad_requests_name_the_field(rag_client: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = rag_client
    cases = [
        {"documents": []},
        {"documents": [{"id": "a", "text": "  "}]},
        {"documents": [{"id": "a", "text": "x", "metadata": {"_doc": "b"}}]},
        {"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]},
        {"documents": [{"id": "a", "text": "x", "colour": "red"}]},
    ]
    for body in cases:
        response = await client.post("/index", json=body)
        assert response.status_code == 400, body
        assert response.json()["error"] == "invalid_schema"
    assert (await client.post("/query", json={"query": ""})).status_code == 400
    assert (await client.post("/query", json={"query": "x", "collection": "missing"})).status_code == 404


async def test_versions_survive_a_restart(tmp_path: Path) -> None:
    async with await open_rag(tmp_path) as (client, _):
        await index(client, DOCS)
        await index(client, [{**DOCS[0], "text": "Cats chase laser pointers. Cats also purr."}])
    async with await open_rag(tmp_path) as (client, _):
        body = (await client.post("/query", json={"query": "cats purr laser", "top_k": 10, "generate": False})).json()
        cats = [s for s in body["sources"] if s["doc_id"] == "cats"]
        assert len(cats) == 1 and "laser" in cats[0]["text"]
