"""Online topic clusters over unit embeddings: topics appear, merge and split as data arrives.

Each cluster keeps the *sum* of its members' unit vectors, so its centroid is ``sum / |sum|`` and its
cohesion (mean cosine of members to the centroid) is ``|sum| / size`` — both exact and O(d) to update.

- **assign**: a vector joins the nearest cluster when their cosine is at least ``join``; otherwise it
  starts a new cluster (DP-means style), so new topics appear as soon as they are seen.
- **merge**: two clusters whose centroids reach ``merge`` cosine become one (sums and counts add).
- **split**: a cluster of at least ``split_min`` members whose cohesion fell below ``split_below`` is
  split in two by 2-means over a bounded reservoir sample of its members.
- **cap**: past ``max_clusters`` the closest pair is merged; singletons that never grew are dropped
  first when the cap bites (they are noise, not topics).

Labels are snake_case from each cluster's most distinctive terms (class-based TF-IDF, c-TF-IDF).
The whole state round-trips through ``ClusterState`` rows so it survives restarts.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]

_WORD = re.compile(r"[a-z][a-z']{2,}")
_NOISE = re.compile(r"https?://\S+|@\w+|#|&amp;|\d+")
_STOPWORDS_TEXT = """a about above after again against all am an and any are aren't as at be because been before being
    below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
    during each few for from further had hadn't has hasn't have haven't having he her here hers herself him
    himself his how i i'm i've if in into is isn't it it's its itself just let's me more most my myself no
    nor not now of off on once only or other ought our ours ourselves out over own same she should so some
    such than that that's the their theirs them themselves then there there's these they they're this
    those through to too under until up very was wasn't we we're were weren't what what's when where which
    while who whom why will with won't would wouldn't you you're your yours yourself yourselves im ive dont
    cant get got also still one would could like please thanks thank hi hello hey yes yet via amp really
    need want know going just even since ever every much many way back make made us new see sure well"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def terms_of(text: str) -> list[str]:
    """Content words of ``text`` (lower-cased, no mentions, URLs, numbers or stop words)."""
    cleaned = _NOISE.sub(" ", text.lower())
    return [w.strip("'") for w in _WORD.findall(cleaned) if w.strip("'") not in STOPWORDS]


@dataclass
class Cluster:
    """One topic. ``total`` is the sum of member unit vectors (float64 to keep long sums exact)."""

    id: int
    total: npt.NDArray[np.float64]
    size: int
    terms: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    reservoir: list[Vector] = field(default_factory=list)
    seen: int = 0
    """Members offered to the reservoir (for reservoir sampling)."""
    label: str = ""
    labelled_at: int = 0
    """Size when the label was last computed (labels are refreshed as the cluster grows by 25 %)."""
    _unit: Vector | None = field(default=None, repr=False)

    def changed(self) -> None:
        """Call after ``total`` changes (the centroid is cached)."""
        self._unit = None

    @property
    def centroid(self) -> Vector:
        if self._unit is None:
            norm = math.sqrt(float(self.total @ self.total))
            self._unit = (self.total / norm if norm else self.total).astype(np.float32)
        return self._unit

    @property
    def cohesion(self) -> float:
        return math.sqrt(float(self.total @ self.total)) / self.size if self.size else 1.0


_SPLIT = -1


def _follow(remap: dict[int, int], cid: int) -> int:
    while cid in remap:
        cid = remap[cid]
    return cid


@dataclass(frozen=True, slots=True)
class Assignment:
    cluster_id: int
    similarity: float
    """Cosine between the vector and its cluster's centroid at assignment time."""


