"""Recommendation lists: computed by the profiler after each update, stored in the general cache
(``services.cache``: in-process by default, Redis when configured), served by the API as a cache read.

A cached list holds ``list_size`` items; a request takes its first ``limit`` after removing
``exclude``. A ``filter`` keeps the cached order among the items that match (one payload query on
the candidates); when too few remain, a user with a taste gets a live filtered vector query.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import structlog

from shoal.errors import CollectionNotFound
from shoal.filters import Filter, HasId, combine
from shoal.recommend.matrix import ItemMatrix, title_of
from shoal.recommend.profiles import Profile, Vector, unit
from shoal.recommend.settings import RecommendSettings
from shoal.recommend.store import ProfileStore
from shoal.services import Services
from shoal.vectors import Hit, SearchRequest

logger = structlog.get_logger(__name__)

POPULAR_KEY = "recommend:popular"
RecList = dict[str, Any]
"""``{"user_id", "items": [{"item_id", "title", "score"}], "updated_at", "source"}``"""


def list_key(user_id: str) -> str:
    return f"recommend:list:{user_id}"


def channel(user_id: str) -> str:
    """Bus channel on which a user's new lists are published."""
    return f"recommendations:{user_id}"


TITLE_KEYS = ("title", "_text")
"""The payload keys ``title_of`` reads: all a list's hit needs (``payload_keys`` of its searches)."""


