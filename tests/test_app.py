"""The app factory's lifespan: what it sets up for the whole process while serving, and undoes."""

from __future__ import annotations

import gc
from pathlib import Path

from shoal.app import GC_THRESHOLDS
from tests.app_fixtures import make_settings, running_app


async def test_serving_freezes_startup_objects_and_collects_the_young_generation_less_often(tmp_path: Path) -> None:
    before = gc.get_threshold()
    assert before != GC_THRESHOLDS
    async with running_app(make_settings(tmp_path), features=[]):
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 10_000  # modules, the model, the schemas
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_the_ingest_endpoints_are_tried_before_every_other_route(tmp_path: Path) -> None:
    # FastAPI tries routes one by one in mounting order: the high-rate POSTs are mounted first
    from shoal.app import create_app, default_features

    paths = list(create_app(make_settings(tmp_path), default_features()).openapi()["paths"])
    ingest = {"/v1/collections/{collection}/records", "/api/v1/conversations", "/v1/events"}
    assert set(paths[: len(ingest)]) == ingest
    assert paths.index("/health") == len(ingest)
