"""Recommendation lists: computed by the profiler after each update, stored in the general cache
(``services.cache``: in-process by default, Redis when configured), served by the API as a cache read.

A cached list holds ``list_size`` items; a request takes its first ``limit`` after removing
``exclude``. A ``filter`` keeps the cached order among the items that match (one payload query on
the candidates); when too few remain, a user with a taste gets a live filtered vector query.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from shoal.errors import CollectionNotFound
from shoal.filters import Filter, HasId, combine
from shoal.recommend.profiles import Profile
from shoal.recommend.settings import RecommendSettings
from shoal.recommend.store import ProfileStore
from shoal.services import Services
from shoal.vectors import Hit

logger = structlog.get_logger(__name__)

POPULAR_KEY = "recommend:popular"
RecList = dict[str, Any]
"""``{"user_id", "items": [{"item_id", "title", "score"}], "updated_at", "source"}``"""


def list_key(user_id: str) -> str:
    return f"recommend:list:{user_id}"


def channel(user_id: str) -> str:
    """Bus channel on which a user's new lists are published."""
    return f"recommendations:{user_id}"


def title_of(payload: dict[str, Any]) -> str:
    title = payload.get("title") or payload.get("_text") or ""
    return str(title)[:300]


def _items(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    return [{"item_id": h.id, "title": title_of(h.payload), "score": round(float(h.score), 6)} for h in hits]


class Recommender:
    """Builds, stores and reads lists. Shared by the profiler (writes) and the routes (reads)."""

    def __init__(self, services: Services, settings: RecommendSettings, store: ProfileStore) -> None:
        self.services = services
        self.settings = settings
        self.store = store
        self._popular_at = 0.0

    async def vector_name(self) -> str | None:
        try:
            return (await self.services.collections.get(self.settings.collection)).vector_name
        except CollectionNotFound:
            return None

    # -- building -------------------------------------------------------------------------------
    async def compute(self, profile: Profile) -> RecList:
        """The user's top items they have not seen: nearest to the taste, else trending."""
        query = profile.query()
        name = await self.vector_name()
        n = self.settings.list_size
        if query is None or name is None:
            popular = await self.popular()
            items = [i for i in popular["items"] if i["item_id"] not in profile.seen][:n]
            return self._wrap(profile.user_id, items, "popular")
        seen = list(profile.seen)
        hits = await self.services.vectors.search(
            name,
            query,
            limit=n,
            exclude_ids=seen,
            # excluding many ids needs a wider beam, or recall drops (DESIGN.md)
            ef=min(self.settings.max_ef, max(128, n + len(seen))),
        )
        items = [i for i in _items(hits) if i["item_id"] not in profile.seen]
        if self.settings.popularity_blend > 0:
            items = await self._blend(name, query, profile, items)
        return self._wrap(profile.user_id, items[:n], "realtime")

    async def _blend(
        self, name: str, query: list[float], profile: Profile, items: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Taste candidates plus the trending items the user has not seen, scored by similarity to
        the taste plus ``popularity_blend`` × the item's trending score relative to the top one."""
        trend = {i["item_id"]: float(i["score"]) for i in (await self.popular())["items"]}
        unseen = [i for i in trend if i not in profile.seen]
        if unseen:
            hits = await self.services.vectors.search(
                name, query, limit=len(unseen), filter=Filter(must=[HasId(has_id=unseen)]), ef=max(128, len(unseen))
            )
            known = {i["item_id"] for i in items}
            items = items + [i for i in _items(hits) if i["item_id"] not in known]
        top = max(trend.values(), default=0.0) or 1.0
        blend = self.settings.popularity_blend
        for item in items:
            item["score"] = round(item["score"] + blend * trend.get(item["item_id"], 0.0) / top, 6)
        return sorted(items, key=lambda i: -float(i["score"]))

    @staticmethod
    def _wrap(user_id: str, items: list[dict[str, Any]], source: str) -> RecList:
        return {"user_id": user_id, "items": items, "updated_at": datetime.now(UTC).isoformat(), "source": source}

    async def store_list(self, rec: RecList) -> None:
        await self.services.cache.set(list_key(rec["user_id"]), orjson.dumps(rec), ttl=self.settings.list_ttl_s)

    async def popular(self, *, refresh: bool = False) -> RecList:
        """The trending list (``user_id`` empty), from the cache unless ``refresh`` or missing."""
        if not refresh:
            raw = await self.services.cache.get(POPULAR_KEY)
            if raw is not None:
                cached: RecList = orjson.loads(raw)
                return cached
        trends = await self.store.trending(self.settings.list_size * 4)
        now = time.time()
        titles: dict[str, str] = {}
        name = await self.vector_name()
        if name is not None and trends:
            points = await self.services.vectors.retrieve(name, [t.item_id for t in trends])
            titles = {p.id: title_of(p.payload) for p in points}
        hl = self.settings.popular_half_life_s
        items = [
            {"item_id": t.item_id, "title": titles[t.item_id], "score": round(t.score_at(now, hl), 6)}
            for t in trends
            if t.item_id in titles
        ]
        rec = self._wrap("", items, "popular")
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
        )
        return [i for i in _items(hits) if i["item_id"] not in profile.seen and i["item_id"] not in dropped]

    async def similar(self, item_id: str, limit: int) -> list[dict[str, Any]]:
        from shoal.search import search

        results = await search(self.services, self.settings.collection, record_id=item_id, limit=limit)
        return [
            {"item_id": r.id, "title": str(r.payload.get("title") or r.text or "")[:300], "score": round(r.score, 6)}
            for r in results
        ]
