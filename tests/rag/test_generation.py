"""Generation through an OpenAI-compatible API (a local server speaking the protocol): the
grounding prompt, citations that point to the right sources, and Server-Sent Events streaming."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from shoal.rag.llm import NO_ANSWER
from tests.rag.conftest import llm_settings, open_rag
from tests.rag.openai_server import FakeChatModel

DOCS = [
    {"id": "rockets", "title": "Rockets", "text": "Rockets burn propellant. Liquid hydrogen is a rocket fuel."},
    {"id": "cats", "title": "Cats", "text": "Domestic cats purr when they are content."},
    {"id": "tides", "title": "Tides", "text": "Tides are caused by the gravity of the moon."},
]


def parse_sse(raw: str) -> list[tuple[str, dict[str, object]]]:
    events = []
    for block in raw.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], orjson.loads(fields["data"])))
    return events


async def test_answers_cite_the_source_that_holds_the_answer(tmp_path: Path, chat_model: FakeChatModel) -> None:
    async with await open_rag(tmp_path, llm=llm_settings(chat_model.base_url)) as (client, _):
        assert (await client.post("/index?wait=true", json={"documents": DOCS})).status_code == 200
        body = (await client.post("/query", json={"query": "What makes cats purr", "top_k": 3})).json()
        (cited,) = re.findall(r"\[(\d+)\]", body["answer"])
        assert body["sources"][int(cited) - 1]["doc_id"] == "cats"
        assert body["timings_ms"]["generate"] > 0

        request = chat_model.requests[-1]
        assert request["model"] == "fake-chat" and request["stream"] is True
        system, user = request["messages"]
        assert "ONLY the numbered sources" in system["content"] and NO_ANSWER in system["content"]
        for source in body["sources"]:
            assert f"[{source['n']}] {source['title']}\n{source['text']}" in user["content"]


async def test_the_model_says_so_when_the_sources_lack_the_answer(tmp_path: Path, chat_model: FakeChatModel) -> None:
    async with await open_rag(tmp_path, llm=llm_settings(chat_model.base_url)) as (client, _):
        await client.post("/index?wait=true", json={"documents": DOCS})
        body = (await client.post("/query", json={"query": "who won the election"})).json()
        assert body["answer"] == NO_ANSWER


async def test_stream_sends_tokens_then_sources(tmp_path: Path, chat_model: FakeChatModel) -> None:
    async with await open_rag(tmp_path, llm=llm_settings(chat_model.base_url)) as (client, _):
        await client.post("/index?wait=true", json={"documents": DOCS})
        query = {"query": "what is a rocket fuel", "top_k": 2, "stream": True}
        async with client.stream("POST", "/query", json=query) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            raw = "".join([chunk async for chunk in response.aiter_text()])
        events = parse_sse(raw)
        kinds = [k for k, _ in events]
        assert kinds[-2:] == ["sources", "done"] and set(kinds[:-2]) == {"token"} and len(kinds) > 4
        answer = "".join(str(data["text"]) for kind, data in events if kind == "token")
        final = events[-2][1]
        assert final["answer"] == answer and final["cached"] is False
        (cited,) = re.findall(r"\[(\d+)\]", answer)
        sources = final["sources"]
        assert isinstance(sources, list) and sources[int(cited) - 1]["doc_id"] == "rockets"

        # the same question again comes from the cache, still as a stream
        async with client.stream("POST", "/query", json=query) as response:
            again = parse_sse("".join([chunk async for chunk in response.aiter_text()]))
        assert again[-2][1]["cached"] is True and again[0] == ("token", {"text": answer})


async def test_stream_without_an_llm_is_extractive(tmp_path: Path) -> None:
    async with await open_rag(tmp_path) as (client, _):
        await client.post("/index?wait=true", json={"documents": DOCS})
        response = await client.post("/query", json={"query": "what causes tides", "stream": True})
        events = parse_sse(response.text)
        assert [k for k, _ in events] == ["token", "sources", "done"]
        assert "moon" in str(events[0][1]["text"]) and "[1]" in str(events[0][1]["text"])
