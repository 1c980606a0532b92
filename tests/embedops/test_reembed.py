"""Switching a collection's model under a running search and write load, then rolling back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.app_fixtures import services_of
from tests.embedops.conftest import DIM, ScriptedOpenAI, fake_unit, ops_app
from tests.embedops.helpers import add, events, settled
from tests.waiting import eventually

TEXTS = {f"r{i:03d}": f"record number {i} about topic {i % 7}" for i in range(80)}
NEW_MODEL = "openai:fake"
MANY = {f"m{i:04d}": f"one of many records, number {i}" for i in range(400)}


async def test_model_switch_under_load_never_mixes_models(tmp_path: Path, openai_server: ScriptedOpenAI) -> None:
    async with ops_app(tmp_path, openai_server) as (client, app):
        services = services_of(app)
        assert (await client.post("/v1/collections", json={"name": "docs"})).status_code == 201
        await add(client, "docs", TEXTS)
        stop = asyncio.Event()
        errors: list[str] = []
        answers: list[tuple[str, dict[str, Any]]] = []
        written: list[str] = []

        async def search_loop(offset: int) -> None:
            i = offset
            while not stop.is_set():
                query = f"topic {i % 7}"
                r = await client.post(
                    "/v1/collections/docs/search", json={"text": query, "limit": 5, "with_vector": True}
                )
                if r.status_code == 200:
                    answers.append((query, r.json()))
                else:
                    errors.append(r.text)
                i += 1

        async def write_loop() -> None:
            while not stop.is_set():
                rid = f"new{len(written):03d}"
                await add(client, "docs", {rid: f"a record written during the switch, number {len(written)}"})
                written.append(rid)

        load = [asyncio.create_task(search_loop(k)) for k in range(2)] + [asyncio.create_task(write_loop())]
        try:
            r = await client.post("/v1/collections/docs/reembed", json={"model": NEW_MODEL, "batch": 16})
            final = events(r)[-1]
            assert final["event"] == "done", final
            assert final["promoted"] is True

            async def new_model_answers() -> int:
                return sum(1 for _, body in answers if body["results"] and len(body["results"][0]["vector"]) == DIM)

            await eventually(new_model_answers, until=lambda n: n >= 5, timeout=60)
        finally:
            stop.set()
            await asyncio.gather(*load)

        assert not errors, errors[:3]
        assert written, "the write load ran during the switch"
        dims_seen = set()
        for query, body in answers:
            dims = {len(h["vector"]) for h in body["results"]}
            assert len(dims) == 1, "one answer mixed vectors of two models"
            dim = dims.pop()
            dims_seen.add(dim)
            # the query was embedded by the same model as the vectors it was compared with
            q = fake_unit(query) if dim == DIM else (await services.engine.embed([query]))[0]
            # The int8 model quantizes activations per batch, so a text embedded beside others (as the
            # search's query was, under this load) moves by up to ~0.01 cosine from the same text alone.
            tolerance = 1e-3 if dim == DIM else 0.05
            for hit in body["results"]:
                assert abs(float(np.dot(q, np.asarray(hit["vector"], dtype=np.float32))) - hit["score"]) < tolerance
        assert dims_seen == {384, DIM}

        s = await settled(client, "docs")
        assert (s["model"], s["dim"], s["previous_model"], s["shadow_model"]) == (NEW_MODEL, DIM, "local:minilm", None)
        total = len(TEXTS) + len(written)
        assert s["total"] == total and s["vectors"] == total and s["coverage"] == 1.0
        assert s["models"] == {NEW_MODEL: total}  # every record restamped
        collection = await services.collections.get("docs")
        previous = collection.config["previous_vector_name"]
        assert await services.vectors.count(previous) == total  # kept warm for a rollback

        await rollback_and_forget(client)


async def rollback_and_forget(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/collections/docs/reembed/rollback")
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "local:minilm"
    s = await settled(client, "docs")
    assert (s["model"], s["dim"], s["previous_model"], s["coverage"]) == ("local:minilm", 384, NEW_MODEL, 1.0)
    r = await client.post("/v1/collections/docs/search", json={"text": "topic 3", "with_vector": True})
    assert {len(h["vector"]) for h in r.json()["results"]} == {384}
    assert (await client.delete("/v1/collections/docs/reembed/previous")).status_code == 200
    s = await settled(client, "docs")
    assert s["previous_model"] is None
    assert (await client.post("/v1/collections/docs/reembed/rollback")).status_code == 409


async def test_interrupted_switch_resumes_then_can_be_abandoned(tmp_path: Path, openai_server: ScriptedOpenAI) -> None:
    async with ops_app(tmp_path, openai_server) as (client, _app):
        await client.post("/v1/collections", json={"name": "docs"})
        await add(client, "docs", MANY)
        openai_server.script = ["ok", "ok", "hang"]  # dimension probe, first page, then a hang
        r = await client.post("/v1/collections/docs/reembed", json={"model": NEW_MODEL, "batch": 16, "detach": True})
        assert r.status_code == 202, r.text
        async with asyncio.timeout(120):
            await openai_server.hanging.wait()
        stopping = asyncio.create_task(client.delete("/v1/collections/docs/job"))
        openai_server.release.set()
        first = (await stopping).json()
        assert (first["state"], first["promoted"]) == ("stopped", False)
        s = await settled(client, "docs")
        assert s["model"] == "local:minilm" and s["shadow_model"] == NEW_MODEL
        assert 0 < s["shadow_coverage"] < 1

        openai_server.embedded.clear()
        r = await client.post("/v1/collections/docs/reembed", json={"model": NEW_MODEL, "batch": 16})
        final = events(r)[-1]
        assert final["promoted"] is True
        # the rerun embedded only what the first run had not written
        assert sum(openai_server.embedded.values()) == len(MANY) - first["succeeded"]

        # a switch in progress can be abandoned: back to a collection with no shadow
        await client.post("/v1/collections/docs/reembed/rollback")
        s = await settled(client, "docs")
        assert s["model"] == "local:minilm"
