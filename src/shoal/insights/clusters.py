"""Online topic clusters over unit embeddings: topics appear, merge and split as data arrives.

Each cluster keeps the *sum* of its members' unit vectors, so its centroid is ``sum / |sum|`` and its
cohesion (mean cosine of members to the centroid) is ``|sum| / size`` — both exact and O(d) to update.

- **assign**: a vector joins the nearest cluster when their cosine is at least ``join``; otherwise it
  starts a new cluster (DP-means style), so new topics appear as soon as they are seen. Vectors are
  assigned in order, each seeing the centroids as the previous ones left them, but a batch costs one
  matrix product against the centroids and one Gram matrix: a centroid's similarities to the rest of
  the batch are updated from ``sum·v`` and ``|sum|²`` in O(batch) as it absorbs a member.
- **merge**: two clusters whose centroids reach ``merge`` cosine become one (sums and counts add).
- **split**: a cluster of at least ``split_min`` members whose cohesion fell below ``split_below`` is
  split in two by 2-means over a bounded reservoir sample of its members.
- **cap**: past ``max_clusters`` the smallest clusters are folded into their nearest neighbours.

Labels are snake_case from each cluster's most distinctive terms (class-based TF-IDF, c-TF-IDF),
recomputed when a cluster has grown by a quarter, not on every member. The state is bounded whatever
the stream's length: at most ``max_clusters`` clusters (plus one batch's new ones until the cap), each
with ``reservoir_size`` vectors, ≤ 2 × ``max_terms`` term counts and 3 examples, and ≤ ``max_vocabulary``
document frequencies. It round-trips through ``insight_clusters`` rows so it survives restarts.
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import numpy.typing as npt

from shoal.blas import one_blas_thread

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
TOP_TERMS = 8
"""Distinctive terms kept per cluster (``top_terms``); the label is made of the first two."""


def terms_of(text: str) -> list[str]:
    """Content words of ``text`` (lower-cased, no mentions, URLs, numbers or stop words)."""
    cleaned = _NOISE.sub(" ", text.lower())
    words = _WORD.findall(cleaned)
    if "'" in cleaned:
        words = [w.strip("'") for w in words]
    return [w for w in words if w not in STOPWORDS]


def _no_vectors() -> Vector:
    return np.zeros((0, 0), dtype=np.float32)


@dataclass
class Cluster:
    """One topic. ``total`` is the sum of member unit vectors (float64 to keep long sums exact)."""

    id: int
    total: npt.NDArray[np.float64]
    size: int
    terms: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    reservoir: Vector = field(default_factory=_no_vectors)
    """Up to ``reservoir_size`` member vectors, shape ``(k, dim)`` (a uniform sample, for splits)."""
    seen: int = 0
    """Members offered to the reservoir (for reservoir sampling)."""
    label: str = ""
    labelled_at: int = 0
    """Size when the label was last computed (labels are refreshed as the cluster grows by 25 %)."""
    top: list[str] = field(default_factory=list)
    """The ``TOP_TERMS`` most distinctive terms as of ``labelled_at``."""
    saved_at: int = 0
    """Size when ``terms`` and ``reservoir`` were last persisted (the store saves them as it grows)."""

    @property
    def centroid(self) -> Vector:
        norm = math.sqrt(float(self.total @ self.total))
        unit: Vector = (self.total / norm if norm else self.total).astype(np.float32)
        return unit

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
    """Cosine between the vector and its cluster's centroid after the batch."""


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
        max_vocabulary: int = 100_000,
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
        self.max_vocabulary = max_vocabulary
        self._rng = np.random.default_rng(seed)
        self.clusters: dict[int, Cluster] = {}
        self._next_id = 1
        # row r of _matrix is the centroid of cluster _ids[r]; every cluster has a current row
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
        self._ids = list(self.clusters)
        self._rows = {cid: row for row, cid in enumerate(self._ids)}
        self._matrix = np.zeros((max(16, 2 * len(self._ids)), self.dim), dtype=np.float32)
        self._set_centroids(list(self.clusters.values()))

    def _rebuild(self) -> None:
        """Drop the rows of removed clusters (their order is kept)."""
        ids = list(self.clusters)
        rows = [self._rows[cid] for cid in ids]
        matrix = np.zeros((max(16, 2 * len(ids)), self.dim), dtype=np.float32)
        matrix[: len(ids)] = self._matrix[rows]
        self._matrix, self._ids = matrix, ids
        self._rows = {cid: row for row, cid in enumerate(ids)}

    def _set_centroids(self, clusters: Sequence[Cluster]) -> None:
        if not clusters:
            return
        totals = np.stack([c.total for c in clusters])
        norms = np.linalg.norm(totals, axis=1, keepdims=True)
        self._matrix[[self._rows[c.id] for c in clusters]] = totals / np.where(norms > 0, norms, 1.0)

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
        if len(vectors) != len(texts):
            raise ValueError(f"{len(vectors)} vectors for {len(texts)} texts")
        with one_blas_thread():
            return self._add(np.ascontiguousarray(vectors, dtype=np.float32), texts)

    def _add(self, batch: Vector, texts: Sequence[str]) -> list[Assignment]:
        before = set(self.dirty)
        self.dirty.clear()
        members = self._assign(batch) if len(batch) else []
        self._grow(batch, texts, members)
        remap = self._merge_pass(set(members))
        remap.update(self._split_pass({_follow(remap, i) for i in members}))
        remap.update(self._cap())
        self._relabel()
        self.dirty |= before
        final = [_follow(remap, cid) for cid in members]
        kept = [i for i, cid in enumerate(final) if cid in self.clusters]
        rows = self._matrix[[self._rows[final[i]] for i in kept]]
        sims = np.einsum("ij,ij->i", batch[kept], rows).tolist()
        out: list[Assignment | None] = [None] * len(final)
        for i, sim in zip(kept, sims, strict=True):
            out[i] = Assignment(final[i], sim)
        for i, cid in enumerate(final):
            if cid not in self.clusters:  # its cluster was split: the closer half
                out[i] = self.nearest(batch[i])
        return [a for a in out if a is not None]

    def _assign(self, batch: Vector) -> list[int]:
        """Each vector's cluster id, in order; creates the new clusters (empty: ``_grow`` fills them)."""
        n, known = len(batch), len(self._ids)
        # sims[i, c]: cosine of vector i to column c's centroid as it is now; columns past ``known``
        # are the clusters this batch starts
        sims = np.empty((n, known + n), dtype=np.float64)
        if known:
            sims[:, :known] = batch @ self._active.T
        gram = (batch @ batch.T).astype(np.float64)  # symmetric: row i is column i, contiguous
        norms = np.diagonal(gram).tolist()
        dots: dict[int, npt.NDArray[np.float64]] = {}  # column → batch · sum
        squares: dict[int, float] = {}  # column → |sum|²
        columns: list[int] = []
        width, join = known, self.join
        for i in range(n):
            j = -1
            if width:
                row = sims[i, :width]
                j = int(row.argmax())
                if row.item(j) < join:
                    j = -1
            if j < 0:
                j, width = width, width + 1
                dot, square = gram[i].copy(), norms[i]
            else:
                found = dots.get(j)
                if found is None:
                    total = self.clusters[self._ids[j]].total
                    square = float(total @ total)
                    dot = sims[:, j] * math.sqrt(square)
                else:
                    dot, square = found, squares[j]
                square += 2.0 * dot.item(i) + norms[i]
                dot += gram[i]
            dots[j], squares[j] = dot, square
            sims[:, j] = dot / math.sqrt(square)
            columns.append(j)
        ids = list(self._ids)
        for _ in range(known, width):
            ids.append(self._create(np.zeros(self.dim), 0).id)
        return [ids[j] for j in columns]

    def _create(self, total: npt.NDArray[np.float64], size: int) -> Cluster:
        cluster = Cluster(id=self._next_id, total=total.astype(np.float64), size=size)
        self._next_id += 1
        self.clusters[cluster.id] = cluster
        if len(self._ids) == len(self._matrix):
            self._matrix = np.vstack([self._matrix, np.zeros_like(self._matrix)])
        self._rows[cluster.id] = len(self._ids)
        self._ids.append(cluster.id)
        norm = math.sqrt(float(cluster.total @ cluster.total))
        self._matrix[self._rows[cluster.id]] = cluster.total / norm if norm else 0.0
        self.dirty.add(cluster.id)
        return cluster

    def _grow(self, batch: Vector, texts: Sequence[str], members: Sequence[int]) -> None:
        """Add the batch's members to their clusters: sums, counts, terms, examples, reservoirs."""
        draws = self._rng.random(len(members)).tolist()
        groups: dict[int, list[int]] = {}
        for i, cid in enumerate(members):
            groups.setdefault(cid, []).append(i)
        # interned: the same term is then one string object in every cluster's counts
        term_sets = [set(map(sys.intern, terms_of(text))) for text in texts]
        self.term_totals.update(chain.from_iterable(term_sets))
        if len(self.term_totals) > 2 * self.max_vocabulary:
            self.term_totals = Counter(dict(self.term_totals.most_common(self.max_vocabulary)))
        wide = batch.astype(np.float64)
        touched = []
        for cid, idx in groups.items():
            cluster = self.clusters[cid]
            cluster.total += wide[idx[0]] if len(idx) == 1 else wide[idx].sum(axis=0)
            cluster.size += len(idx)
            cluster.terms.update(chain.from_iterable(term_sets[i] for i in idx))
            if len(cluster.terms) > 2 * self.max_terms:
                cluster.terms = Counter(dict(cluster.terms.most_common(self.max_terms)))
            for i in idx[: max(0, 3 - len(cluster.examples))]:
                cluster.examples.append(texts[i][:280])
            self._sample(cluster, batch, idx, draws)
            touched.append(cluster)
        self._set_centroids(touched)
        self.dirty.update(groups)

    def _sample(self, cluster: Cluster, batch: Vector, idx: list[int], draws: list[float]) -> None:
        """Offer the members ``idx`` to the cluster's reservoir (Algorithm R, in order); ``draws[i]``
        is member ``i``'s uniform random number."""
        free = max(0, self.reservoir_size - len(cluster.reservoir))
        if free:
            fill = batch[idx[:free]]
            cluster.reservoir = np.vstack([cluster.reservoir, fill]) if len(cluster.reservoir) else fill
        seen = cluster.seen + min(free, len(idx))
        for i in idx[free:]:
            # a later member replaces a random slot with probability size / (members offered so far)
            seen += 1
            slot = int(draws[i] * seen)
            if slot < self.reservoir_size:
                cluster.reservoir[slot] = batch[i]
        cluster.seen += len(idx)

    def _fold(self, keep: Cluster, gone: Sequence[Cluster]) -> None:
        """Fold the ``gone`` clusters into ``keep`` (sums, counts, terms, examples, reservoir). The
        caller refreshes ``keep``'s centroid row (``_set_centroids``), once for all its folds."""
        for other in gone:
            keep.total += other.total
            keep.size += other.size
            keep.seen += other.seen
            keep.terms.update(other.terms)
            if other.size * 4 > keep.size:
                keep.label = ""  # a real merge: the topic changed; a small absorption waits for growth
            del self.clusters[other.id]
            self.removed.add(other.id)
            self.dirty.discard(other.id)
        keep.examples = (keep.examples + [e for other in gone for e in other.examples])[:3]
        parts = [c for c in (keep, *gone) if len(c.reservoir)]
        pool = np.vstack([c.reservoir for c in parts]) if len(parts) > 1 else (parts or [keep])[0].reservoir
        if len(pool) > self.reservoir_size:
            # weighted sampling without replacement (Efraimidis–Spirakis): each vector stands for
            # size / len(reservoir) members of the cluster it came from
            weights = np.concatenate([np.full(len(c.reservoir), c.size / len(c.reservoir)) for c in parts])
            keys = self._rng.random(len(pool)) ** (1.0 / weights)
            pool = pool[np.sort(np.argpartition(-keys, self.reservoir_size)[: self.reservoir_size])]
        keep.reservoir = pool
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
            keeps: list[Cluster] = []
            for r in np.argsort(-sims[np.arange(len(rows)), best]):
                a, b = self._ids[rows[r]], self._ids[int(best[r])]
                if sims[r, best[r]] < self.merge_at:
                    break
                if a in merged or b in merged:
                    continue
                keep, gone = (self.clusters[a], self.clusters[b])
                if gone.size > keep.size:
                    keep, gone = gone, keep
                self._fold(keep, [gone])
                keeps.append(keep)
                remap[gone.id] = keep.id
                merged |= {a, b}
            if merged:
                self._set_centroids(keeps)
                self._rebuild()
            touched = {i for i in merged if i in self.clusters}
        return remap

    def _split_pass(self, touched: set[int]) -> dict[int, int]:
        remap: dict[int, int] = {}
        for cid in sorted(touched):
            cluster = self.clusters.get(cid)
            if cluster is None or cluster.size < self.split_min or cluster.cohesion >= self.split_below:
                continue
            if len(cluster.reservoir) < 8:
                continue
            halves = self._two_means(cluster.reservoir)
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
                child.reservoir = part
                child.seen = size
                child.terms = Counter({t: max(1, round(n * share)) for t, n in cluster.terms.items()})
                child.examples = cluster.examples[:3]
        if remap:
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
        if len(self._ids) != len(self.clusters):
            self._rebuild()
        sizes = np.array([self.clusters[i].size for i in self._ids])
        gone_rows = np.argsort(sizes, kind="stable")[:excess]
        sims = self._active[gone_rows] @ self._active.T
        sims[:, gone_rows] = -2.0  # never fold into another cluster that is going away
        into: dict[int, list[Cluster]] = {}
        for row, target in zip(gone_rows.tolist(), sims.argmax(axis=1).tolist(), strict=True):
            gone = self.clusters[self._ids[row]]
            into.setdefault(self._ids[target], []).append(gone)
            remap[gone.id] = self._ids[target]
        for keep, folded in into.items():
            self._fold(self.clusters[keep], folded)
        self._set_centroids([self.clusters[keep] for keep in into])
        self._rebuild()
        return remap

    # -- labels ----------------------------------------------------------------------------------
    def _relabel(self) -> None:
        self._mass = self.term_totals.total() / max(1, len(self.clusters))
        for cid in self.dirty:
            cluster = self.clusters.get(cid)
            # c-TF-IDF over hundreds of terms is the costly part: refresh as the cluster grows, not per member
            if cluster is not None and (not cluster.label or cluster.size >= cluster.labelled_at * 1.25 + 1):
                cluster.top = self.top_terms(cluster, TOP_TERMS)
                cluster.label = self._label(cluster.id, cluster.top)
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
        candidates = cluster.terms.most_common(50) if len(cluster.terms) > 50 else cluster.terms.items()
        scored = [((n / own) * math.log(1 + mass / max(n, totals[t])), t) for t, n in candidates]
        # ties broken alphabetically: labels must not depend on hash-seeded set order
        return [t for _, t in sorted(scored, key=lambda st: (-st[0], st[1]))[:k]]

    def label_of(self, cluster: Cluster) -> str:
        return self._label(cluster.id, self.top_terms(cluster, 2))

    @staticmethod
    def _label(cid: int, top: Sequence[str]) -> str:
        terms = [re.sub(r"[^a-z0-9]+", "_", t).strip("_") for t in top[:2]]
        terms = [t for t in terms if t]
        return "_".join(terms) if terms else f"topic_{cid}"
