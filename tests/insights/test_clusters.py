"""Online clusters: topics appear, merge, split, get readable labels."""

from __future__ import annotations

import numpy as np

from shoal.insights.clusters import OnlineClusterer, terms_of


def unit(*values: float) -> np.ndarray:
    v = np.zeros(8, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


def test_new_topics_appear_as_data_arrives() -> None:
    c = OnlineClusterer(8, join=0.8)
    c.add(np.stack([unit(1), unit(1, 0.1)]), ["late delivery parcel", "parcel delivery late again"])
    assert len(c.clusters) == 1
    out = c.add(np.stack([unit(0, 1)]), ["password reset failing"])
    assert len(c.clusters) == 2 and out[0].similarity > 0.99


def test_clusters_merge_when_centroids_converge() -> None:
    c = OnlineClusterer(8, join=0.9, merge=0.9)  # the two seeds are at cosine 0.88
    c.add(np.stack([unit(1, 0.6)]), ["a"])
    c.add(np.stack([unit(0.6, 1)]), ["b"])
    assert len(c.clusters) == 2
    out = c.add(np.stack([unit(1, 1)] * 3), ["c"] * 3)  # joins one, pulling its centroid to the other
    assert len(c.clusters) == 1
    assert c.removed and out[-1].cluster_id in c.clusters
    assert next(iter(c.clusters.values())).size == 5


def test_diverse_clusters_split() -> None:
    rng = np.random.default_rng(0)
    c = OnlineClusterer(8, join=0.0, merge=0.99, split_below=0.8, split_min=20)
    left = [unit(1, 0, *rng.normal(0, 0.05, 3)) for _ in range(15)]
    right = [unit(0, 1, *rng.normal(0, 0.05, 3)) for _ in range(15)]
    c.add(np.stack(left + right), ["refund money back"] * 15 + ["login password app"] * 15)
    assert len(c.clusters) == 2
    assert sorted(cl.size for cl in c.clusters.values()) == [15, 15]


def test_cap_folds_the_smallest() -> None:
    c = OnlineClusterer(8, join=0.999, merge=0.9999, max_clusters=3)
    c.add(np.stack([unit(*np.eye(8)[i]) for i in range(6)]), [f"t{i}" for i in range(6)])
    assert len(c.clusters) == 3 and sum(cl.size for cl in c.clusters.values()) == 6


def test_labels_are_snake_case_distinctive_terms() -> None:
    c = OnlineClusterer(8, join=0.8)
    c.add(
        np.stack([unit(1)] * 3 + [unit(0, 1)] * 3),
        [
            "My parcel delivery is late",
            "late delivery again",
            "delivery parcel missing",
            "password reset email",
            "cannot reset password",
            "password reset link expired",
        ],
    )
    labels = sorted(cl.label for cl in c.clusters.values())
    assert labels[0] in {"delivery_late", "delivery_parcel"}
    assert labels[1] == "password_reset"
    assert terms_of("@AmazonHelp my order https://t.co/x is LATE 2 days") == ["order", "late", "days"]


def test_state_stays_bounded_on_a_long_stream() -> None:
    rng = np.random.default_rng(1)
    words = [f"w{i:04d}x" for i in range(3000)]
    c = OnlineClusterer(16, join=0.6, max_clusters=20, reservoir_size=8, max_terms=30, max_vocabulary=500)
    for _ in range(40):
        vectors = rng.normal(size=(64, 16)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        texts = [" ".join(rng.choice(words, 6)) for _ in range(64)]
        out = c.add(vectors, texts)
        assert len(out) == 64 and all(a.cluster_id in c.clusters for a in out)
        assert len(c.clusters) <= 20
        for cluster in c.clusters.values():
            assert len(cluster.reservoir) <= 8 and len(cluster.terms) <= 60 and len(cluster.examples) <= 3
        assert len(c.term_totals) <= 1000
    assert sum(cl.size for cl in c.clusters.values()) == 40 * 64


def test_batched_assignment_matches_one_at_a_time() -> None:
    """A batch sees the centroids as its earlier vectors left them: same clusters as adding singly."""
    rng = np.random.default_rng(2)
    centers = rng.normal(size=(5, 16))
    points = np.concatenate([c + rng.normal(0, 0.6, size=(30, 16)) for c in centers]).astype(np.float32)
    points = points[rng.permutation(len(points))]
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    texts = ["t"] * len(points)
    kwargs = {"join": 0.7, "merge": 0.999, "split_min": 10_000, "max_clusters": 1000}
    batched, single = OnlineClusterer(16, **kwargs), OnlineClusterer(16, **kwargs)  # type: ignore[arg-type]
    together = [a.cluster_id for a in batched.add(points, texts)]
    alone = [single.add(p[None, :], ["t"])[0].cluster_id for p in points]
    assert together == alone
    assert {k: v.size for k, v in batched.clusters.items()} == {k: v.size for k, v in single.clusters.items()}
