"""Catalog presets: the electronics CSV, SNAP Python-literal metadata and JSONL become items."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from shoal.importer import ImportSummary
from shoal.recommend.catalog import parse_number, parse_price
from shoal.recommend.cli import import_items, item_records
from tests.conftest import require_data
from tests.recommend.conftest import rec_app
from tests.waiting import eventually

SNAP_LINES = [
    "{'asin': '0000031852', 'title': 'Girls Ballet Tutu Zebra Hot Pink', 'price': 3.17, "
    "'imUrl': 'http://ecx.images-amazon.com/images/I/51fAmVkTbyL._SY300_.jpg', "
    "'related': {'also_bought': ['B00JHONN1S']}, 'salesRank': {'Toys & Games': 211836}, "
    "'categories': [['Clothing, Shoes & Jewelry', 'Girls'], ['Sports & Outdoors']]}",
    "{'asin': 'B000000001', 'description': 'A USB cable', 'title': 'Cable', 'brand': 'Acme', "
    "'categories': [['Electronics', 'Cables']]}",
    "__import__('os').system('touch pwned')",  # never evaluated: not a literal
    "{'asin': 'B000000002', 'title': \"Kid's \\\"best\\\" headphones\", 'price': '$12.00'}",
]


def test_prices_and_ratings_from_listing_noise() -> None:
    assert parse_price("$131.99") == 131.99
    assert parse_price("$1,299.00") == 1299.0
    assert parse_price("") is None and parse_price(None) is None
    assert parse_number("4.3") == 4.3
    assert parse_number("Get") is None and parse_number("") is None


def test_electronics_csv() -> None:
    path = require_data("amazon_in_electronics_catalog", "All Electronics.csv")
    summary = ImportSummary()
    records = list(item_records(path, "amazon-csv", summary))
    assert summary.read == 9600 and len(records) == 9512  # repeated ASINs are skipped
    first = records[0]
    assert first["id"] == "B09Y64H8VS"
    assert first["payload"]["price"] == 131.99 and first["payload"]["list_price"] == 227.99
    assert first["payload"]["rating"] == 4.0 and first["payload"]["rating_count"] == 965
    assert first["text"].startswith("Redmi 10 Power")
    assert all(isinstance(r["payload"].get("rating", 0.0), float) for r in records)
    assert sum("rating" not in r["payload"] for r in records) > 0  # "Get" / empty ratings are left out


def test_snap_metadata_is_parsed_as_literals(tmp_path: Path) -> None:
    path = tmp_path / "meta_Test.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(SNAP_LINES) + "\n")
    summary = ImportSummary()
    records = {r["id"]: r for r in item_records(path, "snap", summary)}
    assert not (tmp_path / "pwned").exists()
    assert sorted(records) == ["0000031852", "B000000001", "B000000002"]
    tutu = records["0000031852"]["payload"]
    assert tutu == {
        "title": "Girls Ballet Tutu Zebra Hot Pink",
        "category": "Clothing, Shoes & Jewelry / Girls",
        "price": 3.17,
        "image": "http://ecx.images-amazon.com/images/I/51fAmVkTbyL._SY300_.jpg",
    }
    assert "A USB cable" in records["B000000001"]["text"]
    assert records["B000000001"]["payload"]["brand"] == "Acme"
    assert records["B000000002"]["payload"]["price"] == 12.0


# shoal.importer.post_batch passes tenacity's deprecated `initial` (reported to the lead)
@pytest.mark.filterwarnings("ignore:The 'initial' parameter is deprecated:DeprecationWarning")
async def test_import_items_into_a_server(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    rows = [
        {"id": "a1", "title": "Espresso machine", "description": "15 bar pump", "category": "kitchen", "price": "$99"},
        {"id": "a2", "title": "Milk frother", "category": "kitchen", "colour": "red"},
        {"id": "a3", "description": "no title but a description"},
        {"id": "a4"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    async with rec_app(tmp_path / "data", load_catalog=False) as (client, _):
        summary = await import_items(client, path, "jsonl")
        assert (summary.read, summary.sent, summary.skipped, summary.failed) == (4, 3, 1, 0)

        async def stats() -> int:
            return int((await client.get("/v1/collections/items/stats")).json()["embedded"])

        await eventually(stats, until=lambda n: n == 3)
        record = (await client.get("/v1/collections/items/records/a2")).json()
        assert record["payload"] == {"title": "Milk frother", "category": "kitchen", "colour": "red"}
        similar = (await client.get("/v1/items/a1/similar", params={"limit": 1})).json()["items"]
        assert similar[0]["item_id"] == "a2" and similar[0]["title"] == "Milk frother"