def _items(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    return [{"item_id": h.id, "title": title_of(h.payload), "score": round(float(h.score), 6)} for h in hits]


def boosts(popular: RecList, blend: float) -> dict[str, float]:
    """Each trending item's boost: ``blend × its score / the top score``."""
    scores = {str(i["item_id"]): float(i["score"]) for i in popular["items"]}
    top = max(scores.values(), default=0.0) or 1.0
    return {i: blend * s / top for i, s in scores.items()}


@dataclass(frozen=True, slots=True)
class _Trending:
    """The trending items as blend candidates: their unit vectors (so a taste scores them all with
    one matrix product, not a vector query per user) and their boost, ``blend × score / top score``."""

    ids: list[str]
    titles: list[str]
    matrix: npt.NDArray[np.float64]
    """One unit row per item of ``ids``."""
    boosts: npt.NDArray[np.float64]
    """The boost of each item of ``ids``."""
    boost: dict[str, float]
    """The boost of every trending item, by id."""

    @classmethod
    def of(cls, popular: RecList, vectors: Mapping[str, Vector], blend: float) -> _Trending:
        boost = boosts(popular, blend)
        rows = [i for i in popular["items"] if i["item_id"] in vectors]
        ids = [str(i["item_id"]) for i in rows]
        dim = len(next(iter(vectors.values()))) if vectors else 0
        matrix = np.stack([vectors[i] for i in ids]) if ids else np.zeros((0, dim))
        values = np.array([boost[i] for i in ids], dtype=np.float64)
        return cls(ids, [str(i["title"]) for i in rows], matrix, values, boost)

    def blend(self, query: Vector, profile: Profile, hits: Sequence[Hit], limit: int) -> list[dict[str, Any]]:
        """The best ``limit`` of the taste candidates (``hits``, none seen) and the trending items
        the user has not seen, scored by cosine similarity to the taste plus their boost."""
        ids = [h.id for h in hits]
        titles = [title_of(h.payload) for h in hits]
        scores = [h.score + self.boost.get(h.id, 0.0) for h in hits]
        if self.ids:
            known = set(ids)
            totals = self.matrix @ query + self.boosts
            taken = 0
            # best first (ties in trending order); more than ``limit`` of them can never be used
            for k in np.argsort(-totals, kind="stable").tolist():
                item_id = self.ids[k]
                if item_id not in profile.seen and item_id not in known:
                    ids.append(item_id)
                    titles.append(self.titles[k])
                    scores.append(float(totals[k]))
                    taken += 1
                    if taken == limit:
                        break
        best = heapq.nlargest(limit, range(len(ids)), key=scores.__getitem__)
        return [{"item_id": ids[k], "title": titles[k], "score": round(scores[k], 6)} for k in best]


class Recommender:
    """Builds, stores and reads lists. Shared by the profiler (writes) and the routes (reads)."""

    def __init__(
        self, services: Services, settings: RecommendSettings, store: ProfileStore, matrix: ItemMatrix | None = None
    ) -> None:
        self.services = services
        self.settings = settings
        self.store = store
        self.matrix = matrix
        """The catalog in memory (exact lists, no vector query a user); ``None``: the vector store."""
        self._popular_at = 0.0
        # keyed by (vector collection, the trending list's updated_at): the unit vectors fetched by
        # the last refresh, and the blend candidates built last
        self._refreshed: tuple[tuple[str, str], dict[str, Vector]] | None = None
        self._trending: tuple[tuple[str, str], _Trending] | None = None
        self._popular: tuple[bytes, RecList] | None = None

    async def vector_name(self) -> str | None:
        try:
            return (await self.services.collections.get(self.settings.collection)).vector_name
        except CollectionNotFound:
            return None

    # -- building -------------------------------------------------------------------------------
    async def compute(self, profile: Profile) -> RecList:
        """The user's top items they have not seen: nearest to the taste, else trending."""
        return (await self.compute_many([profile]))[0]

    async def held(self) -> ItemMatrix | None:
        """The catalog in memory (loaded now if needed), or ``None`` when the vector store serves it."""
        return self.matrix if self.matrix is not None and await self.matrix.ready() else None

    async def compute_many(self, profiles: Sequence[Profile]) -> list[RecList]:
        """The lists of several users (a profiler batch). What they share — the catalog's vector
        collection and the trending list — is looked up once. The nearest items of every user with a
        taste come from one matrix product over the catalog when it is held in memory
        (``ItemMatrix``: exact), else from one batched vector query (``search_many``)."""
        name = await self.vector_name()
        popular = await self.popular()
        n = self.settings.list_size
        queries = {p.user_id: q for p in profiles if (q := p.direction()) is not None} if name is not None else {}
        users = [p for p in profiles if p.user_id in queries]
        found: dict[str, list[dict[str, Any]]] = {}
        if users:
            assert name is not None
            exact = await self._exact(users, queries, popular)
            found = exact if exact is not None else await self._searched(name, users, queries, popular)
        lists = []
        for profile in profiles:
            items = found.get(profile.user_id)
            if items is None:
                items = [i for i in popular["items"] if i["item_id"] not in profile.seen][:n]
                lists.append(self._wrap(profile.user_id, items, "popular"))
            else:
                lists.append(self._wrap(profile.user_id, items[:n], "realtime"))
        return lists

    async def _exact(
        self, users: Sequence[Profile], queries: Mapping[str, Vector], popular: RecList
    ) -> dict[str, list[dict[str, Any]]] | None:
        """Every item scored against each taste (cosine + trending boost), best unseen first."""
        matrix = await self.held()
        if matrix is None:
            return None
        blend = self.settings.popularity_blend
        best = await matrix.best(
            np.stack([queries[p.user_id] for p in users]),
            [p.seen for p in users],
            boosts(popular, blend) if blend > 0 else {},
            self.settings.list_size,
        )
        return None if best is None else {p.user_id: items for p, items in zip(users, best, strict=True)}

    async def _searched(
        self, name: str, users: Sequence[Profile], queries: Mapping[str, Vector], popular: RecList
    ) -> dict[str, list[dict[str, Any]]]:
        """The taste's nearest unseen items from the vector store, blended with the trending items."""
        n = self.settings.list_size
        trending = await self._candidates(name, popular) if self.settings.popularity_blend > 0 else None
        requests = [
            SearchRequest(
                queries[p.user_id].tolist(),
                limit=n,
                exclude_ids=list(p.seen),
                # excluding many ids needs a wider beam, or recall drops (DESIGN.md)
                ef=min(self.settings.max_ef, max(128, n + len(p.seen))),
                payload_keys=TITLE_KEYS,
            )
            for p in users
        ]
        results = await self.services.vectors.search_many(name, requests)
        found = {}
        for profile, hits in zip(users, results, strict=True):
            unseen = [h for h in hits if h.id not in profile.seen]
            query = queries[profile.user_id]
            found[profile.user_id] = trending.blend(query, profile, unseen, n) if trending else _items(unseen)
        return found

    async def _candidates(self, name: str, popular: RecList) -> _Trending:
        """The trending list as blend candidates, built once per trending list (a refresh at most
        every ``POPULAR_REFRESH_S``). The vectors are those its refresh fetched, or fetched now when
        another process refreshed it, so they are never older than the list."""
        key = (name, str(popular["updated_at"]))
        if self._trending is not None and self._trending[0] == key:
            return self._trending[1]
        vectors = dict(self._refreshed[1]) if self._refreshed is not None and self._refreshed[0] == key else {}
        missing = [str(i["item_id"]) for i in popular["items"] if i["item_id"] not in vectors]
        if missing:
            for point in await self.services.vectors.retrieve(name, missing, with_vectors=True):
                if point.vector is not None:
                    vectors[point.id] = unit(point.vector)
        trending = _Trending.of(popular, vectors, self.settings.popularity_blend)
        self._trending = (key, trending)
        return trending

    @staticmethod
    def _wrap(user_id: str, items: list[dict[str, Any]], source: str) -> RecList:
        return {"user_id": user_id, "items": items, "updated_at": datetime.now(UTC).isoformat(), "source": source}

    async def store_list(self, rec: RecList) -> None:
        await self.store_lists([rec])

    async def store_lists(self, recs: Sequence[RecList]) -> None:
        """Cache the lists in one write (one round trip with Redis)."""
        items = {list_key(r["user_id"]): orjson.dumps(r) for r in recs}
        await self.services.cache.set_many(items, ttl=self.settings.list_ttl_s)

    async def popular(self, *, refresh: bool = False) -> RecList:
        """The trending list (``user_id`` empty), from the cache unless ``refresh`` or missing."""
        if not refresh:
            raw = await self.services.cache.get(POPULAR_KEY)
            if raw is not None:
                # decoded once per refresh, not once per batch (callers only read it)
                if self._popular is None or self._popular[0] != raw:
                    self._popular = (raw, orjson.loads(raw))
                return self._popular[1]
        trends = await self.store.trending(self.settings.list_size * 4)
        now = time.time()
        titles: dict[str, str] = {}
        vectors: dict[str, Vector] = {}
        name = await self.vector_name()
        if name is not None and trends:
            ids = [t.item_id for t in trends]
            if (matrix := await self.held()) is not None:
                titles = matrix.titles(ids)  # the matrix scores every item: no vectors needed
            else:
                # with their vectors: the blend scores the trending items against each taste
                points = await self.services.vectors.retrieve(name, ids, with_vectors=True)
                titles = {p.id: title_of(p.payload) for p in points}
                vectors = {p.id: unit(p.vector) for p in points if p.vector is not None}
        hl = self.settings.popular_half_life_s
        items = [
            {"item_id": t.item_id, "title": titles[t.item_id], "score": round(t.score_at(now, hl), 6)}
            for t in trends
            if t.item_id in titles
        ]
        rec = self._wrap("", items, "popular")
        if name is not None:
            self._refreshed = ((name, str(rec["updated_at"])), vectors)
        await self.services.cache.set(POPULAR_KEY, orjson.dumps(rec), ttl=self.settings.list_ttl_s)
        self._popular_at = time.monotonic()
        return rec

    async def refresh_popular_if_due(self) -> None:
        if time.monotonic() - self._popular_at >= self.settings.popular_refresh_s:
            await self.popular(refresh=True)

    # -- serving --------------------------------------------------------------------------------
    async def cached(self, user_id: str) -> RecList:
        """The user's list: a cache read; on a miss it is rebuilt from the stored profile (or trending)."""
        raw = await self.services.cache.get(list_key(user_id))
        if raw is not None:
            rec: RecList = orjson.loads(raw)
            return rec
        profile = await self.store.get(user_id)
        if profile is None:
            popular = await self.popular()
            return {**popular, "user_id": user_id}
        rec = await self.compute(profile)
        await self.store_list(rec)
        return rec

    async def get(
        self, user_id: str, *, limit: int, exclude: Sequence[str] = (), filter: Filter | None = None
    ) -> RecList:
        rec = await self.cached(user_id)
        dropped = set(exclude)
        items = [i for i in rec["items"] if i["item_id"] not in dropped]
        if filter is not None:
            items = await self._matching(items, filter)
            if len(items) < limit and rec["source"] == "realtime":
                items = await self._live(user_id, limit, dropped, filter) or items
        return {**rec, "items": items[:limit]}

    async def _matching(self, items: list[dict[str, Any]], filter: Filter) -> list[dict[str, Any]]:
        name = await self.vector_name()
        if name is None or not items:
            return []
        restricted = combine(filter, Filter(must=[HasId(has_id=[i["item_id"] for i in items])]))
        points = await self.services.vectors.scroll(name, filter=restricted, limit=len(items))
        keep = {p.id for p in points}
        return [i for i in items if i["item_id"] in keep]

    async def _live(self, user_id: str, limit: int, dropped: set[str], filter: Filter) -> list[dict[str, Any]]:
        profile = await self.store.get(user_id)
        name = await self.vector_name()
        query = profile.query() if profile is not None else None
        if profile is None or query is None or name is None:
            return []
        excluded = [*profile.seen, *dropped]
        hits = await self.services.vectors.search(
            name,
            query,
            limit=limit,
            filter=filter,
            exclude_ids=excluded,
            ef=min(self.settings.max_ef, max(128, limit + len(excluded))),
            payload_keys=TITLE_KEYS,
        )
        return [i for i in _items(hits) if i["item_id"] not in profile.seen and i["item_id"] not in dropped]

    async def similar(self, item_id: str, limit: int) -> list[dict[str, Any]]:
        from shoal.search import search

        results = await search(self.services, self.settings.collection, record_id=item_id, limit=limit)
        return [
            {"item_id": r.id, "title": str(r.payload.get("title") or r.text or "")[:300], "score": round(r.score, 6)}
            for r in results
        ]
