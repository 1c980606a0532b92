"""Recommendation quality on MovieLens (latest-small): replay the ratings in time order through the
real pipeline (POST /v1/events → log → profiler), hold out each user's last interactions, and score
the real-time lists (HitRate@10, Recall@10) against a popularity baseline computed in the same run.

    .venv/bin/python scripts/eval_recommend.py [--holdout 5] [--users 0]

Movies are items (title + genres + tags). Writes bench/results/recommend_quality.json.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from rich.console import Console
from rich.table import Table

from shoal.app import CoreFeature, create_app
from shoal.recommend import RecommendFeature, RecommendSettings
from shoal.recommend.feature_state import state_of
from shoal.recommend.service import Recommender
from shoal.settings import Settings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens_latest_small"
RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results" / "recommend_quality.json"
K = 10


def load_items() -> list[dict[str, Any]]:
    tags: dict[str, list[str]] = defaultdict(list)
    with (DATA / "tags.csv").open() as fh:
        for row in csv.DictReader(fh):
            if row["tag"] not in tags[row["movieId"]]:
                tags[row["movieId"]].append(row["tag"])
    items = []
    with (DATA / "movies.csv").open() as fh:
        for row in csv.DictReader(fh):
            genres = [g for g in row["genres"].split("|") if g != "(no genres listed)"]
            text = f"{row['title']}. {', '.join(genres)}."
            if tags[row["movieId"]]:
                text += f" Tags: {', '.join(tags[row['movieId']][:20])}."
            items.append(
                {"id": f"m{row['movieId']}", "text": text, "payload": {"title": row["title"], "genres": genres}}
            )
    return items


def load_ratings() -> list[tuple[str, str, float, int]]:
    with (DATA / "ratings.csv").open() as fh:
        rows = [
            (f"u{r['userId']}", f"m{r['movieId']}", float(r["rating"]), int(r["timestamp"])) for r in csv.DictReader(fh)
        ]
    return sorted(rows, key=lambda r: (r[3], r[0]))


def score(lists: dict[str, list[str]], held: dict[str, set[str]]) -> dict[str, float]:
    hits = [len(set(lists.get(u, [])[:K]) & h) for u, h in held.items()]
    return {
        "hit_rate@10": sum(1 for n in hits if n) / len(hits),
        "recall@10": sum(n / min(len(h), K) for n, h in zip(hits, held.values(), strict=True)) / len(hits),
    }


async def main(holdout: int, max_users: int) -> None:
    console = Console()
    ratings = load_ratings()
    by_user: dict[str, list[tuple[str, str, float, int]]] = defaultdict(list)
    for r in ratings:
        by_user[r[0]].append(r)
    users = sorted(by_user, key=lambda u: int(u[1:]))[: max_users or None]
    held = {u: {r[1] for r in by_user[u][-holdout:]} for u in users}
    held_keys = {(u, r[1], r[3]) for u in users for r in by_user[u][-holdout:]}
    train = [r for r in ratings if (r[0], r[1], r[3]) not in held_keys and (not max_users or r[0] in held)]

    # the replay spans 22 years of event time: trending counts decay over years, not a day
    settings = RecommendSettings(
        _env_file=None, list_size=50, popular_refresh_s=5.0, popular_half_life_s=5 * 365 * 86400.0
    )
    with tempfile.TemporaryDirectory() as tmp:
        core = Settings(_env_file=None, data_dir=Path(tmp), log_json=False, log_level="WARNING")
        app = create_app(core, [CoreFeature(), RecommendFeature(settings)])
        async with LifespanManager(app, startup_timeout=120, shutdown_timeout=120) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://eval", timeout=600) as client:
                services = app.state.services
                items = load_items()
                started = time.perf_counter()
                for start in range(0, len(items), 1000):
                    resp = await client.post(
                        "/v1/collections/items/records?wait=true", json={"records": items[start : start + 1000]}
                    )
                    assert resp.status_code in (200, 202), resp.text
                embed_s = time.perf_counter() - started
                started = time.perf_counter()
                for start in range(0, len(train), 1000):
                    body = [
                        {"event_id": f"{u}/{m}/{t}", "user_id": u, "item_id": m, "type": "rating", "value": v, "ts": t}
                        for u, m, v, t in train[start : start + 1000]
                    ]
                    resp = await client.post("/v1/events", json=body)
                    assert resp.status_code == 202, resp.text
                # a script waiting for the profiler to drain the replay, not test synchronisation
                while await services.log.lag("interactions", "profiler"):  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
                replay_s = time.perf_counter() - started

                lists: dict[str, list[str]] = {}
                for u in users:
                    resp = await client.get(f"/v1/users/{u}/recommendations", params={"limit": K})
                    lists[u] = [i["item_id"] for i in resp.json()["items"]]

                # popularity baseline: most-rated training items the user has not rated
                counts = Counter(m for _, m, _, _ in train)
                seen = defaultdict(set)
                for u, m, _, _ in train:
                    seen[u].add(m)
                ranked = [m for m, _ in counts.most_common()]
                popular = {u: [m for m in ranked if m not in seen[u]][:K] for u in users}

                # the same profiles, ranked with a trending prior blended in (a setting)
                state = state_of(services)
                blended: dict[str, dict[str, list[str]]] = {}
                for blend in (0.0, 1.0):
                    recommender = Recommender(
                        services, settings.model_copy(update={"popularity_blend": blend}), state.store
                    )
                    await recommender.popular(refresh=True)
                    out = {}
                    for u in users:
                        profile = await state.store.get(u)
                        assert profile is not None
                        out[u] = [i["item_id"] for i in (await recommender.compute(profile))["items"]]
                    blended[f"taste + trending × {blend}"] = out

    rows = {
        "realtime (taste vector)": score(lists, held),
        **{k: score(v, held) for k, v in blended.items()},
        "popularity baseline": score(popular, held),
    }
    table = Table(title=f"MovieLens small: {len(users)} users, last {holdout} held out, {len(train):,} events replayed")
    table.add_column("lists")
    table.add_column("HitRate@10", justify="right")
    table.add_column("Recall@10", justify="right")
    table.add_column("vs popularity (hit rate)", justify="right")
    base = rows["popularity baseline"]["hit_rate@10"]
    for name, figures in rows.items():
        hit, recall = figures["hit_rate@10"], figures["recall@10"]
        table.add_row(name, f"{hit:.3f}", f"{recall:.3f}", f"{hit / base:.2f}x")
    console.print(table)
    console.print(f"catalog embed {embed_s:.1f}s · replay {len(train) / replay_s:,.0f} events/s")
    result = {
        "dataset": "movielens_latest_small",
        "users": len(users),
        "holdout": holdout,
        "events_replayed": len(train),
        "replay_events_per_s": len(train) / replay_s,
        "k": K,
        "lists": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--holdout", type=int, default=5)
    parser.add_argument("--users", type=int, default=0, help="evaluate the first N users only (0: all)")
    args = parser.parse_args()
    asyncio.run(main(args.holdout, args.users))
