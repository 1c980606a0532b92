"""Catalog import presets: how the electronics CSV, JSONL item files and the SNAP Amazon metadata
(``meta_*.json.gz``, one Python-literal dict per line) become ``items`` records.

Each preset is a file format for ``shoal.importer.read_rows`` plus a ``FieldMap`` whose transform
normalises a row into ``title``, ``text`` (title, category and description: what is embedded) and
a payload of typed fields (``price`` as a number, ``rating`` or nothing, ``category``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shoal.importer import FieldMap, Row

ASIN = re.compile(r"/dp/([A-Z0-9]{10})")
MAX_DESCRIPTION = 1500
ITEM_FIELDS = ("title", "category", "price", "list_price", "rating", "rating_count", "brand", "image", "url")


def parse_price(raw: Any) -> float | None:
    """``"$1,131.99"`` / ``"₹499"`` / ``12.5`` → a number; ``None`` when there is none."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    digits = re.sub(r"[^0-9.]", "", str(raw or ""))
    try:
        return float(digits) if digits else None
    except ValueError:
        return None


def parse_number(raw: Any) -> float | None:
    """A rating such as ``"4.3"``; listing noise such as ``"Get"`` or ``""`` gives ``None``."""
    try:
        return float(str(raw).replace(",", ""))
    except (TypeError, ValueError):
        return None


def _item(row: Row, *, id: str | None, title: str, category: str, description: str = "", **extra: Any) -> Row:
    text = ". ".join(p for p in (title, category, description[:MAX_DESCRIPTION]) if p)
    item: Row = {"id": id, "text": text, "title": title, "category": category, **extra}
    return {k: v for k, v in item.items() if v not in (None, "")}


def amazon_csv(row: Row) -> Row:
    """A row of the Amazon.in listing CSV (``name, main_category, sub_category, link, ratings, ...``)."""
    link = str(row.get("link") or "")
    found = ASIN.search(link)
    count = parse_number(row.get("no_of_ratings"))
    sub = str(row.get("sub_category") or "")
    main = str(row.get("main_category") or "")
    return _item(
        row,
        id=found.group(1) if found else None,
        title=str(row.get("name") or "").strip(),
        category=" / ".join(dict.fromkeys(c for c in (main, sub) if c)),
        price=parse_price(row.get("discount_price")) or parse_price(row.get("actual_price")),
        list_price=parse_price(row.get("actual_price")),
        rating=parse_number(row.get("ratings")),
        rating_count=int(count) if count is not None else None,
        image=row.get("image"),
        url=link,
    )


def snap(row: Row) -> Row:
    """A SNAP Amazon metadata dict (``asin, title, description, price, categories, brand, imUrl``)."""
    categories = row.get("categories") or []
    path = categories[0] if categories and isinstance(categories[0], list) else categories
    description = row.get("description") or ""
    return _item(
        row,
        id=row.get("asin"),
        title=str(row.get("title") or "").strip(),
        category=" / ".join(str(c) for c in path),
        description=" ".join(description) if isinstance(description, list) else str(description),
        price=parse_price(row.get("price")),
        brand=row.get("brand"),
        image=row.get("imUrl"),
    )


def jsonl(row: Row) -> Row:
    """A generic item: ``id, title, description, category, price`` and any extra fields (payload)."""
    known = {"id", "title", "description", "category", "price", "text"}
    extra = {k: v for k, v in row.items() if k not in known and not k.startswith("_") and k != "ts"}
    item = _item(
        row,
        id=str(row["id"]) if row.get("id") not in (None, "") else None,
        title=str(row.get("title") or row.get("name") or "").strip(),
        category=str(row.get("category") or ""),
        description=str(row.get("description") or row.get("text") or ""),
        price=parse_price(row.get("price")),
    )
    return {**extra, **item}


@dataclass(frozen=True, slots=True)
class Preset:
    format: str
    """A ``shoal.importer.read_rows`` format."""
    transform: Callable[[Row], Row]
    payload_fields: tuple[str, ...] | None = ITEM_FIELDS

    def mapping(self) -> FieldMap:
        return FieldMap(
            id_field="id", text_fields=("text",), payload_fields=self.payload_fields, transform=self.transform
        )


PRESETS: dict[str, Preset] = {
    "amazon-csv": Preset("csv", amazon_csv),
    "snap": Preset("pyliteral", snap),
    "jsonl": Preset("jsonl", jsonl, payload_fields=None),
}


def preset_mapping(name: str) -> tuple[FieldMap, str]:
    """The field map and file format of preset ``name`` (for ``shoal import --preset``).

    Raises:
        ValueError: unknown preset (the message lists the known ones).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; use one of {sorted(PRESETS)}")
    preset = PRESETS[name]
    return preset.mapping(), preset.format
