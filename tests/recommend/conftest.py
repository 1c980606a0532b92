"""An app with the recommendation feature and a small catalog of four kinds of items."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shoal.app import CoreFeature
from shoal.recommend import RecommendFeature, RecommendSettings
from tests.app_fixtures import make_settings, running_app
from tests.waiting import eventually

KINDS: dict[str, list[str]] = {
    "phone": [
        "Smartphone with 128GB storage and a 6.5 inch AMOLED display",
        "5G Android mobile phone with triple camera and fast charging",
        "Budget smartphone with 4GB RAM and 5000mAh battery",
        "Flagship mobile phone with 12GB RAM and a 120Hz screen",
        "Compact Android phone with dual SIM and 64GB storage",
        "Foldable smartphone with a large inner display",
    ],
    "headphones": [
        "Wireless Bluetooth earbuds with noise cancellation",
        "Over-ear headphones with deep bass and 40 hour battery",
        "In-ear wired earphones with microphone",
        "Noise cancelling wireless headphones for travel",
        "Sports Bluetooth neckband earphones, sweat proof",
        "True wireless earbuds with charging case",
    ],
    "cable": [
        "USB-C to USB-C fast charging cable, 1 metre",
        "HDMI 2.1 cable for 4K television, 2 metres",
        "Lightning to USB cable, braided nylon",
        "Micro USB data sync and charging cable",
        "Ethernet LAN cable Cat6, 5 metres",
        "USB extension cable male to female",
    ],
    "television": [
        "55 inch 4K Ultra HD smart LED television",
        "32 inch HD ready LED TV with HDMI ports",
        "65 inch QLED smart TV with Dolby Vision",
        "43 inch full HD Android smart television",
        "50 inch 4K Google TV with voice remote",
        "OLED television 48 inch with HDR",
    ],
}


def catalog() -> list[dict[str, Any]]:
    items = []
    for kind, titles in KINDS.items():
        for i, title in enumerate(titles):
            items.append(
                {"id": f"{kind}-{i}", "text": title, "payload": {"title": title, "category": kind, "price": 10 + i}}
            )
    return items


def rec_settings(**overrides: Any) -> RecommendSettings:
    base: dict[str, Any] = {"popular_refresh_s": 0.0, "list_size": 20}
    base.update(overrides)
    return RecommendSettings(_env_file=None, **base)


@asynccontextmanager
async def rec_app(
    data_dir: Path, settings: RecommendSettings | None = None, *, load_catalog: bool = True, **core: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    features = [CoreFeature(), RecommendFeature(settings or rec_settings())]
    async with running_app(make_settings(data_dir, **core), features) as (client, app):
        if load_catalog:
            r = await client.post("/v1/collections/items/records?wait=true", json={"records": catalog()})
            assert r.status_code == 200, r.text
        yield client, app


@pytest.fixture(params=["matrix", "vector-store"])
async def app_client(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """Both ways of building lists: the catalog held in memory (the default for a small catalog)
    and searched through the vector store (``exact_max_items=0``, as a large catalog is)."""
    settings = rec_settings() if request.param == "matrix" else rec_settings(exact_max_items=0)
    async with rec_app(tmp_path / "data", settings) as (client, _):
        yield client


async def post_events(client: httpx.AsyncClient, events: Sequence[dict[str, Any]] | dict[str, Any]) -> list[str]:
    r = await client.post("/v1/events", json=events)
    assert r.status_code == 202, r.text
    ids: list[str] = r.json()["event_ids"]
    return ids


async def profile(client: httpx.AsyncClient, user: str) -> dict[str, Any]:
    r = await client.get(f"/v1/users/{user}/profile")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def wait_events(client: httpx.AsyncClient, user: str, n: int, timeout: float = 30) -> dict[str, Any]:
    """Wait until ``user``'s profile has applied ``n`` events."""
    return await eventually(lambda: profile(client, user), until=lambda p: p["events"] >= n, timeout=timeout)


async def recommendations(client: httpx.AsyncClient, user: str, **params: Any) -> dict[str, Any]:
    r = await client.get(f"/v1/users/{user}/recommendations", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body