class OnlineClusterer:
    """Streaming clustering of L2-normalised vectors (see the module docstring for the rules).

    Not thread-safe: one processor owns it. ``dirty`` / ``removed`` tell the store what to persist.
    """

    def __init__(
        self,
        dim: int,
        *,
        join: float = 0.55,
        merge: float = 0.80,
        split_below: float = 0.50,
        split_min: int = 40,
        max_clusters: int = 300,
        reservoir_size: int = 64,
        max_terms: int = 400,
        seed: int = 0,
    ) -> None:
        self.dim = dim
        self.join = join
        self.merge_at = merge
        self.split_below = split_below
        self.split_min = split_min
        self.max_clusters = max_clusters
        self.reservoir_size = reservoir_size
        self.max_terms = max_terms
        self._rng = np.random.default_rng(seed)
        self.clusters: dict[int, Cluster] = {}
        self._next_id = 1
        self._ids: list[int] = []
        self._rows: dict[int, int] = {}
        self._matrix: Vector = np.zeros((16, dim), dtype=np.float32)
        self._mass = 0.0
        self.term_totals: Counter[str] = Counter()
        """Members containing each term, over every cluster (the c-TF-IDF document frequency)."""
        self.dirty: set[int] = set()
        self.removed: set[int] = set()

    # -- state -----------------------------------------------------------------------------------
    def load(self, clusters: Iterable[Cluster]) -> None:
        self.clusters = {c.id: c for c in clusters}
        self.term_totals = Counter()
        for cluster in self.clusters.values():
            self.term_totals.update(cluster.terms)
        self._next_id = max(self.clusters, default=0) + 1
        self._rebuild()

    def _rebuild(self) -> None:
        self._ids = list(self.clusters)
        self._rows = {cid: row for row, cid in enumerate(self._ids)}
        self._matrix = np.zeros((max(16, 2 * len(self._ids)), self.dim), dtype=np.float32)
        for row, cid in enumerate(self._ids):
            self._matrix[row] = self.clusters[cid].centroid

    @property
    def _active(self) -> Vector:
        return self._matrix[: len(self._ids)]

    def nearest(self, vector: Vector) -> Assignment | None:
        """The closest cluster without changing anything (used for reasoning and queries)."""
        if not self._ids:
            return None
        sims = self._active @ vector
        j = int(np.argmax(sims))
        return Assignment(self._ids[j], float(sims[j]))

    # -- streaming -------------------------------------------------------------------------------
    def add(self, vectors: Vector, texts: Sequence[str]) -> list[Assignment]:
        """Assign each vector (in order), then merge, split and cap. Returns the final cluster of each
        vector after merges/splits, with its similarity to that cluster's centroid."""
        before = set(self.dirty)
        self.dirty.clear()
        members: list[int] = []
        for vector, text in zip(vectors, texts, strict=True):
            found = self.nearest(vector)
            if found is None or found.similarity < self.join:
                cluster = self._create(vector.astype(np.float64), 0)
            else:
                cluster = self.clusters[found.cluster_id]
            self._absorb(cluster, vector, text)
            members.append(cluster.id)
        remap = self._merge_pass(set(members))
        remap.update(self._split_pass({_follow(remap, i) for i in members}))
        remap.update(self._cap())
        self._relabel()
        self.dirty |= before
        out = []
        for vector, cid in zip(vectors, members, strict=True):
            cid = _follow(remap, cid)
            if cid not in self.clusters:  # its cluster was split: the closer half
                found = self.nearest(vector)
                assert found is not None
                out.append(found)
            else:
                out.append(Assignment(cid, float(self._active[self._rows[cid]] @ vector)))
        return out

    def _create(self, total: npt.NDArray[np.float64], size: int) -> Cluster:
        cluster = Cluster(id=self._next_id, total=total.copy(), size=size)
        self._next_id += 1
        self.clusters[cluster.id] = cluster
        if len(self._ids) == len(self._matrix):
            self._matrix = np.vstack([self._matrix, np.zeros_like(self._matrix)])
        self._rows[cluster.id] = len(self._ids)
        self._ids.append(cluster.id)
        self._matrix[self._rows[cluster.id]] = cluster.centroid
        self.dirty.add(cluster.id)
        return cluster

    def _absorb(self, cluster: Cluster, vector: Vector, text: str) -> None:
        if cluster.size:
            cluster.total += vector
            cluster.changed()
        cluster.size += 1
        cluster.seen += 1
        terms = set(terms_of(text))
        cluster.terms.update(terms)
        self.term_totals.update(terms)
        if len(self.term_totals) > 200_000:
            self.term_totals = Counter(dict(self.term_totals.most_common(100_000)))
        if len(cluster.terms) > 2 * self.max_terms:
            cluster.terms = Counter(dict(cluster.terms.most_common(self.max_terms)))
        if len(cluster.examples) < 3:
            cluster.examples.append(text[:280])
        if len(cluster.reservoir) < self.reservoir_size:
            cluster.reservoir.append(vector.astype(np.float32))
        else:
            slot = int(self._rng.integers(cluster.seen))
            if slot < self.reservoir_size:
                cluster.reservoir[slot] = vector.astype(np.float32)
        self._matrix[self._rows[cluster.id]] = cluster.centroid
        self.dirty.add(cluster.id)

    def _combine(self, keep: Cluster, gone: Cluster) -> None:
        keep.total += gone.total
        keep.changed()
        keep.size += gone.size
        keep.seen += gone.seen
        keep.terms.update(gone.terms)
        keep.examples = (keep.examples + gone.examples)[:3]
        if gone.size * 4 > keep.size:
            keep.label = ""  # a real merge: the topic changed; a small absorption waits for growth
        pool = keep.reservoir + gone.reservoir
        if len(pool) > self.reservoir_size:
            # keep each member's chance proportional to the size of the cluster it came from
            weights = np.array([keep.size / len(keep.reservoir)] * len(keep.reservoir)
                               + [gone.size / len(gone.reservoir)] * len(gone.reservoir))
            picks = self._rng.choice(len(pool), self.reservoir_size, replace=False, p=weights / weights.sum())
            pool = [pool[int(i)] for i in picks]
        keep.reservoir = pool
        del self.clusters[gone.id]
        self.removed.add(gone.id)
        self.dirty.discard(gone.id)
        self.dirty.add(keep.id)

    def _merge_pass(self, touched: set[int]) -> dict[int, int]:
        """Merge touched clusters into their nearest neighbour while centroids reach ``merge``."""
        remap: dict[int, int] = {}
        while touched:
            rows = [self._rows[i] for i in touched if i in self._rows]
            sims = self._active[rows] @ self._active.T
            sims[np.arange(len(rows)), rows] = -1.0
            best = sims.argmax(axis=1)
            merged: set[int] = set()
            for r in np.argsort(-sims[np.arange(len(rows)), best]):
                a, b = self._ids[rows[r]], self._ids[int(best[r])]
                if sims[r, best[r]] < self.merge_at:
                    break
                if a in merged or b in merged:
                    continue
                keep, gone = (self.clusters[a], self.clusters[b])
                if gone.size > keep.size:
                    keep, gone = gone, keep
                self._combine(keep, gone)
                remap[gone.id] = keep.id
                merged |= {a, b}
            if merged:
                self._rebuild()
            touched = {i for i in merged if i in self.clusters}
        return remap

    def _split_pass(self, touched: set[int]) -> dict[int, int]:
        remap: dict[int, int] = {}
        for cid in touched:
            cluster = self.clusters.get(cid)
            if cluster is None or cluster.size < self.split_min or cluster.cohesion >= self.split_below:
                continue
            if len(cluster.reservoir) < 8:
                continue
            halves = self._two_means(np.stack(cluster.reservoir))
            if halves is None:
                continue
            del self.clusters[cid]
            self.removed.add(cid)
            self.dirty.discard(cid)
            remap[cid] = _SPLIT
            for part in halves:
                share = len(part) / len(cluster.reservoir)
                mean = part.mean(axis=0).astype(np.float64)
                size = max(1, round(cluster.size * share))
                child = self._create(mean * size, size)
                child.reservoir = list(part)
                child.seen = size
                child.terms = Counter({t: max(1, round(n * share)) for t, n in cluster.terms.items()})
                child.examples = cluster.examples[:3]
        self._rebuild()
        return remap

    def _two_means(self, points: Vector, rounds: int = 10) -> tuple[Vector, Vector] | None:
        # farthest-pair seeding is deterministic and good enough for a 2-way split
        first = points[int(np.argmin(points @ points.mean(axis=0)))]
        second = points[int(np.argmin(points @ first))]
        centers = np.stack([first, second])
        labels = np.zeros(len(points), dtype=np.int64)
        for _ in range(rounds):
            labels = np.argmax(points @ centers.T, axis=1)
            if labels.min() == labels.max():
                return None
            centers = np.stack([points[labels == k].mean(axis=0) for k in (0, 1)])
            centers /= np.linalg.norm(centers, axis=1, keepdims=True)
        return points[labels == 0], points[labels == 1]

    def _cap(self) -> dict[int, int]:
        """Fold the smallest clusters into their nearest neighbours until at most ``max_clusters``."""
        remap: dict[int, int] = {}
        excess = len(self.clusters) - self.max_clusters
        if excess <= 0:
            return remap
        self._rebuild()
        sizes = np.array([self.clusters[i].size for i in self._ids])
        order = np.argsort(sizes, kind="stable")
        gone_rows = set(int(r) for r in order[:excess])
        sims = self._active[list(gone_rows)] @ self._active.T
        sims[:, list(gone_rows)] = -2.0  # never fold into another cluster that is going away
        for r, row in enumerate(gone_rows):
            gone = self.clusters[self._ids[row]]
            keep = self.clusters[self._ids[int(np.argmax(sims[r]))]]
            self._combine(keep, gone)
            remap[gone.id] = keep.id
        self._rebuild()
        return remap

    # -- labels ----------------------------------------------------------------------------------
    def _relabel(self) -> None:
        self._mass = self.term_totals.total() / max(1, len(self.clusters))
        for cid in self.dirty:
            cluster = self.clusters.get(cid)
            # c-TF-IDF over hundreds of terms is the costly part: refresh as the cluster grows, not per member
            if cluster is not None and (not cluster.label or cluster.size >= cluster.labelled_at * 1.25 + 1):
                cluster.label = self.label_of(cluster)
                cluster.labelled_at = cluster.size

    def top_terms(self, cluster: Cluster, k: int = 5) -> list[str]:
        """The cluster's most distinctive terms by c-TF-IDF: tf in the cluster × log(1 + A / tf
        across all clusters), A = average term mass per cluster."""
        if not cluster.terms:
            return []
        totals = self.term_totals
        mass = self._mass or totals.total() / max(1, len(self.clusters))
        own = cluster.terms.total()
        # the winners are among the most frequent terms: score those only
        candidates = cluster.terms.most_common(50)
        scored = [((n / own) * math.log(1 + mass / max(n, totals[t])), t) for t, n in candidates]
        # ties broken alphabetically: labels must not depend on hash-seeded set order
        return [t for _, t in sorted(scored, key=lambda st: (-st[0], st[1]))[:k]]

    def label_of(self, cluster: Cluster) -> str:
        terms = [re.sub(r"[^a-z0-9]+", "_", t).strip("_") for t in self.top_terms(cluster, 2)]
        terms = [t for t in terms if t]
        return "_".join(terms) if terms else f"topic_{cluster.id}"
