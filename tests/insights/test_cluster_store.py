"""Cluster persistence: the small columns after every batch, the bulky samples as clusters grow and
all of them at shutdown (``full``), so a restart finds the same clusters."""

from __future__ import annotations

import numpy as np

from shoal.insights.clusters import OnlineClusterer
from shoal.insights.store import InsightsStore


def near(rng: np.random.Generator, axis: int, n: int) -> np.ndarray:
    points = np.zeros((n, 8), dtype=np.float32)
    points[:, axis] = 1.0
    points += rng.normal(0, 0.05, size=points.shape).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


async def test_bulky_parts_follow_growth_and_shutdown(store: InsightsStore) -> None:
    rng = np.random.default_rng(0)
    c = OnlineClusterer(8, join=0.8, reservoir_size=16)
    c.add(near(rng, 0, 20), ["parcel late delivery"] * 20)
    await store.save_clusters(c)  # a new cluster: everything is written
    (cluster,) = c.clusters.values()
    assert cluster.saved_at == 20

    c.add(near(rng, 0, 2), ["refund please"] * 2)  # +10 %: only the small columns
    await store.save_clusters(c)
    (row,) = await store.list_clusters(10)
    assert row["size"] == 22
    assert "refund" not in {t for loaded in await store.load_clusters(8) for t in loaded.terms}

    await store.save_clusters(c, full=True)  # shutdown: the rest
    (loaded,) = await store.load_clusters(8)
    assert loaded.terms == cluster.terms and loaded.seen == cluster.seen
    assert np.array_equal(loaded.reservoir, cluster.reservoir)

    restarted = OnlineClusterer(8, join=0.8, reservoir_size=16)
    restarted.load(await store.load_clusters(8))
    probe = near(rng, 0, 1)[0]
    assert restarted.nearest(probe) == c.nearest(probe)
    assert restarted.clusters[cluster.id].label == cluster.label and restarted.clusters[cluster.id].top == cluster.top
