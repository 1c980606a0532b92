"""The catalog held in memory: the same lists as the vector store's search, kept current as items
are written and deleted, and left to the vector store when the catalog is too large."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shoal.recommend.feature_state import state_of
from shoal.recommend.matrix import ItemMatrix
from shoal.recommend.profiles import Profile
from shoal.recommend.service import Recommender
from tests.app_fixtures import services_of
from tests.recommend.conftest import catalog, rec_app, rec_settings
from tests.waiting import eventually


def profile_of(user: str, vectors: dict[str, list[float]], items: list[str]) -> Profile:
    profile = Profile(user)
    for n, item in enumerate(items):
        profile.add(np.asarray(vectors[item]), 1.0 + n, float(n), 3600.0)
        profile.record(item, "view", known=True, recent_size=10)
    return profile


async def size_of(matrix: ItemMatrix) -> int:
    return matrix.size


async def test_exact_lists_match_the_vector_store_search(tmp_path: Path) -> None:
    async with rec_app(tmp_path / "data", rec_settings(popularity_blend=0.0)) as (_, app):
        services = services_of(app)
        state = state_of(services)
        held = state.recommender
        assert held.matrix is not None and await held.matrix.ready()
        assert held.matrix.size == len(catalog())
        searched = Recommender(services, state.settings, state.store, None)
        name = await held.vector_name()
        assert name is not None
        points = await services.vectors.retrieve(name, [i["id"] for i in catalog()], with_vectors=True)
        vectors = {p.id: list(p.vector or []) for p in points}
        tastes = [["phone-0", "phone-3"], ["cable-1"], ["television-2", "headphones-4", "cable-0"]]
        for n, items in enumerate(tastes):
            profile = profile_of(f"u{n}", vectors, items)
            exact, found = await held.compute(profile), await searched.compute(profile)
            assert exact["source"] == found["source"] == "realtime"
            assert not {i["item_id"] for i in exact["items"]} & set(items)
            # same items in the same order; scores agree to the store's float16 precision
            assert [i["item_id"] for i in exact["items"][:10]] == [i["item_id"] for i in found["items"][:10]]
            for a, b in zip(exact["items"], found["items"], strict=False):
                assert a["score"] == pytest.approx(b["score"], abs=2e-3)
                assert a["title"] == b["title"]


async def test_written_and_deleted_items_reach_the_matrix(tmp_path: Path) -> None:
    async with rec_app(tmp_path / "data") as (client, app):
        matrix = state_of(services_of(app)).recommender.matrix
        assert matrix is not None and await matrix.ready()
        before = matrix.size
        item = {"id": "speaker-0", "text": "Portable Bluetooth speaker", "payload": {"title": "Speaker"}}
        r = await client.post("/v1/collections/items/records?wait=true", json={"records": [item]})
        assert r.status_code == 200, r.text
        await eventually(lambda: size_of(matrix), until=lambda n: n == before + 1)
        assert matrix.titles(["speaker-0"]) == {"speaker-0": "Speaker"}
        assert "speaker-0" in matrix.vectors(["speaker-0"])

        r = await client.delete("/v1/collections/items/records/phone-0")
        assert r.status_code in (200, 202, 204), r.text
        await eventually(lambda: size_of(matrix), until=lambda n: n == before)
        assert matrix.titles(["phone-0"]) == {}
        profile = Profile("fan")
        profile.add(matrix.vectors(["phone-1"])["phone-1"], 1.0, 0.0, 3600.0)
        profile.record("phone-1", "view", known=True, recent_size=10)
        rec = await state_of(services_of(app)).recommender.compute(profile)
        ids = [i["item_id"] for i in rec["items"]]
        assert "phone-0" not in ids and "phone-1" not in ids
        assert ids[0].startswith("phone-")


async def test_a_catalog_larger_than_the_cap_is_searched_in_the_vector_store(tmp_path: Path) -> None:
    async with rec_app(tmp_path / "data", rec_settings(exact_max_items=10)) as (_, app):
        state = state_of(services_of(app))
        assert state.recommender.matrix is not None
        assert not await state.recommender.matrix.ready()
        name = await state.recommender.vector_name()
        assert name is not None
        points = await services_of(app).vectors.retrieve(name, ["cable-0"], with_vectors=True)
        profile = Profile("big")
        profile.add(np.asarray(points[0].vector), 1.0, 0.0, 3600.0)
        profile.record("cable-0", "view", known=True, recent_size=10)
        rec = await state.recommender.compute(profile)
        assert rec["source"] == "realtime"
        assert rec["items"][0]["item_id"].startswith("cable-") and rec["items"][0]["item_id"] != "cable-0"
