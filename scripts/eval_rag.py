"""RAG figures on SciFact: retrieval quality (dense, BM25, hybrid), indexing speed against the
embedding engine's ceiling, and ``/query`` latency — all measured in one run.

    .venv/bin/python scripts/eval_rag.py [--data /work/shared/data/scifact] [--out bench/results/rag.json]

Quality: nDCG@10 and Recall@100 at document level (a document ranks where its best chunk ranks).
Fusion weights are tuned on half of the train queries and reported on the other half, on all of
train, and on test when ``qrels/test.tsv`` exists. Indexing: documents/s from the first ``POST
/index`` until every document is live, against the embedding provider's raw throughput on the same
chunk texts (its ceiling), as a ratio. Latency: ``POST /query`` without generation through the ASGI
app, first with unseen queries (uncached: embedding, retrieval) then the same queries again (cached).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from asgi_lifespan import LifespanManager
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from shoal.app import create_app  # noqa: E402
from shoal.llm_settings import LLMSettings  # noqa: E402
from shoal.rag.feature import RagFeature  # noqa: E402
from shoal.rag.fusion import rrf  # noqa: E402
from shoal.rag.indexer import DOC, embedding_text  # noqa: E402
from shoal.rag.service import RagService, RagState  # noqa: E402
from shoal.rag.settings import RagSettings  # noqa: E402
from shoal.services import Services  # noqa: E402
from shoal.settings import Settings  # noqa: E402

COLLECTION = "scifact"
DEPTH = 300  # chunks fetched per retriever: enough for 100 distinct documents
WEIGHT_GRID = [0.3, 0.5, 0.7, 0.85, 1.0, 1.2, 1.5, 2.0, 3.0]
K_GRID = [10, 30, 60, 100]
CEILING_SAMPLE = 2000
console = Console()


def load(data: Path) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, dict[str, dict[str, int]]]]:
    corpus = [orjson.loads(line) for line in (data / "corpus.jsonl").read_bytes().splitlines() if line.strip()]
    queries = {
        q["_id"]: q["text"]
        for q in (orjson.loads(line) for line in (data / "queries.jsonl").read_bytes().splitlines() if line.strip())
    }
    qrels: dict[str, dict[str, dict[str, int]]] = {}
    for split in ("train", "test"):
        path = data / "qrels" / f"{split}.tsv"
        if not path.exists():
            continue
        judged: dict[str, dict[str, int]] = defaultdict(dict)
        for line in path.read_text().splitlines()[1:]:
            qid, did, score = line.split("\t")
            judged[qid][did] = int(score)
        qrels[split] = dict(judged)
    return corpus, queries, qrels


def ndcg_at(ranked: Sequence[str], relevant: dict[str, int], k: int = 10) -> float:
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: Sequence[str], relevant: dict[str, int], k: int = 100) -> float:
    wanted = {d for d, g in relevant.items() if g > 0}
    return len(wanted & set(ranked[:k])) / len(wanted) if wanted else 0.0


def doc_ranking(chunk_ranking: Sequence[str], doc_of: dict[str, str]) -> list[str]:
    seen: dict[str, None] = {}
    for chunk in chunk_ranking:
        seen.setdefault(doc_of[chunk], None)
    return list(seen)


def evaluate(rankings: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    ids = [q for q in qrels if q in rankings]
    return {
        "ndcg@10": float(np.mean([ndcg_at(rankings[q], qrels[q]) for q in ids])),
        "recall@100": float(np.mean([recall_at(rankings[q], qrels[q]) for q in ids])),
        "queries": len(ids),
    }


async def index_corpus(client: httpx.AsyncClient, corpus: list[dict[str, Any]]) -> float:
    """Seconds from the first ``POST /index`` until every document is live (``?wait=true``)."""
    started = time.perf_counter()

    async def post(first: int) -> None:
        docs = [{"id": d["_id"], "title": d["title"], "text": d["text"]} for d in corpus[first : first + 500]]
        response = await client.post("/index?wait=true", json={"documents": docs, "collection": COLLECTION})
        assert response.status_code == 200, response.text

    await asyncio.gather(*(post(first) for first in range(0, len(corpus), 500)))
    return time.perf_counter() - started


async def provider_ceiling(services: Services, state: RagState, corpus: list[dict[str, Any]]) -> tuple[float, int]:
    """The provider's raw texts/s on this corpus's chunk texts (length-sorted batches), and the chunk count."""
    texts = [embedding_text(d["title"], c.text) for d in corpus for c in state.chunker.chunk(d["text"])]
    # A fixed sample keeps the run short; its length mix is the corpus's.
    sample = sorted(random.Random(7).sample(texts, min(CEILING_SAMPLE, len(texts))), key=len)
    provider, batch = services.engine.provider, services.engine.batch_size
    started = time.perf_counter()
    for first in range(0, len(sample), batch):
        await provider.embed(sample[first : first + batch])
    return len(sample) / (time.perf_counter() - started), len(texts)


async def rankings_by_mode(
    rag: RagService, queries: dict[str, str], ids: Sequence[str]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Chunk rankings per query id from the dense and the BM25 retriever."""
    collection = await rag.services.collections.get(COLLECTION)
    snapshot = rag.state.versions.snapshot(COLLECTION)
    dense: dict[str, list[str]] = {}
    sparse: dict[str, list[str]] = {}
    for qid in ids:
        text = queries[qid]
        vector = (await rag.services.engine.embed([text]))[0].tolist()
        dense[qid] = [h.id for h in await rag.search(collection, text, vector, snapshot, limit=DEPTH, mode="dense")]
        sparse[qid] = [h.id for h in await rag.search(collection, text, None, snapshot, limit=DEPTH, mode="sparse")]
    return dense, sparse


