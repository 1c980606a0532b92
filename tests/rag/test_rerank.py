"""The cross-encoder path: loading a CrossEncoder directory (ONNX), scoring, ordering, the
``/v1/rerank`` endpoint, and reranked query results. The model is built here (no torch)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from shoal.errors import ConfigurationError, MissingDependencyError
from shoal.rag.rerank import load_reranker
from tests.rag.conftest import build_cross_encoder, llm_settings, open_rag, rag_settings

PASSAGES = ["no felines here", "a cat", "cat and cat and cat", "the cat sat with another cat"]


def test_scores_follow_the_model(tmp_path: Path) -> None:
    reranker = load_reranker(str(build_cross_encoder(tmp_path / "ce")))
    assert reranker.backend == "onnx"
    scores = reranker.score_sync("which cat?", PASSAGES)
    assert len(scores) == len(PASSAGES)
    # the tiny model counts "cat" tokens over the pair (the query holds one)
    assert scores == pytest.approx([1.0, 2.0, 4.0, 3.0])
    assert reranker.score_sync("q", []) == []


def test_bad_model_directories_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="neither a directory nor a model"):
        load_reranker(str(tmp_path / "missing"))
    torch_only = tmp_path / "torch-only"
    torch_only.mkdir()
    (torch_only / "config.json").write_text("{}")
    (torch_only / "model.safetensors").write_bytes(b"")
    if importlib.util.find_spec("sentence_transformers") is None:
        with pytest.raises(MissingDependencyError, match=r"shoal\[rerank-torch\]"):
            load_reranker(str(torch_only))


async def test_rerank_endpoint_and_reranked_queries(tmp_path: Path) -> None:
    model_dir = build_cross_encoder(tmp_path / "ce")
    settings = rag_settings(reranker=str(model_dir))
    async with await open_rag(tmp_path / "data", settings, llm_settings()) as (client, _):
        response = await client.post(
            "/v1/rerank",
            json={"query": "cat", "documents": [PASSAGES[0], {"text": PASSAGES[2]}, PASSAGES[1]], "top_n": 2},
        )
        assert response.status_code == 200
        body = response.json()
        assert [r["index"] for r in body["results"]] == [1, 2]
        assert body["results"][0]["relevance_score"] > body["results"][1]["relevance_score"]

        docs = [{"id": f"d{i}", "text": f"Animals: {p}."} for i, p in enumerate(PASSAGES)]
        assert (await client.post("/index?wait=true", json={"documents": docs})).status_code == 200
        query = {"query": "animals cat", "top_k": 4, "generate": False}
        reranked = (await client.post("/query", json=query)).json()
        assert [s["doc_id"] for s in reranked["sources"]] == ["d2", "d3", "d1", "d0"]
        assert reranked["timings_ms"]["rerank"] > 0
        fused = (await client.post("/query", json={**query, "rerank": False})).json()
        assert fused["timings_ms"]["rerank"] == 0


async def test_rerank_endpoint_without_a_model_names_the_setting(tmp_path: Path) -> None:
    async with await open_rag(tmp_path) as (client, _):
        response = await client.post("/v1/rerank", json={"query": "q", "documents": ["a"]})
        assert response.status_code == 404
        assert "SHOAL_RERANKER" in response.json()["details"]
