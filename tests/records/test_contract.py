"""The record store contract, run over every implementation (see the ``store`` fixture)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shoal.errors import BackendError, CollectionNotFound
from shoal.records import Collection, Record, RecordStore, Status

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def collection(name: str = "tweets", **changes: object) -> Collection:
    base = Collection(name=name, dim=384, model="minilm", created_at=T0, vector_name=f"{name}__v1")
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def record(i: int, collection: str = "tweets", **changes: object) -> Record:
    base = Record(
        collection=collection,
        id=f"r{i:04d}",
        text=f"text {i}",
        payload={"user": f"u{i % 3}", "n": i},
        ts=T0 + timedelta(minutes=i),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def embedded(r: Record, model: str = "minilm") -> Record:
    return dataclasses.replace(r, status=Status.EMBEDDED, embedding_model=model, embedding_dim=384, embedded_at=T0)


def without_updated_at(records: list[Record]) -> list[Record]:
    return [dataclasses.replace(r, updated_at=None) for r in records]


@pytest.fixture
async def tweets(store: RecordStore) -> RecordStore:
    await store.create_collection(collection())
    return store


# -- collections ---------------------------------------------------------------------------------


async def test_collection_crud(store: RecordStore) -> None:
    first = collection(config={"chunking": {"size": 200}, "label": "ünïcode ✓"})
    assert await store.create_collection(first)
    assert not await store.create_collection(collection(dim=768))
    assert await store.get_collection("tweets") == first  # the duplicate changed nothing
    assert await store.get_collection("nope") is None

    await store.create_collection(collection("alpha"))
    assert [c.name for c in await store.list_collections()] == ["alpha", "tweets"]

    switched = dataclasses.replace(first, shadow_vector_name="tweets__v2", shadow_model="other", config={"k": 1})
    await store.update_collection(switched)
    assert await store.get_collection("tweets") == switched

    assert await store.delete_collection("alpha")
    assert not await store.delete_collection("alpha")
    assert [c.name for c in await store.list_collections()] == ["tweets"]


async def test_update_missing_collection_raises(store: RecordStore) -> None:
    with pytest.raises(CollectionNotFound):
        await store.update_collection(collection("ghost"))


async def test_delete_collection_cascades_records(tweets: RecordStore) -> None:
    await tweets.upsert([record(i) for i in range(5)])
    assert await tweets.delete_collection("tweets")
    await tweets.create_collection(collection())
    assert await tweets.get("tweets", [f"r{i:04d}" for i in range(5)]) == []
    assert (await tweets.stats("tweets")).total == 0


# -- records -------------------------------------------------------------------------------------


async def test_upsert_is_idempotent(tweets: RecordStore) -> None:
    batch = [record(i) for i in range(300)]
    ids = [r.id for r in batch]
    await tweets.upsert(batch)
    once = await tweets.get("tweets", ids)
    await tweets.upsert(batch)
    twice = await tweets.get("tweets", ids)
    assert without_updated_at(twice) == without_updated_at(once) == without_updated_at(batch)
    assert (await tweets.stats("tweets")).total == 300


async def test_upsert_replaces_status_and_model(tweets: RecordStore) -> None:
    await tweets.upsert([record(1), record(2)])
    failed = dataclasses.replace(record(2), status=Status.FAILED, error="boom")
    await tweets.upsert([embedded(record(1)), failed])
    one, two = await tweets.get("tweets", ["r0001", "r0002"])
    assert (one.status, one.embedding_model, one.embedding_dim, one.embedded_at) == (
        Status.EMBEDDED,
        "minilm",
        384,
        T0,
    )
    assert (two.status, two.error) == (Status.FAILED, "boom")


async def test_upsert_sets_updated_at_to_write_time(tweets: RecordStore) -> None:
    before = datetime.now(UTC)
    await tweets.upsert([record(1, updated_at=T0)])
    (stored,) = await tweets.get("tweets", ["r0001"])
    assert stored.updated_at is not None
    assert stored.updated_at >= before - timedelta(seconds=1)


async def test_last_duplicate_in_a_batch_wins(tweets: RecordStore) -> None:
    await tweets.upsert([record(1, text="first"), record(1, text="second")])
    (stored,) = await tweets.get("tweets", ["r0001"])
    assert stored.text == "second"


async def test_upsert_into_missing_collection_raises(tweets: RecordStore) -> None:
    with pytest.raises(CollectionNotFound):
        await tweets.upsert([record(1), record(2, collection="ghost")])
    assert await tweets.get("tweets", ["r0001"]) == []  # the whole batch was rolled back


async def test_upsert_nothing_is_a_no_op(tweets: RecordStore) -> None:
    await tweets.upsert([])
    assert (await tweets.stats("tweets")).total == 0


async def test_get_keeps_order_and_skips_missing(tweets: RecordStore) -> None:
    await tweets.upsert([record(i) for i in range(2500)])
    wanted = ["r2400", "missing", "r0003", "r1500"]
    assert [r.id for r in await tweets.get("tweets", wanted)] == ["r2400", "r0003", "r1500"]
    everything = await tweets.get("tweets", [f"r{i:04d}" for i in range(2500)])
    assert len(everything) == 2500  # more ids than one IN (...) chunk
    assert await tweets.get("other", ["r0001"]) == []


async def test_delete_counts_existing(tweets: RecordStore) -> None:
    await tweets.upsert([record(i) for i in range(5)])
    assert await tweets.delete("tweets", ["r0000", "r0001", "nope"]) == 2
    assert await tweets.delete("tweets", ["r0000"]) == 0
    assert [r.id for r in await tweets.get("tweets", [f"r{i:04d}" for i in range(5)])] == [
        "r0002",
        "r0003",
        "r0004",
    ]


async def test_payload_json_round_trip(tweets: RecordStore) -> None:
    payload = {
        "user": "José",
        "emoji": "🐟🐠",
        "cjk": "魚の群れ",
        "nested": {"list": [1, 2.5, None, True, "x"], "empty": {}},
        "quote": 'a "b" \\ c',
    }
    await tweets.upsert([record(1, payload=payload, text="Ünïcödé 🐟"), record(2, payload={})])
    one, two = await tweets.get("tweets", ["r0001", "r0002"])
    assert one.payload == payload
    assert one.text == "Ünïcödé 🐟"
    assert two.payload == {}


async def test_datetimes_are_utc_aware(tweets: RecordStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2025, 3, 1, 14, 30, tzinfo=plus_two)
    naive = datetime(2025, 3, 1, 9, 0)  # taken as UTC
    await tweets.upsert([record(1, ts=local), embedded(record(2, ts=naive))])
    one, two = await tweets.get("tweets", ["r0001", "r0002"])
    assert one.ts == local
    assert one.ts.utcoffset() == timedelta(0)
    assert one.ts.hour == 12
    assert two.ts == naive.replace(tzinfo=UTC)
    for value in (one.ts, one.updated_at, two.ts, two.embedded_at, two.updated_at):
        assert value is not None
        assert value.tzinfo is not None
        assert value.utcoffset() == timedelta(0)
    (stored,) = await tweets.list_collections()
    assert stored.created_at == T0
    assert stored.created_at.utcoffset() == timedelta(0)


# -- stats ---------------------------------------------------------------------------------------


async def test_stats(tweets: RecordStore) -> None:
    await tweets.upsert([record(i) for i in range(10)])
    await tweets.upsert([embedded(record(i)) for i in range(4)] + [embedded(record(4), "other")])
    await tweets.upsert([dataclasses.replace(record(5), status=Status.FAILED, error="older")])
    await tweets.upsert([dataclasses.replace(record(6), status=Status.FAILED, error="newest")])

    stats = await tweets.stats("tweets")
    assert (stats.total, stats.embedded, stats.pending, stats.failed) == (10, 5, 3, 2)
    assert stats.models == {"minilm": 4, "other": 1}
    assert stats.last_error == "newest"
    pending = await tweets.get("tweets", ["r0007", "r0008", "r0009"])
    assert stats.oldest_pending == min(r.updated_at for r in pending if r.updated_at is not None)
    assert stats.oldest_pending is not None
    assert stats.oldest_pending.utcoffset() == timedelta(0)


async def test_stats_of_empty_or_unknown_collection(tweets: RecordStore) -> None:
    for name in ("tweets", "ghost"):
        stats = await tweets.stats(name)
        assert (stats.total, stats.embedded, stats.pending, stats.failed) == (0, 0, 0, 0)
        assert (stats.last_error, stats.oldest_pending, stats.models) == (None, None, {})


async def test_versions_are_the_stored_updated_at(tweets: RecordStore) -> None:
    await tweets.upsert([record(i) for i in range(1200)])
    wanted = [f"r{i:04d}" for i in range(1200)] + ["missing"]
    versions = await tweets.versions("tweets", wanted)  # more ids than one IN (...) chunk
    assert versions == {r.id: r.updated_at for r in await tweets.get("tweets", wanted)}
    assert len(versions) == 1200
    assert await tweets.versions("other", ["r0001"]) == {}


async def test_mark_embedded_stamps_only_unchanged_records(tweets: RecordStore) -> None:
    await tweets.upsert([dataclasses.replace(record(i), status=Status.FAILED, error="x") for i in range(1100)])
    read = {r.id: r for r in await tweets.get("tweets", [f"r{i:04d}" for i in range(1100)])}
    await tweets.upsert([record(7, text="a newer version")])  # written after the read
    before = datetime.now(UTC) - timedelta(seconds=1)
    versions = {rid: r.updated_at for rid, r in read.items() if r.updated_at is not None}
    versions["missing"] = T0
    stamped = await tweets.mark_embedded("tweets", versions, model="minilm", dim=384, at=T0)
    assert sorted(stamped) == sorted(set(read) - {"r0007"})
    one, newer = await tweets.get("tweets", ["r0001", "r0007"])
    assert (one.status, one.embedding_model, one.embedding_dim, one.embedded_at, one.error) == (
        Status.EMBEDDED,
        "minilm",
        384,
        T0,
        None,
    )
    assert (one.text, one.payload, one.ts) == (read["r0001"].text, read["r0001"].payload, read["r0001"].ts)
    assert one.updated_at is not None and one.updated_at >= before
    assert (newer.status, newer.text) == (Status.PENDING, "a newer version")
    again = await tweets.mark_embedded("tweets", versions, model="minilm", dim=384, at=T0)
    assert again == []  # stamping moved every updated_at on
    assert await tweets.mark_embedded("tweets", {}, model="minilm", dim=384, at=T0) == []


# -- find ----------------------------------------------------------------------------------------


@pytest.fixture
async def mixed(tweets: RecordStore) -> RecordStore:
    """r0000-r0019: 0-4 pending, 5-9 failed, 10-14 embedded by minilm, 15-19 embedded by old."""
    await tweets.upsert(
        [record(i) for i in range(5)]
        + [dataclasses.replace(record(i), status=Status.FAILED, error="x") for i in range(5, 10)]
        + [embedded(record(i)) for i in range(10, 15)]
        + [embedded(record(i), "old") for i in range(15, 20)]
    )
    await tweets.create_collection(collection("other"))
    await tweets.upsert([record(i, collection="other") for i in range(3)])
    return tweets


def ids(records: list[Record]) -> list[int]:
    return [int(r.id[1:]) for r in records]


async def test_find_filters(mixed: RecordStore) -> None:
    assert ids(await mixed.find("tweets")) == list(range(20))
    assert ids(await mixed.find("tweets", status=[Status.PENDING])) == list(range(5))
    assert ids(await mixed.find("tweets", status=[Status.PENDING, Status.FAILED])) == list(range(10))
    assert ids(await mixed.find("tweets", not_model="minilm")) == list(range(15, 20))
    # status OR stale model: everything a backfill to "minilm" has to (re-)embed
    backfill = await mixed.find("tweets", status=[Status.PENDING, Status.FAILED], not_model="minilm")
    assert ids(backfill) == list(range(10)) + list(range(15, 20))
    assert ids(await mixed.find("tweets", status=[])) == []
    assert ids(await mixed.find("tweets", since=T0 + timedelta(minutes=17))) == [17, 18, 19]
    assert ids(await mixed.find("tweets", status=[Status.PENDING], since=T0 + timedelta(minutes=3))) == [3, 4]
    assert ids(await mixed.find("other")) == [0, 1, 2]
    assert await mixed.find("ghost") == []


async def test_find_since_compares_instants_across_offsets(mixed: RecordStore) -> None:
    since = (T0 + timedelta(minutes=18)).astimezone(timezone(timedelta(hours=-5)))
    assert ids(await mixed.find("tweets", since=since)) == [18, 19]


async def test_find_keyset_pagination(mixed: RecordStore) -> None:
    pages: list[list[int]] = []
    after: str | None = None
    while page := await mixed.find("tweets", status=[Status.PENDING, Status.FAILED], after_id=after, limit=3):
        pages.append(ids(page))
        after = page[-1].id
    assert pages == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert ids(await mixed.find("tweets", after_id="r0017")) == [18, 19]


async def test_find_orders_ids_bytewise(tweets: RecordStore) -> None:
    raw = ["b", "B", "a", "é", "Z", "_", "10", "9", "a-1", "a_1"]
    await tweets.upsert([record(0, id=i) for i in raw])
    assert [r.id for r in await tweets.find("tweets", limit=100)] == sorted(raw)


# -- lifecycle -----------------------------------------------------------------------------------


async def test_ping_and_closed_store(store: RecordStore) -> None:
    await store.ping()
    await store.close()
    with pytest.raises(BackendError):
        await store.ping()
    await store.open()  # the fixture closes it again