def fused(
    dense: dict[str, list[str]], sparse: dict[str, list[str]], doc_of: dict[str, str], w: float, k: int
) -> dict[str, list[str]]:
    return {q: doc_ranking([c for c, _ in rrf([dense[q], sparse[q]], k=k, weights=[w, 1.0])], doc_of) for q in dense}


async def latency(client: httpx.AsyncClient, texts: Sequence[str]) -> dict[str, dict[str, float]]:
    result = {}
    for label in ("uncached", "cached"):
        samples = []
        for text in texts:
            body = {"query": text, "collection": COLLECTION, "top_k": 10, "generate": False, "rerank": False}
            t = time.perf_counter()
            response = await client.post("/query", json=body)
            samples.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200 and response.json()["cached"] is (label == "cached")
        result[label] = {
            "p50_ms": float(np.percentile(samples, 50)),
            "p99_ms": float(np.percentile(samples, 99)),
            "n": len(samples),
        }
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/scifact"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rag.json")
    args = parser.parse_args()
    corpus, queries, qrels = load(args.data)
    rag_settings = RagSettings(_env_file=None, cache_size=20_000)
    with tempfile.TemporaryDirectory() as tmp:
        # Indexing the whole corpus can take long on a busy machine: the wait must not time out.
        options: dict[str, Any] = {"log_json": False, "log_level": "WARNING", "wait_timeout_s": 7200}
        settings = Settings(_env_file=None, data_dir=Path(tmp), **options)
        app = create_app(settings, [RagFeature(rag_settings, LLMSettings(_env_file=None))])
        async with LifespanManager(app, startup_timeout=120, shutdown_timeout=120) as manager:
            services: Services = app.state.services
            state: RagState = services.extras["rag"]
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=600) as client:
                # The ceiling is measured before and after indexing and averaged, so that a change
                # in machine load during the run shows up in both figures alike.
                before_tps, chunks = await provider_ceiling(services, state, corpus)
                index_s = await index_corpus(client, corpus)
                after_tps, _ = await provider_ceiling(services, state, corpus)
                ceiling_tps = (before_tps + after_tps) / 2
                rag = RagService(services, state)
                points = await services.vectors.scroll(
                    (await services.collections.get(COLLECTION)).vector_name, limit=chunks + 10
                )
                doc_of = {p.id: str(p.payload[DOC]) for p in points}
                train = qrels["train"]
                train_ids = sorted(train, key=int)
                tune_ids, held_ids = train_ids[::2], train_ids[1::2]
                evaluated = sorted({q for split in qrels.values() for q in split}, key=int)
                dense, sparse = await rankings_by_mode(rag, queries, evaluated)
                latencies = await latency(client, [queries[q] for q in held_ids[:300]])

    doc_dense = {q: doc_ranking(r, doc_of) for q, r in dense.items()}
    doc_sparse = {q: doc_ranking(r, doc_of) for q, r in sparse.items()}
    tune = {q: train[q] for q in tune_ids}
    grid = {(w, k): evaluate(fused(dense, sparse, doc_of, w, k), tune)["ndcg@10"] for w in WEIGHT_GRID for k in K_GRID}
    (best_w, best_k), _ = max(grid.items(), key=lambda kv: kv[1])
    splits = {"train-tune": tune, "train-heldout": {q: train[q] for q in held_ids}, "train": train}
    if "test" in qrels:
        splits["test"] = qrels["test"]
    quality: dict[str, dict[str, dict[str, float]]] = {}
    for name, judged in splits.items():
        quality[name] = {
            "dense": evaluate(doc_dense, judged),
            "bm25": evaluate(doc_sparse, judged),
            "hybrid (w=1, k=60)": evaluate(fused(dense, sparse, doc_of, 1.0, 60), judged),
            f"hybrid (tuned w={best_w}, k={best_k})": evaluate(fused(dense, sparse, doc_of, best_w, best_k), judged),
        }
    index_dps = len(corpus) / index_s
    ceiling_dps = ceiling_tps * len(corpus) / chunks
    results = {
        "dataset": "scifact",
        "documents": len(corpus),
        "chunks": chunks,
        "settings": rag_settings.model_dump(mode="json"),
        "tuned": {"dense_weight": best_w, "sparse_weight": 1.0, "rrf_k": best_k},
        "quality": quality,
        "indexing": {
            "docs_per_s": index_dps,
            "engine_ceiling_docs_per_s": ceiling_dps,
            "engine_ceiling_texts_per_s": ceiling_tps,
            "engine_ceiling_texts_per_s_before_after": [before_tps, after_tps],
            "ratio_to_ceiling": index_dps / ceiling_dps,
            "seconds": index_s,
        },
        "query_latency_no_generation": latencies,
        "references": {"bm25_ndcg@10": 0.665, "minilm_dense_ndcg@10": 0.645, "target_hybrid_ndcg@10": 0.69},
        "test_qrels_present": "test" in qrels,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    report(results)


def report(results: dict[str, Any]) -> None:
    table = Table(title="SciFact retrieval (document level)")
    for column in ("split", "retriever", "nDCG@10", "Recall@100", "queries"):
        table.add_column(column)
    for split, by_mode in results["quality"].items():
        for mode, m in by_mode.items():
            table.add_row(split, mode, f"{m['ndcg@10']:.3f}", f"{m['recall@100']:.3f}", str(m["queries"]))
    console.print(table)
    ix = results["indexing"]
    table = Table(title="Indexing and /query (no generation)")
    table.add_column("figure")
    table.add_column("value")
    table.add_row("index docs/s", f"{ix['docs_per_s']:.0f}")
    table.add_row("engine ceiling docs/s (same run)", f"{ix['engine_ceiling_docs_per_s']:.0f}")
    table.add_row("ratio", f"{ix['ratio_to_ceiling']:.2f}")
    for label, m in results["query_latency_no_generation"].items():
        table.add_row(f"/query {label} p50 / p99 ms", f"{m['p50_ms']:.2f} / {m['p99_ms']:.2f}")
    console.print(table)
    if not results["test_qrels_present"]:
        console.print("[yellow]qrels/test.tsv is absent: test figures not reported[/yellow]")


if __name__ == "__main__":
    asyncio.run(main())
