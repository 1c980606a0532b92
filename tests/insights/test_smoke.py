from __future__ import annotations

import httpx

from tests.waiting import eventually


async def test_post_then_insight(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/conversations", json={"text": "My package is late again, terrible", "author": "c1",
                                                          "timestamp": "2025-01-20T10:00:00Z"})
    assert r.status_code == 202, r.text
    async def probe() -> httpx.Response:
        return await client.get("/api/v1/insights", params={"start_time": "2025-01-20T00:00:00Z", "end_time": "2025-01-21T00:00:00Z"})
    resp = await eventually(probe, until=lambda r: r.status_code == 200 and r.json()["insights"])
    print(resp.json())
