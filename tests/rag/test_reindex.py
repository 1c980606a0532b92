"""Re-indexing a document replaces all its chunks atomically: concurrent queries see every chunk
of exactly one version, never a mix of two and never none."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.rag.conftest import open_rag, rag_settings

VERSIONS = 6


def version_text(v: int, sentences: int) -> str:
    # Each version has a different number of chunks, so a mix of two would show.
    return " ".join(f"Version {v} sentence {i} is about shared lighthouse keepers." for i in range(sentences))


async def test_concurrent_queries_never_see_half_of_two_versions(tmp_path: Path) -> None:
    settings = rag_settings(chunk_tokens=24, chunk_overlap_tokens=0, cache_size=0)
    async with await open_rag(tmp_path, settings) as (client, _):
        doc = {"id": "light", "title": "Lighthouses", "text": version_text(0, 6)}
        assert (await client.post("/index?wait=true", json={"documents": [doc]})).status_code == 200
        done = asyncio.Event()
        observed: list[tuple[str, ...]] = []

        async def reader() -> None:
            while not done.is_set():
                body = (
                    await client.post(
                        "/query", json={"query": "lighthouse keepers", "top_k": 100, "generate": False, "rerank": False}
                    )
                ).json()
                observed.append(tuple(s["chunk_id"] for s in body["sources"]))

        async def writer() -> None:
            try:
                for v in range(1, VERSIONS + 1):
                    text = version_text(v, 6 + 3 * v)
                    response = await client.post("/index?wait=true", json={"documents": [{**doc, "text": text}]})
                    assert response.status_code == 200
            finally:
                done.set()

        await asyncio.gather(writer(), *(reader() for _ in range(4)))

    assert len(observed) > VERSIONS
    complete_sizes: dict[str, int] = {}
    for chunk_ids in observed:
        assert chunk_ids, "a query saw no version at all"
        versions = {c.split("#")[1] for c in chunk_ids}
        assert len(versions) == 1, f"mixed versions: {chunk_ids}"
        # every chunk of that version, each once
        indexes = sorted(int(c.split("#")[2]) for c in chunk_ids)
        assert indexes == list(range(len(indexes)))
        version = versions.pop()
        assert complete_sizes.setdefault(version, len(indexes)) == len(indexes)
    assert len(complete_sizes) >= 2  # the readers really ran across re-indexes
